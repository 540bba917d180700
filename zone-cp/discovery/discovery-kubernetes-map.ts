/**
 * Kubernetes objects (plain JSON from list and watch) to the views the
 * Kubernetes source assembles services from. Every function checks the
 * fields it reads and answers `{ reason }` for a malformed object instead
 * of throwing, so one bad object is skipped and reported, never fatal.
 */

import type { PortProtocol } from '../../core/mesh/snapshot.js';
import {
  DEFAULT_INBOUND_PORT,
  EXPORT_TO_ANNOTATION,
  INBOUND_PORT_ANNOTATION,
  PROXY_CONTAINER_NAME,
} from './discovery.js';
import type { LocalService, ServicePortSpec, WorkloadEndpoint } from './discovery.js';
import { portProtocol } from './discovery-protocol.js';

type Obj = Record<string, unknown>;

export type Mapped<T> = { value: T } | { reason: string };

/** The label kube-controller-manager puts on an EndpointSlice naming its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
const REGION_LABELS = ['topology.kubernetes.io/region', 'failure-domain.beta.kubernetes.io/region'];
const ZONE_LABELS = ['topology.kubernetes.io/zone', 'failure-domain.beta.kubernetes.io/zone'];
const SUBZONE_LABEL = 'topology.istio.io/subzone';

export interface ServiceView {
  name: string;
  namespace: string;
  ports: ServicePortSpec[];
  exportTo: string[];
}

export interface SliceEndpoint {
  address: string;
  ready: boolean;
  podName: string | undefined;
  nodeName: string | undefined;
}

export interface SliceView {
  name: string;
  namespace: string;
  /** The Service it belongs to; undefined for a slice no Service owns. */
  service: string | undefined;
  endpoints: SliceEndpoint[];
  /** Service port name → the target port number its endpoints listen on. */
  ports: Array<{ name: string; port: number }>;
}

export interface PodView {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  serviceAccount: string;
  sidecar: boolean;
  nodeName: string | undefined;
  addresses: string[];
  ready: boolean;
  /** Succeeded or Failed: no longer a workload. */
  terminal: boolean;
  ports: Record<string, number>;
  inboundPort: number;
}

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535;
}

function stringMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObj(value)) return out;
  for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v;
  return out;
}

/** `metadata.name`/`namespace` of any object, or a reason. */
export function identityOf(obj: unknown): Mapped<{ name: string; namespace: string }> {
  if (!isObj(obj) || !isObj(obj.metadata)) return { reason: 'metadata is missing' };
  const { name, namespace } = obj.metadata;
  if (typeof name !== 'string' || name === '') return { reason: 'metadata.name is missing' };
  return { value: { name, namespace: typeof namespace === 'string' ? namespace : '' } };
}

/** Istio's exportTo from the Service annotation (`.`, `*`, or namespaces, comma-separated). */
export function exportToOf(annotations: Record<string, string>): string[] {
  const text = annotations[EXPORT_TO_ANNOTATION];
  if (text === undefined || text.trim() === '') return ['*'];
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return list.length === 0 ? ['*'] : list;
}

/** A Service to its ports; `value: undefined` for an ExternalName service, which has no endpoints. */
export function serviceView(obj: unknown): Mapped<ServiceView | undefined> {
  const id = identityOf(obj);
  if ('reason' in id) return id;
  const svc = obj as Obj;
  const spec = svc.spec;
  if (!isObj(spec)) return { reason: 'spec is missing' };
  if (spec.type === 'ExternalName') return { value: undefined };
  const rawPorts = spec.ports ?? [];
  if (!Array.isArray(rawPorts)) return { reason: 'spec.ports is not a list' };
  const ports: ServicePortSpec[] = [];
  for (const [i, p] of rawPorts.entries()) {
    if (!isObj(p)) return { reason: `spec.ports[${i}] is not an object` };
    if (p.protocol !== undefined && p.protocol !== 'TCP') continue; // UDP/SCTP are not meshed
    if (!isPort(p.port)) return { reason: `spec.ports[${i}].port must be an integer 1-65535` };
    const name = typeof p.name === 'string' ? p.name : '';
    let targetPort: number | string = p.port;
    if (p.targetPort !== undefined && p.targetPort !== null) {
      if (isPort(p.targetPort) || (typeof p.targetPort === 'string' && p.targetPort !== '')) {
        // A numeric string is a number on the wire of some clients; Kubernetes stores it as the name otherwise.
        targetPort =
          typeof p.targetPort === 'string' && /^\d+$/.test(p.targetPort)
            ? Number(p.targetPort)
            : p.targetPort;
      } else {
        return { reason: `spec.ports[${i}].targetPort must be a port number or a port name` };
      }
    }
    const protocol: PortProtocol = portProtocol(
      name,
      typeof p.appProtocol === 'string' ? p.appProtocol : undefined,
    );
    ports.push({ name, port: p.port, targetPort, protocol });
  }
  const annotations = stringMap((svc.metadata as Obj).annotations);
  return { value: { ...id.value, ports, exportTo: exportToOf(annotations) } };
}

