/**
 * The WorkloadEntries of enrolled VMs: built from the WorkloadGroup's
 * template and what the VM reported, written with compare-and-set, their
 * Healthy condition kept in step with the VM's probe, and duplicates
 * resolved deterministically (istio#43950): two VM entries with the same
 * address on the same network cannot both stand; the most recent join wins
 * (ties broken by name) and the older entry is removed.
 */

import { ORIGIN_LABEL } from '../../core/auth/internal-kinds.js';
import { ErrorCodes, MeshError, isMeshError } from '../../core/errors.js';
import type { Resource, ResourceKey, StoredResource } from '../../core/resource/resource.js';
import { validateResource } from '../../core/resource/validate.js';
import type { Store } from '../../core/store/store.js';
import { HEALTHY_ANNOTATION, HEARTBEAT_ANNOTATION, INBOUND_PORT_ANNOTATION } from '../discovery/discovery.js';
import {
  AUTO_REGISTRATION_ANNOTATION,
  VM_GROUP_LABEL,
  VM_HOSTNAME_ANNOTATION,
  VM_JOINED_AT_ANNOTATION,
  VM_KEY_ANNOTATION,
  VM_SERIAL_ANNOTATION,
} from './vm-model.js';

const API_VERSION = 'networking.istio.io/v1';
const MAX_CAS_RETRIES = 10;

type Obj = Record<string, unknown>;

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObj(value)) return out;
  for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v;
  return out;
}

/** What a VM reports about itself (join, or a heartbeat re-creating its entry). */
export interface VmRegistration {
  address: string;
  /** The local service's port; replaces the group's (only, or `http`) port. */
  servicePort?: number;
  /** Where the VM's sidecar accepts mTLS. */
  inboundPort: number;
  labels: Record<string, string>;
  hostname?: string;
}

/** The identity and shape a WorkloadGroup gives its VMs. */
export interface GroupView {
  name: string;
  namespace: string;
  serviceAccount: string;
  network: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  template: Obj;
  /** The probe the agents run, as in the group (undefined: none, the VM is healthy while it heartbeats). */
  probe: Obj | undefined;
}

export function groupView(group: StoredResource): GroupView {
  const spec = isObj(group.spec) ? group.spec : {};
  const template = isObj(spec.template) ? spec.template : {};
  const meta = isObj(spec.metadata) ? spec.metadata : {};
  const serviceAccount =
    typeof template.serviceAccount === 'string' && template.serviceAccount !== ''
      ? template.serviceAccount
      : 'default';
  return {
    name: group.metadata.name,
    namespace: group.metadata.namespace ?? 'default',
    serviceAccount,
    network: typeof template.network === 'string' ? template.network : '',
    labels: { ...stringMap(meta.labels), ...stringMap(template.labels) },
    annotations: stringMap(meta.annotations),
    template,
    probe: isObj(spec.probe) ? spec.probe : undefined,
  };
}

/** Loads a WorkloadGroup; NOT_FOUND names it and what to do. */
export async function loadGroup(store: Store, namespace: string, name: string): Promise<GroupView> {
  const group = await store.get({ kind: 'WorkloadGroup', namespace, name });
  if (group === undefined) {
    throw new MeshError(
      ErrorCodes.NOT_FOUND,
      `WorkloadGroup ${namespace}/${name} does not exist (any more): apply it on the zone or global`,
    );
  }
  return groupView(group);
}

/** The entry's ports: the group's, with `servicePort` replacing its `http` (or only) port. */
function portsOf(group: GroupView, servicePort: number | undefined): Record<string, number> {
  const ports: Record<string, number> = {};
  if (isObj(group.template.ports)) {
    for (const [name, port] of Object.entries(group.template.ports)) {
      if (typeof port === 'number') ports[name] = port;
    }
  }
  if (servicePort === undefined) return ports;
  const names = Object.keys(ports);
  const [only] = names;
  if (names.length === 0) return { http: servicePort };
  if ('http' in ports) return { ...ports, http: servicePort };
  if (names.length === 1 && only !== undefined) return { [only]: servicePort };
  throw new MeshError(
    ErrorCodes.INVALID_ARGUMENT,
    `WorkloadGroup ${group.namespace}/${group.name} has several ports (${names.join(', ')}) and none named http: --service-port cannot say which; set the ports in the group`,
    { field: 'servicePort' },
  );
}

