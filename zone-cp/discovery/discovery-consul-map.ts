/**
 * Consul's JSON (catalog services, health service entries) to the zone's
 * model. Every function checks the fields it reads: a malformed entry is
 * answered as `{ reason }` and skipped by the caller, never thrown, so one
 * bad registration cannot hide the others. A body that is not the shape
 * of the endpoint at all throws `ConsulAnswerError` (the caller keeps its
 * last good view).
 *
 * Mapping (docs/consul.md):
 * - a Consul service → one LocalService per namespace its instances map
 *   to, named as in Consul (lower-cased; it must be a DNS-1123 label), one
 *   port named after its protocol, targeting each instance's own port;
 * - an instance → a WorkloadEndpoint named `<service>-<node>-<serviceID>`
 *   made DNS-1123 (a hash suffix when that changed the text or two
 *   instances would collide), address = service address or node address,
 *   labels from `k=v` tags and service meta, locality = datacenter;
 * - control keys, read from service meta first, then from a `key=value`
 *   tag: `meshfed-namespace` (configurable), `meshfed-service-account`,
 *   `meshfed-inbound-port` (the instance runs a meshfed sidecar there;
 *   otherwise it is reached in plaintext at its port), `meshfed-protocol`,
 *   `meshfed-service-port`, `meshfed-export-to`;
 * - health: the worst of the instance's service and node checks; warning
 *   counts as healthy unless configured otherwise, or when the service's
 *   `Weights.Warning` is 0.
 */

import { createHash } from 'node:crypto';

import type { PortProtocol } from '../../core/mesh/snapshot.js';
import { isDns1123Label, isDns1123Subdomain } from '../../core/resource/dns-name.js';
import type { Resource } from '../../core/resource/resource.js';
import {
  HEALTHY_ANNOTATION,
  INBOUND_PORT_ANNOTATION,
  SERVICE_LABEL,
  SERVICE_PORTS_ANNOTATION,
  SIDECAR_ANNOTATION,
} from './discovery.js';
import type { LocalService, ServicePortSpec, WorkloadEndpoint } from './discovery.js';

type Obj = Record<string, unknown>;

export type Mapped<T> = { value: T } | { reason: string };

/** Meta/tag key: the namespace of the instance (the default key; configurable). */
export const META_NAMESPACE = 'meshfed-namespace';
/** Meta/tag key: the instance's service account (its identity). Default: the service name. */
export const META_SERVICE_ACCOUNT = 'meshfed-service-account';
/** Meta/tag key: the port of a meshfed sidecar on the instance; without it the instance has none. */
export const META_INBOUND_PORT = 'meshfed-inbound-port';
/** Meta/tag key: http (default), http2, grpc or tcp. */
export const META_PROTOCOL = 'meshfed-protocol';
/** Meta/tag key: the port callers use for the service. Default: the lowest instance port. */
export const META_SERVICE_PORT = 'meshfed-service-port';
/** Meta/tag key: Istio exportTo, comma-separated. Default `*`. */
export const META_EXPORT_TO = 'meshfed-export-to';
/** Keys with this prefix steer the mapping and are not copied into labels. */
const CONTROL_PREFIX = 'meshfed-';
/** Annotations recording where an imported workload came from. */
export const CONSUL_SERVICE_ID_ANNOTATION = 'meshfed.io/consul-service-id';
export const CONSUL_NODE_ANNOTATION = 'meshfed.io/consul-node';
export const CONSUL_DATACENTER_ANNOTATION = 'meshfed.io/consul-datacenter';

const PROTOCOLS: Record<string, PortProtocol> = { http: 'http', http2: 'http2', grpc: 'grpc', tcp: 'tcp' };
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

export type CheckStatus = 'passing' | 'warning' | 'critical';

/** One entry of `/v1/health/service/:name`, checked. */
export interface ConsulInstance {
  service: string;
  serviceId: string;
  node: string;
  datacenter: string;
  /** Service address, else the node's. */
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  weights: { passing: number; warning: number };
  /** The worst status of its checks (node checks included); passing without checks. */
  status: CheckStatus;
  /** `name: output` of the checks that are not passing, for the WorkloadEntry status. */
  failing: string[];
}

/** Thrown when an answer is not the shape of its endpoint at all. */
export class ConsulAnswerError extends Error {}