/** An EndpointSlice to its endpoints and resolved target ports. */
export function sliceView(obj: unknown): Mapped<SliceView> {
  const id = identityOf(obj);
  if ('reason' in id) return id;
  const slice = obj as Obj;
  const labels = stringMap((slice.metadata as Obj).labels);
  const service = labels[SERVICE_NAME_LABEL];
  const addressType = slice.addressType;
  if (addressType !== undefined && typeof addressType !== 'string')
    return { reason: 'addressType is not a string' };
  const rawEndpoints = slice.endpoints ?? [];
  if (!Array.isArray(rawEndpoints)) return { reason: 'endpoints is not a list' };
  const rawPorts = slice.ports ?? [];
  if (!Array.isArray(rawPorts)) return { reason: 'ports is not a list' };
  const ports: SliceView['ports'] = [];
  for (const [i, p] of rawPorts.entries()) {
    if (!isObj(p)) return { reason: `ports[${i}] is not an object` };
    if (p.protocol !== undefined && p.protocol !== 'TCP') continue;
    if (p.port === undefined || p.port === null) continue; // "all ports": nothing to resolve
    if (!isPort(p.port)) return { reason: `ports[${i}].port must be an integer 1-65535` };
    ports.push({ name: typeof p.name === 'string' ? p.name : '', port: p.port });
  }
  const endpoints: SliceEndpoint[] = [];
  // FQDN slices name hosts, not workloads: nothing the mesh can address directly.
  if (addressType === 'FQDN') return { value: { ...id.value, service, endpoints, ports } };
  for (const [i, e] of rawEndpoints.entries()) {
    if (!isObj(e)) return { reason: `endpoints[${i}] is not an object` };
    const addresses = e.addresses;
    if (
      !Array.isArray(addresses) ||
      addresses.length === 0 ||
      !addresses.every((a) => typeof a === 'string' && a !== '')
    ) {
      return { reason: `endpoints[${i}].addresses must be a non-empty list of addresses` };
    }
    const conditions = e.conditions;
    if (conditions !== undefined && conditions !== null && !isObj(conditions)) {
      return { reason: `endpoints[${i}].conditions is not an object` };
    }
    // A nil `ready` means unknown, which consumers treat as ready; terminating endpoints get no new traffic.
    const ready = isObj(conditions) ? conditions.ready !== false && conditions.terminating !== true : true;
    const ref = isObj(e.targetRef) ? e.targetRef : undefined;
    const podName = ref && ref.kind === 'Pod' && typeof ref.name === 'string' ? ref.name : undefined;
    const nodeName = typeof e.nodeName === 'string' ? e.nodeName : undefined;
    // Kubernetes: only the first address of an endpoint is used (dual-stack comes as separate slices).
    endpoints.push({ address: addresses[0] as string, ready, podName, nodeName });
  }
  return { value: { ...id.value, service, endpoints, ports } };
}

function containerPorts(containers: unknown, out: Record<string, number>): string | undefined {
  if (containers === undefined || containers === null) return undefined;
  if (!Array.isArray(containers)) return 'is not a list';
  for (const [i, c] of containers.entries()) {
    if (!isObj(c)) return `[${i}] is not an object`;
    const ports = c.ports ?? [];
    if (!Array.isArray(ports)) return `[${i}].ports is not a list`;
    for (const p of ports) {
      if (!isObj(p)) continue;
      if (typeof p.name === 'string' && p.name !== '' && isPort(p.containerPort))
        out[p.name] = p.containerPort;
    }
  }
  return undefined;
}

function hasProxy(spec: Obj): boolean {
  const named = (list: unknown, sidecarOnly: boolean): boolean =>
    Array.isArray(list) &&
    list.some(
      (c) => isObj(c) && c.name === PROXY_CONTAINER_NAME && (!sidecarOnly || c.restartPolicy === 'Always'),
    );
  // A native sidecar is an init container that keeps running (restartPolicy Always).
  return named(spec.containers, false) || named(spec.initContainers, true);
}