/**
 * The probe a VM runs: the group's, except that a probe aimed at the port
 * `--service-port` replaced is aimed at the service port instead (the group
 * says "probe the service"; the VM says where its service listens).
 */
export function probeFor(group: GroupView, servicePort: number | undefined): Obj | undefined {
  const probe = group.probe;
  if (probe === undefined || servicePort === undefined) return probe;
  const before = portsOf(group, undefined);
  const after = portsOf(group, servicePort);
  const replaced = Object.keys(after).find((name) => before[name] !== after[name]);
  const old = replaced === undefined ? undefined : before[replaced];
  if (old === undefined) return probe;
  const retarget = (action: unknown): unknown =>
    isObj(action) && action.port === old ? { ...action, port: servicePort } : action;
  return {
    ...probe,
    ...(probe.httpGet === undefined ? {} : { httpGet: retarget(probe.httpGet) }),
    ...(probe.tcpSocket === undefined ? {} : { tcpSocket: retarget(probe.tcpSocket) }),
  };
}

export interface EntryFacts {
  name: string;
  group: GroupView;
  registration: VmRegistration;
  joinedAt: string;
  keyFingerprint: string;
  serial: string;
  /** undefined: no probe (healthy while heartbeating); false until the first probe passes. */
  healthy: boolean | undefined;
  now: Date;
}

/** A VM's WorkloadEntry, checked by the shared validator. */
export function buildEntry(facts: EntryFacts): Resource {
  const { group, registration } = facts;
  const labels = { ...group.labels, ...registration.labels, [VM_GROUP_LABEL]: group.name };
  const spec: Obj = {
    ...Object.fromEntries(Object.entries(group.template).filter(([k]) => k !== 'address' && k !== 'labels')),
    address: registration.address,
    ports: portsOf(group, registration.servicePort),
    labels,
    serviceAccount: group.serviceAccount,
  };
  const now = facts.now.toISOString();
  const entry: Resource = {
    apiVersion: API_VERSION,
    kind: 'WorkloadEntry',
    metadata: {
      name: facts.name,
      namespace: group.namespace,
      labels,
      annotations: {
        ...group.annotations,
        [AUTO_REGISTRATION_ANNOTATION]: group.name,
        [INBOUND_PORT_ANNOTATION]: String(registration.inboundPort),
        [HEARTBEAT_ANNOTATION]: now,
        [VM_JOINED_AT_ANNOTATION]: facts.joinedAt,
        [VM_KEY_ANNOTATION]: facts.keyFingerprint,
        [VM_SERIAL_ANNOTATION]: facts.serial,
        ...(registration.hostname === undefined ? {} : { [VM_HOSTNAME_ANNOTATION]: registration.hostname }),
      },
    },
    spec,
  };
  validateResource(entry);
  if (facts.healthy !== undefined) {
    setHealth(entry, facts.healthy, facts.healthy ? 'ProbeSucceeded' : 'WaitingForProbe', '', facts.now);
  }
  return entry;
}

/**
 * Sets the Healthy condition (and the `meshfed.io/healthy` annotation every
 * discovery source reads); the transition time moves only when the status does.
 */
export function setHealth(
  entry: Resource,
  healthy: boolean,
  reason: string,
  message: string,
  now: Date,
): void {
  const annotations = { ...(entry.metadata.annotations ?? {}) };
  if (healthy) delete annotations[HEALTHY_ANNOTATION];
  else annotations[HEALTHY_ANNOTATION] = 'false';
  entry.metadata.annotations = annotations;
  const status = isObj(entry.status) ? entry.status : {};
  const conditions = Array.isArray(status.conditions) ? status.conditions.filter(isObj) : [];
  const previous = conditions.find((c) => c.type === 'Healthy');
  const value = healthy ? 'True' : 'False';
  const condition: Obj = {
    type: 'Healthy',
    status: value,
    lastProbeTime: now.toISOString(),
    lastTransitionTime:
      previous?.status === value && typeof previous.lastTransitionTime === 'string'
        ? previous.lastTransitionTime
        : now.toISOString(),
    reason,
    ...(message === '' ? {} : { message: message.slice(0, 1024) }),
  };
  entry.status = { ...status, conditions: [...conditions.filter((c) => c.type !== 'Healthy'), condition] };
}