export interface MappingSettings {
  /** Namespace of instances that do not name one. */
  defaultNamespace: string;
  /** Meta/tag key naming the namespace; '' disables it. */
  namespaceKey: string;
  /** Whether an instance whose worst check is `warning` gets traffic. */
  warningHealthy: boolean;
}

/** An instance mapped, before its service decides the port name. */
export interface MappedInstance {
  instance: ConsulInstance;
  /** `Consul/<service>/<node>/<id>`, for problems. */
  resource: string;
  name: string;
  namespace: string;
  serviceAccount: string;
  labels: Record<string, string>;
  healthy: boolean;
  weight: number;
  sidecar: boolean;
  inboundPort: number;
  protocol: PortProtocol | undefined;
  servicePort: number | undefined;
  exportTo: string[] | undefined;
}

/** What one Consul service contributes to the view. */
export interface AssembledService {
  services: LocalService[];
  workloads: WorkloadEndpoint[];
  entries: Resource[];
  /** Service-level inconsistencies (instances disagreeing), by resource. */
  problems: Map<string, string>;
}

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535;
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 8);
}

/** `/v1/catalog/services` → name → tags. */
export function parseCatalogServices(body: unknown): Map<string, string[]> {
  if (!isObj(body)) throw new ConsulAnswerError('the service list is not a JSON object');
  const out = new Map<string, string[]>();
  for (const [name, tags] of Object.entries(body)) {
    if (tags === null) {
      out.set(name, []);
      continue;
    }
    if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string')) {
      throw new ConsulAnswerError(`the tags of service "${name}" are not a list of strings`);
    }
    out.set(name, tags as string[]);
  }
  return out;
}

/** The meshfed name of a Consul service, or why it cannot have one. */
export function meshServiceName(consulName: string): Mapped<string> {
  const name = consulName.toLowerCase();
  if (!isDns1123Label(name)) {
    return { reason: `service name "${consulName}" is not a DNS-1123 label, so it cannot be a mesh service` };
  }
  return { value: name };
}

function stringMap(value: unknown, field: string): Mapped<Record<string, string>> {
  if (value === undefined || value === null) return { value: {} };
  if (!isObj(value)) return { reason: `${field} is not an object` };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') return { reason: `${field}.${k} is not a string` };
    out[k] = v;
  }
  return { value: out };
}

function worst(a: CheckStatus, b: CheckStatus): CheckStatus {
  const rank = { passing: 0, warning: 1, critical: 2 };
  return rank[b] > rank[a] ? b : a;
}

/**
 * One health entry → an instance. `index` names the entry in a problem
 * when it is too broken to name itself.
 */