/** A Pod to what the source needs of it: labels, identity, readiness, ports, sidecar. */
export function podView(obj: unknown): Mapped<PodView> {
  const id = identityOf(obj);
  if ('reason' in id) return id;
  const pod = obj as Obj;
  const meta = pod.metadata as Obj;
  const spec = isObj(pod.spec) ? pod.spec : undefined;
  if (!spec) return { reason: 'spec is missing' };
  const status = isObj(pod.status) ? pod.status : {};
  const ports: Record<string, number> = {};
  const bad = containerPorts(spec.containers, ports);
  if (bad !== undefined) return { reason: `spec.containers${bad}` };
  const addresses: string[] = [];
  if (Array.isArray(status.podIPs)) {
    for (const ip of status.podIPs)
      if (isObj(ip) && typeof ip.ip === 'string' && ip.ip !== '') addresses.push(ip.ip);
  }
  if (addresses.length === 0 && typeof status.podIP === 'string' && status.podIP !== '')
    addresses.push(status.podIP);
  const conditions = Array.isArray(status.conditions) ? status.conditions : [];
  const ready = conditions.some((c) => isObj(c) && c.type === 'Ready' && c.status === 'True');
  const annotations = stringMap(meta.annotations);
  const inbound = Number(annotations[INBOUND_PORT_ANNOTATION]);
  const serviceAccount =
    typeof spec.serviceAccountName === 'string' && spec.serviceAccountName !== ''
      ? spec.serviceAccountName
      : typeof spec.serviceAccount === 'string' && spec.serviceAccount !== ''
        ? spec.serviceAccount
        : 'default';
  return {
    value: {
      ...id.value,
      labels: stringMap(meta.labels),
      annotations,
      serviceAccount,
      sidecar: hasProxy(spec),
      nodeName: typeof spec.nodeName === 'string' && spec.nodeName !== '' ? spec.nodeName : undefined,
      addresses,
      ready,
      terminal: status.phase === 'Succeeded' || status.phase === 'Failed',
      ports,
      inboundPort: isPort(inbound) ? inbound : DEFAULT_INBOUND_PORT,
    },
  };
}

/** Istio locality `region/zone/subzone` from a Node's topology labels; undefined without a region. */
export function nodeLocality(obj: unknown): string | undefined {
  if (!isObj(obj) || !isObj(obj.metadata)) return undefined;
  const labels = stringMap(obj.metadata.labels);
  const first = (keys: string[]): string =>
    keys.map((k) => labels[k]).find((v) => v !== undefined && v !== '') ?? '';
  const region = first(REGION_LABELS);
  if (region === '') return undefined;
  const parts = [region, first(ZONE_LABELS), labels[SUBZONE_LABEL] ?? ''];
  while (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  return parts.join('/');
}

/** The workload a pod is, whether or not a service selects it. */
export function podWorkload(pod: PodView, locality: string | undefined): WorkloadEndpoint {
  return {
    name: pod.name,
    namespace: pod.namespace,
    address: pod.addresses[0] ?? '',
    inboundPort: pod.inboundPort,
    labels: pod.labels,
    serviceAccount: pod.serviceAccount,
    ...(locality === undefined ? {} : { locality }),
    weight: 1,
    healthy: pod.ready,
    sidecar: pod.sidecar,
    ports: pod.ports,
    source: 'kubernetes',
    annotations: pod.annotations,
  };
}

/**
 * One service from its Service and EndpointSlices. Endpoints are keyed by
 * address so that an endpoint listed in two slices (as during a slice
 * rebalance) counts once.
 */
export function assembleService(
  svc: ServiceView,
  slices: Iterable<SliceView>,
  podOf: (name: string) => PodView | undefined,
  localityOf: (nodeName: string | undefined) => string | undefined,
): LocalService {
  const byAddress = new Map<string, WorkloadEndpoint>();
  const namedTargets = svc.ports.filter((p) => typeof p.targetPort === 'string');
  for (const slice of slices) {
    for (const ep of slice.endpoints) {
      if (byAddress.has(ep.address)) continue;
      const pod = ep.podName === undefined ? undefined : podOf(ep.podName);
      const ports: Record<string, number> = { ...(pod?.ports ?? {}) };
      // A named targetPort the pod does not declare (or no pod known): the slice resolved it.
      for (const sp of namedTargets) {
        const target = sp.targetPort as string;
        if (ports[target] !== undefined) continue;
        const resolved = slice.ports.find((p) => p.name === sp.name);
        if (resolved) ports[target] = resolved.port;
      }
      const locality = localityOf(pod?.nodeName ?? ep.nodeName);
      byAddress.set(ep.address, {
        name: pod?.name ?? ep.podName ?? ep.address,
        namespace: svc.namespace,
        address: ep.address,
        inboundPort: pod?.inboundPort ?? DEFAULT_INBOUND_PORT,
        labels: pod?.labels ?? {},
        serviceAccount: pod?.serviceAccount ?? 'default',
        ...(locality === undefined ? {} : { locality }),
        weight: 1,
        healthy: ep.ready,
        sidecar: pod?.sidecar ?? false,
        ports,
        source: 'kubernetes',
        ...(pod === undefined ? {} : { annotations: pod.annotations }),
      });
    }
  }
  const endpoints = [...byAddress.values()].sort((a, b) =>
    a.address < b.address ? -1 : a.address > b.address ? 1 : 0,
  );
  return {
    name: svc.name,
    namespace: svc.namespace,
    ports: svc.ports,
    endpoints,
    exportTo: svc.exportTo,
    source: 'kubernetes',
  };
}
