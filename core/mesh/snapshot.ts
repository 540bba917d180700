/**
 * The per-proxy configuration a zone CP compiles and pushes over MDS, and
 * the east-west gateway's routing table. This file is the contract between
 * `zone-cp/` (which builds snapshots) and `proxy/` / `eastwest-gateway/`
 * (which run them): everything is resolved for the one proxy that receives
 * it, so the data path never looks anything up in the wider mesh.
 *
 * Istio-shaped sub-objects (routes, traffic policies, authorization rules)
 * are carried in Istio's own shape, with hosts resolved to FQDNs, so one
 * validator and one set of semantics serve both the API and the proxy.
 */

export const SIDECAR_SNAPSHOT_TYPE = 'sidecar/v1';
export const GATEWAY_SNAPSHOT_TYPE = 'gateway/v1';

export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';
export type PortProtocol = 'http' | 'http2' | 'grpc' | 'tcp';

/** Istio's sub-objects are passed through as JSON; the proxy validates what it uses. */
export type IstioObject = Record<string, unknown>;

export interface SidecarSnapshot {
  type: typeof SIDECAR_SNAPSHOT_TYPE;
  proxy: ProxyIdentity;
  trust: TrustConfig;
  inbound: InboundConfig;
  outbound: OutboundConfig;
  telemetry: TelemetryConfig;
}

export interface ProxyIdentity {
  proxyId: string;
  /** WorkloadEntry or Pod name. */
  workload: string;
  namespace: string;
  serviceAccount: string;
  /** spiffe://<trust-domain>/ns/<namespace>/sa/<serviceAccount> */
  spiffeId: string;
  zone: string;
  labels: Record<string, string>;
  /** Canonical service name for metrics (`app` label, else the workload name). */
  canonicalService: string;
}

export interface TrustConfig {
  trustDomain: string;
  /** PEM roots a peer's chain must end in: one, or two during a root rotation. */
  roots: string[];
}

export interface InboundConfig {
  ports: InboundPort[];
  /** Mode for traffic to a port not listed (PeerAuthentication without portLevelMtls). */
  defaultMtls: MtlsMode;
  /** AuthorizationPolicies that select this workload, in no particular order: DENY is evaluated before ALLOW. */
  authorization: AuthorizationPolicyConfig[];
}

export interface InboundPort {
  /** The service port callers address; the mesh SNI carries it. */
  port: number;
  /** Where the app listens on localhost. */
  targetPort: number;
  protocol: PortProtocol;
  /** Effective PeerAuthentication mode for this port. */
  mtls: MtlsMode;
  name?: string;
}

export interface AuthorizationPolicyConfig {
  name: string;
  namespace: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT';
  /**
   * `spec.rules` as applied. A policy without rules matches nothing (so an
   * ALLOW policy without rules denies everything: Istio's allow-nothing);
   * a rule `{}` matches every request.
   */
  rules: IstioObject[];
}

export interface OutboundConfig {
  /** Only the services this proxy may call (namespace scoping, exportTo, dependency list). */
  services: OutboundService[];
}

export interface OutboundService {
  /** FQDN: reviews.bookinfo.svc.cluster.local */
  host: string;
  name: string;
  namespace: string;
  /** Other names an app may put in the Host header: reviews (same namespace only), reviews.bookinfo, reviews.bookinfo.svc. */
  aliases: string[];
  ports: ServicePort[];
  /**
   * VirtualService http routes for this host, in order, destinations'
   * hosts resolved to FQDNs. Empty: every request goes to the whole service.
   */
  http: IstioObject[];
  /** VirtualService tcp routes, for tcp ports. */
  tcp: IstioObject[];
  /** Endpoints grouped by subset, each with its effective traffic policy. Always holds the `_` cluster. */
  clusters: ClusterConfig[];
  locality: LocalityConfig;
}

export interface ServicePort {
  name: string;
  port: number;
  protocol: PortProtocol;
}

export interface ClusterConfig {
  /** Subset name from the DestinationRule, or `_` for the whole service. */
  subset: string;
  /** DestinationRule trafficPolicy merged with the subset's own (subset wins per field). */
  trafficPolicy: IstioObject;
  endpoints: EndpointConfig[];
}

export interface EndpointConfig {
  /** Where to connect: a sidecar's inbound listener or a remote zone's east-west gateway. */
  address: string;
  port: number;
  via: 'sidecar' | 'gateway' | 'plaintext';
  /**
   * For via=plaintext: the service port this entry serves (a workload
   * without a sidecar listens on a different target port per service port).
   * Absent: the entry serves every port (sidecar and gateway endpoints).
   */
  servicePort?: number;
  zone: string;
  /** Istio locality `region/zone/subzone`, when known. */
  locality?: string;
  /** Relative weight: 1 per workload for local endpoints; the healthy endpoint count for a gateway. */
  weight: number;
  /** The zone CP's view (readiness probe, heartbeat, zone health). The proxy adds its own outlier detection. */
  healthy: boolean;
  /** Endpoint labels plus topology.istio.io/cluster = zone, for failoverPriority. */
  labels: Record<string, string>;
  /** For via=sidecar: the workload name (metrics destination_workload). */
  workload?: string;
  /**
   * SPIFFE IDs the peer may present. For via=gateway: every identity the
   * service runs as in that zone (the TLS session is with the final proxy).
   */
  identities: string[];
}

export interface LocalityConfig {
  /** Prefer the proxy's own zone while it has healthy endpoints (default true). */
  preferLocalZone: boolean;
  /** Data residency: never leave the proxy's own zone. */
  pinnedToZone: boolean;
  /** DestinationRule localityLbSetting, as applied. */
  setting?: IstioObject;
}

export interface TelemetryConfig {
  accessLog: boolean;
}

/** The east-west gateway's table: services this zone exports and their local endpoints. */
export interface GatewaySnapshot {
  type: typeof GATEWAY_SNAPSHOT_TYPE;
  zone: string;
  services: GatewayService[];
  /**
   * `name.namespace` of services with endpoints here that are pinned to this
   * zone (data residency): not exported, so the gateway refuses them as
   * `not-exported` rather than `unknown-service`. Absent: none.
   */
  notExported?: string[];
}

export interface GatewayService {
  name: string;
  namespace: string;
  /** Service ports a mesh SNI may name. */
  ports: number[];
  /** Always holds `_`; one entry per DestinationRule subset with matching endpoints. */
  clusters: Array<{ subset: string; endpoints: GatewayEndpoint[] }>;
}

export interface GatewayEndpoint {
  /** A local sidecar's inbound listener. */
  address: string;
  port: number;
  healthy: boolean;
  workload: string;
}

export type Snapshot = SidecarSnapshot | GatewaySnapshot;