export function parseHealthEntry(
  entry: unknown,
  service: string,
  index: number,
): Mapped<ConsulInstance> & { resource: string } {
  let resource = `Consul/${service}/#${index}`;
  const fail = (reason: string): { reason: string; resource: string } => ({ reason, resource });
  if (!isObj(entry)) return fail('the entry is not an object');
  const { Node: node, Service: svc, Checks: checks } = entry;
  if (!isObj(node) || typeof node.Node !== 'string' || node.Node === '') return fail('Node.Node is missing');
  if (!isObj(svc) || typeof svc.ID !== 'string' || svc.ID === '') return fail('Service.ID is missing');
  resource = `Consul/${service}/${node.Node}/${svc.ID}`;
  if (svc.Service !== service)
    return fail(`Service.Service is ${JSON.stringify(svc.Service)}, not "${service}"`);
  if (svc.Port === 0) return fail('Service.Port is 0: the instance registered no port');
  if (!isPort(svc.Port)) return fail('Service.Port is not a port number');
  const serviceAddress = svc.Address ?? '';
  const nodeAddress = node.Address ?? '';
  if (typeof serviceAddress !== 'string') return fail('Service.Address is not a string');
  if (typeof nodeAddress !== 'string') return fail('Node.Address is not a string');
  const address = serviceAddress !== '' ? serviceAddress : nodeAddress;
  if (address === '') return fail('neither Service.Address nor Node.Address is set');
  const tags = svc.Tags ?? [];
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string'))
    return fail('Service.Tags is not a list of strings');
  const meta = stringMap(svc.Meta, 'Service.Meta');
  if ('reason' in meta) return fail(meta.reason);
  const weights = { passing: 1, warning: 1 };
  if (svc.Weights !== undefined && svc.Weights !== null) {
    if (!isObj(svc.Weights)) return fail('Service.Weights is not an object');
    for (const [key, field] of [
      ['passing', 'Passing'],
      ['warning', 'Warning'],
    ] as const) {
      const w = svc.Weights[field];
      if (w === undefined) continue;
      if (typeof w !== 'number' || !Number.isInteger(w) || w < 0)
        return fail(`Service.Weights.${field} is not a count`);
      weights[key] = w;
    }
  }
  const datacenter = node.Datacenter ?? '';
  if (typeof datacenter !== 'string') return fail('Node.Datacenter is not a string');
  let status: CheckStatus = 'passing';
  const failing: string[] = [];
  if (checks !== undefined && checks !== null) {
    if (!Array.isArray(checks)) return fail('Checks is not a list');
    for (const [i, check] of checks.entries()) {
      if (!isObj(check) || typeof check.Status !== 'string') return fail(`Checks[${i}].Status is missing`);
      // Anything Consul might add later that is not passing or warning is treated as failing.
      const s: CheckStatus =
        check.Status === 'passing' || check.Status === 'warning' ? check.Status : 'critical';
      status = worst(status, s);
      if (s !== 'passing') {
        const name =
          typeof check.Name === 'string' && check.Name !== '' ? check.Name : String(check.CheckID ?? i);
        const output = typeof check.Output === 'string' ? check.Output.trim().slice(0, 200) : '';
        failing.push(output === '' ? `${name}: ${s}` : `${name}: ${s}: ${output}`);
      }
    }
  }
  return {
    resource,
    value: {
      service,
      serviceId: svc.ID,
      node: node.Node,
      datacenter,
      address,
      port: svc.Port,
      tags: tags as string[],
      meta: meta.value,
      weights,
      status,
      failing,
    },
  };
}

/** True when `tags` has every tag of the filter (an empty filter passes everything). */
export function hasAllTags(tags: readonly string[], filter: readonly string[]): boolean {
  return filter.every((t) => tags.includes(t));
}

/** True for a service instance (not a Connect proxy or gateway, which are Consul's own data plane). */
export function isPlainService(entry: unknown): boolean {
  if (!isObj(entry) || !isObj(entry.Service)) return true;
  const kind = entry.Service.Kind;
  return kind === undefined || kind === null || kind === '';
}

/** A control value: service meta first, then a `key=value` tag. */
function control(instance: ConsulInstance, key: string): string | undefined {
  if (key === '') return undefined;
  const meta = instance.meta[key];
  if (meta !== undefined) return meta;
  const prefix = `${key}=`;
  const tag = instance.tags.find((t) => t.startsWith(prefix));
  return tag === undefined ? undefined : tag.slice(prefix.length);
}

function isLabelKey(key: string): boolean {
  const slash = key.indexOf('/');
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (slash >= 0 && !isDns1123Subdomain(key.slice(0, slash))) return false;
  return name.length <= 63 && LABEL_NAME.test(name);
}

function isLabelValue(value: string): boolean {
  return value === '' || (value.length <= 63 && LABEL_NAME.test(value));
}

/** Labels from `k=v` tags, then service meta (which wins); control keys and non-label text are left out. */
export function labelsOf(instance: ConsulInstance): Record<string, string> {
  const labels: Record<string, string> = {};
  const add = (k: string, v: string): void => {
    if (k.startsWith(CONTROL_PREFIX) || !isLabelKey(k) || !isLabelValue(v)) return;
    labels[k] = v;
  };
  for (const tag of instance.tags) {
    const eq = tag.indexOf('=');
    if (eq > 0) add(tag.slice(0, eq), tag.slice(eq + 1));
  }
  for (const [k, v] of Object.entries(instance.meta)) add(k, v);
  return labels;
}

/**
 * `<service>-<node>-<serviceID>` as a DNS-1123 label: lower-cased, other
 * characters replaced by `-`; when that changed anything or the result is
 * too long, a hash of the original text keeps distinct instances distinct.
 */
export function endpointName(service: string, node: string, serviceId: string): string {
  const raw = `${service}-${node}-${serviceId}`;
  const clean = raw
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-+|-+$/g, '');
  if (clean === raw && clean.length <= 63) return clean;
  const head = clean.slice(0, 54).replace(/-+$/, '');
  return `${head === '' ? 'consul' : head}-${shortHash(raw)}`;
}