/** True when the entry says it is healthy (no `false` annotation, no Healthy=False condition). */
export function isHealthy(entry: Resource): boolean {
  if (entry.metadata.annotations?.[HEALTHY_ANNOTATION] === 'false') return false;
  const conditions =
    isObj(entry.status) && Array.isArray(entry.status.conditions) ? entry.status.conditions : [];
  return !conditions.some((c) => isObj(c) && c.type === 'Healthy' && c.status === 'False');
}

export function isVmEntry(entry: Resource): boolean {
  return entry.metadata.labels?.[VM_GROUP_LABEL] !== undefined;
}

export function entryKey(namespace: string, name: string): ResourceKey {
  return { kind: 'WorkloadEntry', namespace, name };
}

/** Creates or replaces a VM's entry. Refuses to overwrite an entry a VM join did not create. */
export async function putEntry(
  store: Store,
  entry: Resource,
): Promise<{ stored: StoredResource; created: boolean }> {
  const key = entryKey(entry.metadata.namespace ?? '', entry.metadata.name);
  for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt++) {
    const current = await store.get(key);
    if (
      current !== undefined &&
      (current.metadata.labels?.[ORIGIN_LABEL] === 'global' || !isVmEntry(current))
    ) {
      throw new MeshError(
        ErrorCodes.CONFLICT,
        `WorkloadEntry ${key.namespace}/${key.name} exists and was not created by a VM join: delete it, or join with another --address`,
      );
    }
    try {
      if (current === undefined) return { stored: await store.create(entry), created: true };
      const stored = await store.update(entry, { expectedResourceVersion: current.metadata.resourceVersion });
      return { stored, created: false };
    } catch (err) {
      // Another writer (a heartbeat, the reaper) got there first: read again.
      if (isMeshError(err, ErrorCodes.CONFLICT) || isMeshError(err, ErrorCodes.ALREADY_EXISTS)) continue;
      if (isMeshError(err, ErrorCodes.NOT_FOUND)) continue;
      throw err;
    }
  }
  throw new MeshError(ErrorCodes.CONFLICT, `WorkloadEntry ${key.namespace}/${key.name} kept changing; retry`);
}

/**
 * Applies `change` to the stored entry with compare-and-set, retrying when
 * another writer got there first. Undefined when the entry does not exist.
 */
export async function modifyEntry(
  store: Store,
  key: ResourceKey,
  change: (entry: StoredResource) => Resource | undefined,
): Promise<StoredResource | undefined> {
  for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt++) {
    const current = await store.get(key);
    if (current === undefined) return undefined;
    const next = change(structuredClone(current));
    if (next === undefined) return current;
    try {
      return await store.update(next, { expectedResourceVersion: current.metadata.resourceVersion });
    } catch (err) {
      if (isMeshError(err, ErrorCodes.CONFLICT)) continue;
      if (isMeshError(err, ErrorCodes.NOT_FOUND)) return undefined;
      throw err;
    }
  }
  throw new MeshError(ErrorCodes.CONFLICT, `WorkloadEntry ${key.namespace}/${key.name} kept changing; retry`);
}

/** Every VM entry in the zone. */
export async function listVmEntries(store: Store): Promise<StoredResource[]> {
  const { items } = await store.list({ kind: 'WorkloadEntry', labelSelector: VM_GROUP_LABEL });
  return items.filter(isVmEntry);
}

/** Other VM entries holding the same address on the same network. */
export function duplicatesOf(
  entries: readonly StoredResource[],
  address: string,
  network: string,
  self: { namespace: string; name: string },
): StoredResource[] {
  return entries.filter((e) => {
    if (e.metadata.name === self.name && (e.metadata.namespace ?? '') === self.namespace) return false;
    const spec = isObj(e.spec) ? e.spec : {};
    const otherNetwork = typeof spec.network === 'string' ? spec.network : '';
    return spec.address === address && otherNetwork === network;
  });
}

/** True when `a` wins over `b` for one address: the later join, then the greater name. */
export function joinedLater(
  a: { joinedAt: string; namespace: string; name: string },
  b: { joinedAt: string; namespace: string; name: string },
): boolean {
  const ta = Date.parse(a.joinedAt) || 0;
  const tb = Date.parse(b.joinedAt) || 0;
  if (ta !== tb) return ta > tb;
  return `${a.namespace}/${a.name}` > `${b.namespace}/${b.name}`;
}

export function joinedAtOf(entry: Resource): string {
  return entry.metadata.annotations?.[VM_JOINED_AT_ANNOTATION] ?? '';
}
