/**
 * A SidecarSnapshot compiled for the data path: matchers, regexes,
 * durations and weights resolved once per snapshot, so a request only walks
 * arrays and reads numbers. Pure data: runtime state (pools, outlier
 * counters, load-balancer positions) lives in `cluster/` and survives
 * snapshot swaps; routes name clusters by their Envoy-style name.
 */

import type {
  EndpointConfig,
  LocalityConfig,
  MtlsMode,
  PortProtocol,
  ProxyIdentity,
  ServicePort,
  SidecarSnapshot,
} from '../../core/mesh/snapshot.js';
import type { LocalityRules } from '../../core/mesh/locality-plan.js';
import type { AuthzEngine } from '../inbound/authz-engine.js';
import type { StringMatcher } from './string-match.js';

export interface CompiledConfig {
  /** The snapshot as received, for /config_dump. */
  snapshot: SidecarSnapshot;
  proxy: ProxyIdentity;
  trustDomain: string;
  roots: string[];
  inbound: CompiledInbound;
  outbound: CompiledOutbound;
  /** Every upstream cluster any route or listener may use. */
  clusters: ClusterSpec[];
  accessLog: boolean;
}

export interface InboundPortConfig {
  port: number;
  targetPort: number;
  protocol: PortProtocol;
  mtls: MtlsMode;
  name: string;
  /** `inbound|<port>||`: the metrics/log name of the local app cluster. */
  clusterName: string;
}

export interface CompiledInbound {
  ports: InboundPortConfig[];
  byPort: Map<number, InboundPortConfig>;
  defaultMtls: MtlsMode;
  /** Every port (and the default) is STRICT: plaintext can be refused before reading a byte of it. */
  allStrict: boolean;
  authz: AuthzEngine;
}

export interface CompiledOutbound {
  /** FQDN and every alias, lower-case → service. */
  byHost: Map<string, CompiledService>;
  services: CompiledService[];
}

export interface CompiledService {
  host: string;
  name: string;
  namespace: string;
  ports: ServicePort[];
  portMap: Map<number, ServicePort>;
  /** Used when the caller names no port: the only HTTP port, else port 80, else the first HTTP port. */
  defaultHttpPort: ServicePort | undefined;
  /** VirtualService routes; a request matching none gets `defaultRoute` only when `http` is empty. */
  http: CompiledHttpRoute[];
  /** The whole service (`_`), Istio's default retry policy, no timeout. */
  defaultRoute: CompiledHttpRoute;
  tcp: CompiledTcpRoute[];
  defaultTcpRoute: CompiledTcpRoute;
}

export interface HeaderOps {
  set: Array<[string, string]>;
  add: Array<[string, string]>;
  remove: string[];
}

export interface HttpMatch {
  uri: StringMatcher | undefined;
  scheme: StringMatcher | undefined;
  method: StringMatcher | undefined;
  authority: StringMatcher | undefined;
  headers: Array<[string, StringMatcher]>;
  withoutHeaders: Array<[string, StringMatcher]>;
  query: Array<[string, StringMatcher]>;
  port: number | undefined;
  /** Prefix the match's `uri.prefix` names, for `rewrite.uri` (Envoy prefix_rewrite). */
  uriPrefix: string | undefined;
}

export interface RouteDestination {
  host: string;
  subset: string;
  /** Cluster name per port the caller addressed (undefined: the destination host has no such port). */
  clusterByPort: Map<number, string | undefined>;
  weight: number;
  requestHeaders: HeaderOps | undefined;
  responseHeaders: HeaderOps | undefined;
}

/** Retry conditions as bits (Envoy x-envoy-retry-on names). */
export const RetryOn = {
  HTTP_5XX: 1,
  GATEWAY_ERROR: 2,
  RESET: 4,
  CONNECT_FAILURE: 8,
  REFUSED_STREAM: 16,
  RETRIABLE_STATUS_CODES: 32,
  RETRIABLE_4XX: 64,
  GRPC_CANCELLED: 128,
  GRPC_DEADLINE_EXCEEDED: 256,
  GRPC_INTERNAL: 512,
  GRPC_RESOURCE_EXHAUSTED: 1024,
  GRPC_UNAVAILABLE: 2048,
} as const;