function parseExportTo(text: string): string[] {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return list.length === 0 ? ['*'] : list;
}

/** An instance → its mesh identity, health and settings, or why it is skipped. */
export function mapInstance(
  instance: ConsulInstance,
  resource: string,
  meshName: string,
  settings: MappingSettings,
): Mapped<MappedInstance> {
  const namespace = control(instance, settings.namespaceKey) ?? settings.defaultNamespace;
  if (!isDns1123Label(namespace)) {
    return { reason: `${settings.namespaceKey} "${namespace}" is not a DNS-1123 label` };
  }
  const serviceAccount = control(instance, META_SERVICE_ACCOUNT) ?? meshName;
  if (!isDns1123Subdomain(serviceAccount)) {
    return { reason: `${META_SERVICE_ACCOUNT} "${serviceAccount}" is not a DNS-1123 subdomain` };
  }
  const inboundText = control(instance, META_INBOUND_PORT);
  let inboundPort = instance.port;
  if (inboundText !== undefined) {
    inboundPort = /^\d+$/.test(inboundText) ? Number(inboundText) : NaN;
    if (!isPort(inboundPort)) return { reason: `${META_INBOUND_PORT} "${inboundText}" is not a port number` };
  }
  const protocolText = control(instance, META_PROTOCOL);
  let protocol: PortProtocol | undefined;
  if (protocolText !== undefined) {
    protocol = PROTOCOLS[protocolText.toLowerCase()];
    if (protocol === undefined) {
      return {
        reason: `${META_PROTOCOL} "${protocolText}" is not one of ${Object.keys(PROTOCOLS).join(', ')}`,
      };
    }
  }
  const portText = control(instance, META_SERVICE_PORT);
  let servicePort: number | undefined;
  if (portText !== undefined) {
    servicePort = /^\d+$/.test(portText) ? Number(portText) : NaN;
    if (!isPort(servicePort)) return { reason: `${META_SERVICE_PORT} "${portText}" is not a port number` };
  }
  const exportText = control(instance, META_EXPORT_TO);
  const warning = instance.status === 'warning';
  const weight = warning ? instance.weights.warning : instance.weights.passing;
  const healthy =
    instance.status === 'passing' || (warning && settings.warningHealthy && instance.weights.warning > 0);
  return {
    value: {
      instance,
      resource,
      name: endpointName(meshName, instance.node, instance.serviceId),
      namespace,
      serviceAccount,
      labels: labelsOf(instance),
      healthy,
      weight: weight > 0 ? weight : 1,
      sidecar: inboundText !== undefined,
      inboundPort,
      protocol,
      servicePort,
      ...(exportText === undefined ? { exportTo: undefined } : { exportTo: parseExportTo(exportText) }),
    },
  };
}

/**
 * The first instance (by node, then service ID) that sets a value decides
 * it; instances that set another one are reported.
 */
function decide<T>(
  members: readonly MappedInstance[],
  pick: (m: MappedInstance) => T | undefined,
  what: string,
  problems: Map<string, string>,
): T | undefined {
  let chosen: T | undefined;
  let from: MappedInstance | undefined;
  for (const m of members) {
    const value = pick(m);
    if (value === undefined) continue;
    if (from === undefined) {
      chosen = value;
      from = m;
    } else if (JSON.stringify(value) !== JSON.stringify(chosen)) {
      problems.set(
        m.resource,
        `${what} ${JSON.stringify(value)} disagrees with ${JSON.stringify(chosen)} of ${from.instance.node}/${from.instance.serviceId}; using the latter`,
      );
    }
  }
  return chosen;
}

