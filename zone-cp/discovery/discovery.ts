/**
 * Workload discovery inside one zone. Each source (universal registration,
 * Kubernetes, Consul) turns what it watches into the same model; the
 * compiler merges all sources' services and never knows where they came
 * from. Sources are created through a registry (STYLE.md: grpc-js's
 * load-balancer registry), so `--discovery kubernetes` picks one by name.
 */

import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { PortProtocol } from '../../core/mesh/snapshot.js';

export interface WorkloadEndpoint {
  /** Pod or WorkloadEntry name. */
  name: string;
  namespace: string;
  address: string;
  /** Where the workload's sidecar accepts mTLS: 15006 in Kubernetes; its own port in universal mode. */
  inboundPort: number;
  labels: Record<string, string>;
  serviceAccount: string;
  /** Istio locality `region/zone/subzone`. */
  locality?: string;
  weight: number;
  /** Ready / probe passing / heartbeating. Unhealthy endpoints stay listed but get no traffic. */
  healthy: boolean;
  /** False for a workload without a meshfed sidecar: callers reach it in plaintext at the target port. */
  sidecar: boolean;
  /** Named application ports (WorkloadEntry.ports / container ports). */
  ports: Record<string, number>;
  source: string;
  /** The workload's annotations (WorkloadEntry / Pod), e.g. `meshfed.io/dependencies` for the compiler. */
  annotations?: Record<string, string>;
}

export interface ServicePortSpec {
  name: string;
  /** The port callers use. */
  port: number;
  /** Where the workload listens: a number, or the name of one of its ports. */
  targetPort: number | string;
  protocol: PortProtocol;
}

export interface LocalService {
  name: string;
  namespace: string;
  ports: ServicePortSpec[];
  endpoints: WorkloadEndpoint[];
  /** Istio exportTo: '*' (default), '.', or namespaces. */
  exportTo: string[];
  source: string;
}

export interface DiscoverySource {
  /** 'universal', 'kubernetes', 'consul'. */
  readonly name: string;
  /** Resolves once the first full view is loaded (informers synced, first list done). */
  start(): Promise<void>;
  /** Services with their endpoints as of now. Cheap: returns the maintained view. */
  services(): readonly LocalService[];
  /** Every workload the source knows, in a service or not (a proxy looks itself up here). */
  workloads(): readonly WorkloadEndpoint[];
  /** Called after each change, possibly batched. Returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
  /**
   * Objects the source skipped because they are malformed (a bad
   * EndpointSlice, a WorkloadEntry without an address, …), each with the
   * reason; an entry disappears once its object is fixed or deleted.
   */
  errors?(): readonly DiscoveryProblem[];
  /** Stops watches. Idempotent. */
  close(): Promise<void>;
}

/** One object a discovery source could not use. */
export interface DiscoveryProblem {
  /** `Kind/namespace/name`, e.g. `EndpointSlice/shop/cart-x1z9`. */
  resource: string;
  reason: string;
}

/** Where a meshfed sidecar accepts mTLS unless the workload says otherwise. */
export const DEFAULT_INBOUND_PORT = 15006;
/** Name of the sidecar container the injection webhook adds; a pod with it has a sidecar. */
export const PROXY_CONTAINER_NAME = 'meshfed-proxy';
/** Annotation: the sidecar's inbound (mTLS) port, for universal workloads sharing a host. */
export const INBOUND_PORT_ANNOTATION = 'meshfed.io/inbound-port';
/** Label: the shortcut that puts a universal workload into service `<value>` of its namespace. */
export const SERVICE_LABEL = 'meshfed.io/service';
/** Annotation: service ports of a label-formed service, `name=port,...` (default: port = target port). */
export const SERVICE_PORTS_ANNOTATION = 'meshfed.io/service-ports';
/** Annotation: `"false"` marks a workload unhealthy (its own probe failed). */
export const HEALTHY_ANNOTATION = 'meshfed.io/healthy';
/** Annotation: RFC 3339 time of the workload's last heartbeat; stale ones make it unhealthy. */
export const HEARTBEAT_ANNOTATION = 'meshfed.io/heartbeat';
/** Annotation: `"false"` for a universal workload that runs without a meshfed sidecar. */
export const SIDECAR_ANNOTATION = 'meshfed.io/sidecar';
/** Annotation on a Service or label-formed service: Istio's exportTo, comma-separated. */
export const EXPORT_TO_ANNOTATION = 'networking.istio.io/exportTo';

export type DiscoverySourceFactory<Options> = (options: Options) => DiscoverySource;

const factories = new Map<string, DiscoverySourceFactory<never>>();

export function registerDiscoverySource<Options>(
  name: string,
  factory: DiscoverySourceFactory<Options>,
): void {
  factories.set(name, factory as DiscoverySourceFactory<never>);
}

/** Names of the registered sources, for help texts and errors. */
export function discoverySourceNames(): string[] {
  return [...factories.keys()];
}

export function createDiscoverySource<Options>(name: string, options: Options): DiscoverySource {
  const factory = factories.get(name) as DiscoverySourceFactory<Options> | undefined;
  if (factory === undefined) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `unknown discovery source "${name}"; known: ${[...factories.keys()].join(', ')}`,
    );
  }
  return factory(options);
}