export interface RetryPolicy {
  /** Retries after the first try (Istio `attempts`). */
  attempts: number;
  /** 0 = none. */
  perTryTimeoutMs: number;
  on: number;
  statusCodes: number[];
}

export interface FaultPolicy {
  delayMs: number;
  delayFraction: number;
  abortStatus: number;
  /** gRPC status code for gRPC requests, or -1. */
  abortGrpcStatus: number;
  abortFraction: number;
}

export interface MirrorPolicy {
  host: string;
  subset: string;
  clusterByPort: Map<number, string | undefined>;
  fraction: number;
}

export interface CompiledHttpRoute {
  name: string;
  /** Empty = matches every request. */
  matches: HttpMatch[];
  destinations: RouteDestination[];
  /** Running sums of weights, for one random draw per request. */
  cumulative: number[];
  totalWeight: number;
  redirect: { uri?: string; authority?: string; port?: number; scheme?: string; status: number } | undefined;
  directResponse: { status: number; body: Buffer } | undefined;
  rewrite: { uri?: string; authority?: string; regex?: RegExp; regexReplacement?: string } | undefined;
  /** 0 = none. */
  timeoutMs: number;
  retry: RetryPolicy;
  fault: FaultPolicy | undefined;
  mirrors: MirrorPolicy[];
  requestHeaders: HeaderOps | undefined;
  responseHeaders: HeaderOps | undefined;
}

export interface CompiledTcpRoute {
  /** Empty = any port. */
  ports: number[];
  destinations: RouteDestination[];
  cumulative: number[];
  totalWeight: number;
}

export type LbPolicyName = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM';

export interface OutlierPolicy {
  consecutive5xx: number;
  consecutiveGateway: number;
  intervalMs: number;
  baseEjectionMs: number;
  maxEjectionPercent: number;
  minHealthPercent: number;
}

/** DestinationRule localityLbSetting as the proxy applies it: the planner's own rules. */
export type LocalityPolicy = LocalityRules;

export interface ClusterPolicy {
  lb: LbPolicyName;
  maxConnections: number;
  http1MaxPendingRequests: number;
  http2MaxRequests: number;
  /** 0 = unlimited. */
  maxRequestsPerConnection: number;
  maxRetries: number;
  connectTimeoutMs: number;
  /** 0 = the pool's default. */
  idleTimeoutMs: number;
  /**
   * Speak HTTP/2 to every endpoint (http2/grpc ports, or h2UpgradePolicy
   * UPGRADE); the circuit breaker then counts as Envoy does for HTTP/2.
   */
  h2: boolean;
  /**
   * Speak HTTP/2 to endpoints that are sidecars (mTLS), whatever the app
   * speaks: the mesh's default, as Linkerd's, unless h2UpgradePolicy is
   * DO_NOT_UPGRADE. Requests multiplex over one connection between two
   * proxies; the circuit breaker keeps the HTTP/1.1 meaning of the
   * DestinationRule's limits, which were written for the app's protocol.
   */
  h2ToProxies: boolean;
  outlier: OutlierPolicy | undefined;
  locality: LocalityPolicy | undefined;
  /** DestinationRule tls.mode DISABLE: plaintext even to a sidecar. */
  plaintext: boolean;
}

export interface ClusterSpec {
  /** `outbound|<port>|<subset or empty>|<host>` (Envoy's naming). */
  name: string;
  host: string;
  serviceName: string;
  namespace: string;
  port: number;
  protocol: PortProtocol;
  subset: string;
  /** The mesh SNI for this cluster (core/mesh/sni.ts). */
  sni: string;
  policy: ClusterPolicy;
  endpoints: EndpointConfig[];
  locality: LocalityConfig;
}