/** The instances of one Consul service → its LocalServices (one per namespace), workloads and WorkloadEntries. */
export function assembleService(meshName: string, mapped: readonly MappedInstance[]): AssembledService {
  const problems = new Map<string, string>();
  const sorted = [...mapped].sort((a, b) =>
    a.instance.node === b.instance.node
      ? a.instance.serviceId < b.instance.serviceId
        ? -1
        : 1
      : a.instance.node < b.instance.node
        ? -1
        : 1,
  );
  // Two instances whose names collide after cleaning both get a hash of their own identity.
  const counts = new Map<string, number>();
  for (const m of sorted)
    counts.set(`${m.namespace}/${m.name}`, (counts.get(`${m.namespace}/${m.name}`) ?? 0) + 1);
  const byNamespace = new Map<string, MappedInstance[]>();
  for (const m of sorted) {
    const list = byNamespace.get(m.namespace) ?? [];
    list.push(m);
    byNamespace.set(m.namespace, list);
  }
  const out: AssembledService = { services: [], workloads: [], entries: [], problems };
  for (const [namespace, members] of [...byNamespace.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const protocol = decide(members, (m) => m.protocol, META_PROTOCOL, problems) ?? 'http';
    const servicePort =
      decide(members, (m) => m.servicePort, META_SERVICE_PORT, problems) ??
      Math.min(...members.map((m) => m.instance.port));
    const exportTo = decide(members, (m) => m.exportTo, META_EXPORT_TO, problems) ?? ['*'];
    const portName: string = protocol;
    const port: ServicePortSpec = { name: portName, port: servicePort, targetPort: portName, protocol };
    const endpoints: WorkloadEndpoint[] = [];
    for (const m of members) {
      const name =
        (counts.get(`${m.namespace}/${m.name}`) ?? 0) > 1
          ? `${m.name.slice(0, 45).replace(/-+$/, '')}-${shortHash(JSON.stringify([m.instance.node, m.instance.serviceId]))}`
          : m.name;
      const endpoint: WorkloadEndpoint = {
        name,
        namespace,
        address: m.instance.address,
        inboundPort: m.inboundPort,
        labels: m.labels,
        serviceAccount: m.serviceAccount,
        ...(m.instance.datacenter === '' ? {} : { locality: m.instance.datacenter }),
        weight: m.weight,
        healthy: m.healthy,
        sidecar: m.sidecar,
        ports: { [portName]: m.instance.port },
        source: 'consul',
        annotations: {
          [CONSUL_SERVICE_ID_ANNOTATION]: m.instance.serviceId,
          [CONSUL_NODE_ANNOTATION]: m.instance.node,
          ...(m.instance.datacenter === '' ? {} : { [CONSUL_DATACENTER_ANNOTATION]: m.instance.datacenter }),
        },
      };
      endpoints.push(endpoint);
      out.entries.push(workloadEntryOf(endpoint, meshName, servicePort, m.instance));
    }
    out.workloads.push(...endpoints);
    out.services.push({ name: meshName, namespace, ports: [port], endpoints, exportTo, source: 'consul' });
  }
  return out;
}

/**
 * The workload as an Istio WorkloadEntry, health in its `Healthy`
 * condition. Applied to a universal zone it would form the same service
 * (the `meshfed.io/service` shortcut label and service-ports annotation).
 */
export function workloadEntryOf(
  endpoint: WorkloadEndpoint,
  meshName: string,
  servicePort: number,
  instance: ConsulInstance,
): Resource {
  const [portName] = Object.keys(endpoint.ports);
  const annotations: Record<string, string> = { ...endpoint.annotations };
  if (endpoint.sidecar) annotations[INBOUND_PORT_ANNOTATION] = String(endpoint.inboundPort);
  else annotations[SIDECAR_ANNOTATION] = 'false';
  if (!endpoint.healthy) annotations[HEALTHY_ANNOTATION] = 'false';
  if (portName !== undefined) annotations[SERVICE_PORTS_ANNOTATION] = `${portName}=${servicePort}`;
  const reason =
    instance.status === 'passing'
      ? 'ConsulPassing'
      : instance.status === 'warning'
        ? 'ConsulWarning'
        : 'ConsulCritical';
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'WorkloadEntry',
    metadata: {
      name: endpoint.name,
      namespace: endpoint.namespace,
      labels: { ...endpoint.labels, [SERVICE_LABEL]: meshName },
      annotations,
    },
    spec: {
      address: endpoint.address,
      ports: { ...endpoint.ports },
      labels: { ...endpoint.labels },
      ...(endpoint.locality === undefined ? {} : { locality: endpoint.locality }),
      weight: endpoint.weight,
      serviceAccount: endpoint.serviceAccount,
    },
    status: {
      conditions: [
        {
          type: 'Healthy',
          status: endpoint.healthy ? 'True' : 'False',
          reason,
          message: instance.failing.length === 0 ? 'all Consul checks passing' : instance.failing.join('; '),
        },
      ],
    },
  };
}
