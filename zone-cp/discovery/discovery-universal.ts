/**
 * Universal discovery: workloads registered as WorkloadEntries in the zone
 * store (through the zone REST API, by a VM agent, or applied by an
 * operator) and services formed from them, with no platform underneath.
 *
 * How a workload joins a service (docs/discovery.md):
 * (a) a ServiceEntry in its namespace whose `workloadSelector.labels` match
 *     the workload's labels, as in Istio: the ServiceEntry's ports, each
 *     targeting the WorkloadEntry port of the same name (`targetPort` of
 *     the ServiceEntry port when set);
 * (b) the shortcut label `meshfed.io/service=<name>`: service `<name>` in the
 *     workload's namespace with the workload's named ports; the service port
 *     is the target port unless annotated `meshfed.io/service-ports: http=80`.
 * Health: an annotation `meshfed.io/healthy: "false"`, a `Healthy` condition
 * with status `False`, or a `meshfed.io/heartbeat` older than the grace
 * period makes a workload unhealthy (listed, but given no traffic).
 *
 * The views are maintained incrementally from store watches (list, then
 * watch from the list's revision; REVISION_TOO_OLD relists).
 */

import { ErrorCodes, MeshError, isMeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import type { Logger } from '../../core/log.js';
import { isDns1123Label } from '../../core/resource/validate.js';
import type { StoredResource } from '../../core/resource/resource.js';
import type { Store, Watch, WatchEvent } from '../../core/store/store.js';
import {
  DEFAULT_INBOUND_PORT,
  HEALTHY_ANNOTATION,
  HEARTBEAT_ANNOTATION,
  INBOUND_PORT_ANNOTATION,
  SERVICE_LABEL,
  SERVICE_PORTS_ANNOTATION,
  SIDECAR_ANNOTATION,
  registerDiscoverySource,
} from './discovery.js';
import type {
  DiscoveryProblem,
  DiscoverySource,
  LocalService,
  ServicePortSpec,
  WorkloadEndpoint,
} from './discovery.js';
import { exportToOf } from './discovery-kubernetes-map.js';
import { ChangeNotifier } from './discovery-notify.js';
import { ProblemSet } from './discovery-problems.js';
import { portProtocol } from './discovery-protocol.js';

export interface UniversalSourceOptions {
  /** The zone store holding WorkloadEntries and ServiceEntries. */
  store: Store;
  logger?: Logger;
  /** Gather changes this long before notifying. Default 10 ms. */
  debounceMs?: number;
  /** A workload whose last heartbeat is older than this is unhealthy. Default 30 s (three missed 10 s beats). */
  heartbeatGraceMs?: number;
  /** `start()` fails with UNAVAILABLE if the first lists have not succeeded by then. Default 30 s. */
  startTimeoutMs?: number;
  /** First retry delay after a failed list or watch; doubles up to 5 s. Default 100 ms. */
  retryInitialMs?: number;
}

type Obj = Record<string, unknown>;
type Kind = 'WorkloadEntry' | 'ServiceEntry';

interface EntryView {
  key: string;
  name: string;
  namespace: string;
  endpoint: WorkloadEndpoint;
  /** Health from annotation/condition alone (heartbeat applied on top). */
  reportedHealthy: boolean;
  /** ms since the epoch; undefined when the workload does not heartbeat. */
  heartbeatAt: number | undefined;
  /** `meshfed.io/service` value, validated. */
  labelService: string | undefined;
  /** Port name → service port from `meshfed.io/service-ports`. */
  servicePorts: Record<string, number>;
  exportTo: string[];
  /** Services it is a member of now. */
  services: Set<string>;
  /** JSON of `endpoint`: an update with the same signature changes nothing visible. */
  signature: string;
}

interface ServiceEntryView {
  key: string;
  namespace: string;
  /** `namespace/name` of the service it defines. */
  serviceKey: string;
  serviceName: string;
  ports: ServicePortSpec[];
  exportTo: string[];
  selector: Record<string, string>;
}

const RETRY_MAX_MS = 5_000;

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringMap(value: unknown): Record<string, string> | undefined {
  if (value === undefined || value === null) return {};
  if (!isObj(value)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') return undefined;
    out[k] = v;
  }
  return out;
}

function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535;
}

const key = (namespace: string, name: string): string => `${namespace}/${name}`;

/**
 * Annotations the model carries, without the heartbeat time: it changes on
 * every beat, and a beat that changes no health must not recompile anything.
 */
function visibleAnnotations(annotations: Record<string, string>): Record<string, string> {
  if (annotations[HEARTBEAT_ANNOTATION] === undefined) return annotations;
  const { [HEARTBEAT_ANNOTATION]: _beat, ...rest } = annotations;
  return rest;
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** `http=80,grpc=9090` → { http: 80, grpc: 9090 }; undefined when malformed. */
function parseServicePorts(text: string | undefined): Record<string, number> | undefined {
  const out: Record<string, number> = {};
  if (text === undefined || text.trim() === '') return out;
  for (const part of text.split(',')) {
    const m = /^\s*([a-z0-9]([-a-z0-9]*[a-z0-9])?)\s*=\s*(\d+)\s*$/.exec(part);
    const port = m ? Number(m[3]) : NaN;
    if (!m?.[1] || !isPort(port)) return undefined;
    out[m[1]] = port;
  }
  return out;
}

/** The service a ServiceEntry host names in `namespace`: `cart`, `cart.shop`, `cart.shop.svc[.<domain>]`. */
function serviceNameOf(host: string, namespace: string): string | undefined {
  if (isDns1123Label(host)) return host;
  const parts = host.split('.');
  if (parts.length >= 2 && parts[1] === namespace && (parts.length === 2 || parts[2] === 'svc')) {
    const name = parts[0] ?? '';
    return isDns1123Label(name) ? name : undefined;
  }
  return undefined;
}

/** Istio ServiceEntry port protocols to ours; unknown ones fall back to the port name. */
function seProtocol(name: string, protocol: unknown): ServicePortSpec['protocol'] {
  return portProtocol(name, typeof protocol === 'string' ? protocol : undefined);
}

export class UniversalSource implements DiscoverySource {
  readonly name = 'universal';

  private readonly store: Store;
  private readonly logger: Logger;
  private readonly notifier: ChangeNotifier;
  private readonly problems: ProblemSet;
  private readonly graceMs: number;
  private readonly startTimeoutMs: number;
  private readonly retryInitialMs: number;

  private readonly entries = new Map<string, EntryView>();
  private readonly entriesByNs = new Map<string, Set<string>>();
  private readonly serviceEntries = new Map<string, ServiceEntryView>();
  private readonly serviceEntriesByNs = new Map<string, Set<string>>();
  /** Service key → WorkloadEntry keys that are its endpoints. */
  private readonly members = new Map<string, Set<string>>();
  private readonly built = new Map<string, { service: LocalService; signature: string }>();
  private readonly dirty = new Set<string>();
  private workloadsDirty = false;
  private changed = false;
  private servicesCache: readonly LocalService[] | undefined;
  private workloadsCache: readonly WorkloadEndpoint[] | undefined;

  private readonly watches = new Map<Kind, Watch>();
  private readonly retryTimers = new Map<Kind, NodeJS.Timeout>();
  private readonly attempts = new Map<Kind, number>();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private started: Promise<void> | undefined;
  private ready = false;
  private closed = false;

  constructor(options: UniversalSourceOptions) {
    if (!options || typeof options.store !== 'object') {
      throw new MeshError(ErrorCodes.CONFIG, 'the universal discovery source needs a store');
    }
    this.store = options.store;
    this.logger = options.logger ?? createLogger('zone-cp.discovery.universal');
    this.problems = new ProblemSet(this.logger);
    this.notifier = new ChangeNotifier(options.debounceMs ?? 10, this.logger, () => this.rebuild());
    this.graceMs = options.heartbeatGraceMs ?? 30_000;
    this.startTimeoutMs = options.startTimeoutMs ?? 30_000;
    this.retryInitialMs = options.retryInitialMs ?? 100;
  }

  start(): Promise<void> {
    this.started ??= this.doStart();
    return this.started;
  }

  private async doStart(): Promise<void> {
    if (this.closed) throw new MeshError(ErrorCodes.CLOSED, 'the universal discovery source is closed');
    const deadline = Date.now() + this.startTimeoutMs;
    // ServiceEntries first, so WorkloadEntries find their services on the first pass.
    for (const kind of ['ServiceEntry', 'WorkloadEntry'] as const) {
      for (let attempt = 0; ; attempt++) {
        try {
          await this.follow(kind);
          break;
        } catch (err) {
          if (this.closed) return;
          if (Date.now() > deadline) {
            throw new MeshError(
              ErrorCodes.UNAVAILABLE,
              `universal discovery could not list ${kind} from the ${this.store.backend} store: ${(err as Error).message}`,
              { cause: err },
            );
          }
          await new Promise((resolve) => setTimeout(resolve, this.backoff(attempt)));
        }
      }
    }
    this.rebuild();
    this.ready = true;
    this.logger.info('universal discovery synced', {
      workloads: this.entries.size,
      services: this.built.size,
    });
  }

  private backoff(attempt: number): number {
    const base = Math.min(RETRY_MAX_MS, this.retryInitialMs * 2 ** attempt);
    return base / 2 + Math.random() * (base / 2);
  }

  /** Lists `kind`, replaces its view with the result, and watches from the list's revision. */
  private async follow(kind: Kind): Promise<void> {
    this.watches.get(kind)?.close();
    this.watches.delete(kind);
    const list = await this.store.list({ kind });
    if (this.closed) return;
    this.reconcile(kind, list.items);
    const watch = this.store.watch(
      { kind, fromRevision: list.revision },
      {
        onEvent: (event) => this.onEvent(kind, event),
        onError: (err) => this.onWatchError(kind, err),
      },
    );
    this.watches.set(kind, watch);
    this.attempts.set(kind, 0);
  }

  private onWatchError(kind: Kind, err: Error): void {
    if (this.closed || isMeshError(err, ErrorCodes.CLOSED)) return;
    this.watches.delete(kind);
    const tooOld = isMeshError(err, ErrorCodes.REVISION_TOO_OLD);
    if (!tooOld) this.logger.warn('store watch failed; relisting', { kind, err });
    const attempt = this.attempts.get(kind) ?? 0;
    this.attempts.set(kind, attempt + 1);
    const delay = tooOld ? 0 : this.backoff(attempt);
    this.retryTimers.set(
      kind,
      setTimeout(() => {
        this.retryTimers.delete(kind);
        this.follow(kind).catch((e: unknown) => this.onWatchError(kind, e as Error));
      }, delay),
    );
  }

  /** Replaces the view of `kind` with a fresh list: the problem reports of the kind are rebuilt too. */
  private reconcile(kind: Kind, items: StoredResource[]): void {
    this.problems.clearPrefix(`${kind}/`);
    const present = new Set<string>();
    for (const item of items) {
      present.add(key(item.metadata.namespace ?? '', item.metadata.name));
      this.upsert(kind, item);
    }
    const current = kind === 'WorkloadEntry' ? this.entries : this.serviceEntries;
    for (const k of [...current.keys()]) if (!present.has(k)) this.remove(kind, k);
  }

  private onEvent(kind: Kind, event: WatchEvent): void {
    if (this.closed) return;
    const k = key(event.object.metadata.namespace ?? '', event.object.metadata.name);
    if (event.type === 'DELETED') {
      this.problems.clear(`${kind}/${k}`);
      this.remove(kind, k);
    } else {
      this.upsert(kind, event.object);
    }
  }

  // ---- WorkloadEntries --------------------------------------------------------

  private parseEntry(item: StoredResource): { view: EntryView } | { reason: string } {
    const spec: Obj = isObj(item.spec) ? item.spec : {};
    const namespace = item.metadata.namespace ?? '';
    if (namespace === '') return { reason: 'a WorkloadEntry must be namespaced' };
    if (typeof spec.address !== 'string' || spec.address.trim() === '')
      return { reason: 'spec.address is missing' };
    const ports: Record<string, number> = {};
    if (spec.ports !== undefined && spec.ports !== null) {
      if (!isObj(spec.ports)) return { reason: 'spec.ports is not a map of port name to number' };
      for (const [name, port] of Object.entries(spec.ports)) {
        if (!isPort(port)) return { reason: `spec.ports.${name} must be an integer 1-65535` };
        ports[name] = port;
      }
    }
    const specLabels = stringMap(spec.labels);
    if (!specLabels) return { reason: 'spec.labels is not a map of strings' };
    const labels = { ...(item.metadata.labels ?? {}), ...specLabels };
    const annotations = item.metadata.annotations ?? {};
    if (spec.weight !== undefined && (!Number.isInteger(spec.weight) || (spec.weight as number) < 0)) {
      return { reason: 'spec.weight must be a non-negative integer' };
    }
    const inboundText = annotations[INBOUND_PORT_ANNOTATION];
    const inbound = inboundText === undefined ? DEFAULT_INBOUND_PORT : Number(inboundText);
    if (!isPort(inbound)) return { reason: `annotation ${INBOUND_PORT_ANNOTATION} must be a port number` };
    const labelService = labels[SERVICE_LABEL];
    if (labelService !== undefined && !isDns1123Label(labelService)) {
      return { reason: `label ${SERVICE_LABEL} "${labelService}" is not a DNS-1123 label` };
    }
    const servicePorts = parseServicePorts(annotations[SERVICE_PORTS_ANNOTATION]);
    if (!servicePorts) return { reason: `annotation ${SERVICE_PORTS_ANNOTATION} must read name=port,...` };
    let heartbeatAt: number | undefined;
    const beat = annotations[HEARTBEAT_ANNOTATION];
    if (beat !== undefined) {
      heartbeatAt = Date.parse(beat);
      if (Number.isNaN(heartbeatAt))
        return { reason: `annotation ${HEARTBEAT_ANNOTATION} is not an RFC 3339 time` };
    }
    const conditions =
      isObj(item.status) && Array.isArray(item.status.conditions) ? item.status.conditions : [];
    const conditionUnhealthy = conditions.some(
      (c) => isObj(c) && c.type === 'Healthy' && c.status === 'False',
    );
    const reportedHealthy = annotations[HEALTHY_ANNOTATION] !== 'false' && !conditionUnhealthy;
    const endpoint: WorkloadEndpoint = {
      name: item.metadata.name,
      namespace,
      address: spec.address.trim(),
      inboundPort: inbound,
      labels,
      serviceAccount:
        typeof spec.serviceAccount === 'string' && spec.serviceAccount !== ''
          ? spec.serviceAccount
          : 'default',
      ...(typeof spec.locality === 'string' && spec.locality !== '' ? { locality: spec.locality } : {}),
      weight: typeof spec.weight === 'number' ? spec.weight : 1,
      healthy: reportedHealthy,
      sidecar: annotations[SIDECAR_ANNOTATION] !== 'false',
      ports,
      source: 'universal',
      annotations: visibleAnnotations(annotations),
    };
    return {
      view: {
        key: key(namespace, item.metadata.name),
        name: item.metadata.name,
        namespace,
        endpoint,
        reportedHealthy,
        heartbeatAt,
        labelService,
        servicePorts,
        exportTo: exportToOf(annotations),
        services: new Set(),
        signature: '',
      },
    };
  }

  private upsertEntry(item: StoredResource): void {
    const k = key(item.metadata.namespace ?? '', item.metadata.name);
    const parsed = this.parseEntry(item);
    if ('reason' in parsed) {
      this.problems.report(`WorkloadEntry/${k}`, parsed.reason);
      this.removeEntry(k);
      return;
    }
    this.problems.clear(`WorkloadEntry/${k}`);
    const view = parsed.view;
    view.endpoint.healthy = this.healthOf(view, Date.now());
    view.signature = JSON.stringify(view.endpoint);
    const previous = this.entries.get(k);
    this.entries.set(k, view);
    if (previous !== undefined && previous.signature === view.signature) {
      // A heartbeat, or a change of nothing the model holds: same memberships, nothing to rebuild.
      view.endpoint = previous.endpoint;
      view.services = previous.services;
      this.scheduleHeartbeatCheck();
      return;
    }
    let inNs = this.entriesByNs.get(view.namespace);
    if (!inNs) {
      inNs = new Set();
      this.entriesByNs.set(view.namespace, inNs);
    }
    inNs.add(k);
    for (const svc of previous?.services ?? []) this.markService(svc);
    this.assignMemberships(view, previous?.services);
    this.workloadsDirty = true;
    this.invalidate();
    this.scheduleHeartbeatCheck();
  }

  private removeEntry(k: string): void {
    const previous = this.entries.get(k);
    if (!previous) return;
    this.entries.delete(k);
    this.entriesByNs.get(previous.namespace)?.delete(k);
    for (const svc of previous.services) {
      this.members.get(svc)?.delete(k);
      this.markService(svc);
    }
    this.workloadsDirty = true;
    this.invalidate();
  }

  /** Recomputes which services an entry belongs to and files it there. */
  private assignMemberships(view: EntryView, previous: Set<string> | undefined): void {
    const next = new Set<string>();
    if (view.labelService !== undefined) next.add(key(view.namespace, view.labelService));
    for (const seKey of this.serviceEntriesByNs.get(view.namespace) ?? []) {
      const se = this.serviceEntries.get(seKey);
      if (se && selects(se.selector, view.endpoint.labels)) next.add(se.serviceKey);
    }
    for (const svc of previous ?? []) {
      if (!next.has(svc)) {
        this.members.get(svc)?.delete(view.key);
        this.markService(svc);
      }
    }
    for (const svc of next) {
      let set = this.members.get(svc);
      if (!set) {
        set = new Set();
        this.members.set(svc, set);
      }
      set.add(view.key);
      this.markService(svc);
    }
    view.services = next;
  }

  private healthOf(view: EntryView, now: number): boolean {
    if (!view.reportedHealthy) return false;
    return view.heartbeatAt === undefined || now - view.heartbeatAt <= this.graceMs;
  }

  /** One timer for the next heartbeat expiry; expired workloads turn unhealthy without any write. */
  private scheduleHeartbeatCheck(): void {
    if (this.closed) return;
    let next = Infinity;
    for (const view of this.entries.values()) {
      if (view.heartbeatAt !== undefined && view.endpoint.healthy)
        next = Math.min(next, view.heartbeatAt + this.graceMs);
    }
    if (this.heartbeatTimer !== undefined) clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    if (next === Infinity) return;
    this.heartbeatTimer = setTimeout(() => this.checkHeartbeats(), Math.max(0, next - Date.now()) + 1);
    this.heartbeatTimer.unref();
  }

  private checkHeartbeats(): void {
    this.heartbeatTimer = undefined;
    const now = Date.now();
    for (const view of this.entries.values()) {
      const healthy = this.healthOf(view, now);
      if (healthy === view.endpoint.healthy) continue;
      if (!healthy) this.logger.info('workload missed its heartbeats', { workload: view.key });
      view.endpoint = { ...view.endpoint, healthy };
      view.signature = JSON.stringify(view.endpoint);
      for (const svc of view.services) this.markService(svc);
      this.workloadsDirty = true;
    }
    this.invalidate();
    this.scheduleHeartbeatCheck();
  }

  // ---- ServiceEntries ------------------------------------------------------------

  /** undefined: a ServiceEntry that forms no local service (external, or without a selector). */
  private parseServiceEntry(
    item: StoredResource,
  ): { view: ServiceEntryView } | { reason: string } | undefined {
    const spec: Obj = isObj(item.spec) ? item.spec : {};
    if (!isObj(spec.workloadSelector)) return undefined;
    if (spec.location === 'MESH_EXTERNAL') return undefined;
    const namespace = item.metadata.namespace ?? '';
    const selector = stringMap(spec.workloadSelector.labels);
    if (!selector) return { reason: 'spec.workloadSelector.labels is not a map of strings' };
    if (Object.keys(selector).length === 0) return { reason: 'spec.workloadSelector.labels is empty' };
    if (!Array.isArray(spec.hosts) || typeof spec.hosts[0] !== 'string')
      return { reason: 'spec.hosts is missing' };
    const serviceName = serviceNameOf(spec.hosts[0], namespace) ?? item.metadata.name;
    const rawPorts = spec.ports ?? [];
    if (!Array.isArray(rawPorts)) return { reason: 'spec.ports is not a list' };
    const ports: ServicePortSpec[] = [];
    for (const [i, p] of rawPorts.entries()) {
      if (!isObj(p) || !isPort(p.number))
        return { reason: `spec.ports[${i}].number must be an integer 1-65535` };
      const name = typeof p.name === 'string' ? p.name : '';
      if (p.targetPort !== undefined && !isPort(p.targetPort)) {
        return { reason: `spec.ports[${i}].targetPort must be an integer 1-65535` };
      }
      // Istio: the WorkloadEntry port named like the service port, else the targetPort, else the port itself.
      const targetPort: number | string = isPort(p.targetPort) ? p.targetPort : name !== '' ? name : p.number;
      ports.push({ name, port: p.number, targetPort, protocol: seProtocol(name, p.protocol) });
    }
    const exportTo =
      Array.isArray(spec.exportTo) &&
      spec.exportTo.every((e) => typeof e === 'string') &&
      spec.exportTo.length > 0
        ? (spec.exportTo as string[])
        : ['*'];
    return {
      view: {
        key: key(namespace, item.metadata.name),
        namespace,
        serviceKey: key(namespace, serviceName),
        serviceName,
        ports,
        exportTo,
        selector,
      },
    };
  }

  private upsertServiceEntry(item: StoredResource): void {
    const k = key(item.metadata.namespace ?? '', item.metadata.name);
    const parsed = this.parseServiceEntry(item);
    if (parsed !== undefined && 'reason' in parsed) this.problems.report(`ServiceEntry/${k}`, parsed.reason);
    else this.problems.clear(`ServiceEntry/${k}`);
    const previous = this.serviceEntries.get(k);
    if (parsed === undefined || 'reason' in parsed) {
      if (previous) this.removeServiceEntry(k);
      return;
    }
    this.serviceEntries.set(k, parsed.view);
    let inNs = this.serviceEntriesByNs.get(parsed.view.namespace);
    if (!inNs) {
      inNs = new Set();
      this.serviceEntriesByNs.set(parsed.view.namespace, inNs);
    }
    inNs.add(k);
    if (previous) this.markService(previous.serviceKey);
    this.markService(parsed.view.serviceKey);
    this.refileNamespace(parsed.view.namespace);
  }

  private removeServiceEntry(k: string): void {
    const previous = this.serviceEntries.get(k);
    if (!previous) return;
    this.serviceEntries.delete(k);
    this.serviceEntriesByNs.get(previous.namespace)?.delete(k);
    this.markService(previous.serviceKey);
    this.refileNamespace(previous.namespace);
  }

  /** Selectors of a namespace changed: every entry there may join or leave services (rare, small). */
  private refileNamespace(namespace: string): void {
    for (const k of this.entriesByNs.get(namespace) ?? []) {
      const view = this.entries.get(k);
      if (view) this.assignMemberships(view, view.services);
    }
    this.invalidate();
  }

  // ---- dispatch --------------------------------------------------------------------

  private upsert(kind: Kind, item: StoredResource): void {
    if (kind === 'WorkloadEntry') this.upsertEntry(item);
    else this.upsertServiceEntry(item);
  }

  private remove(kind: Kind, k: string): void {
    if (kind === 'WorkloadEntry') this.removeEntry(k);
    else this.removeServiceEntry(k);
  }

  private markService(svcKey: string): void {
    this.dirty.add(svcKey);
  }

  private invalidate(): void {
    if (this.ready) this.notifier.notify();
  }

  // ---- derived views -----------------------------------------------------------------

  private rebuild(): boolean {
    for (const svcKey of this.dirty) this.rebuildService(svcKey);
    this.dirty.clear();
    if (this.workloadsDirty) {
      // Only set by an entry whose model changed (signatures differ), so this is a real change.
      // Built here, not lazily, so that workloads() and services() show the same moment.
      this.workloadsDirty = false;
      this.workloadsCache = [...this.entries.values()].map((v) => v.endpoint);
      this.changed = true;
    }
    const changed = this.changed;
    this.changed = false;
    return changed;
  }

  /** The ServiceEntry defining `svcKey`: the first by name when several claim it (the others are reported). */
  private definitionOf(svcKey: string): ServiceEntryView | undefined {
    const slash = svcKey.indexOf('/');
    const namespace = svcKey.slice(0, slash);
    const claims = [...(this.serviceEntriesByNs.get(namespace) ?? [])]
      .map((k) => this.serviceEntries.get(k))
      .filter((se): se is ServiceEntryView => se !== undefined && se.serviceKey === svcKey)
      .sort((a, b) => (a.key < b.key ? -1 : 1));
    for (const loser of claims.slice(1)) {
      this.problems.report(
        `ServiceEntry/${loser.key}`,
        `service ${svcKey} is already defined by ServiceEntry ${claims[0]?.key ?? ''}; this one is ignored`,
      );
    }
    return claims[0];
  }

  private rebuildService(svcKey: string): void {
    const memberKeys = [...(this.members.get(svcKey) ?? [])].sort();
    const members = memberKeys.map((k) => this.entries.get(k)).filter((v): v is EntryView => v !== undefined);
    const definition = this.definitionOf(svcKey);
    if (!definition && members.length === 0) {
      this.members.delete(svcKey);
      if (this.built.delete(svcKey)) this.setServicesChanged();
      return;
    }
    const slash = svcKey.indexOf('/');
    const namespace = svcKey.slice(0, slash);
    const name = svcKey.slice(slash + 1);
    let ports: ServicePortSpec[];
    let exportTo: string[];
    if (definition) {
      ports = definition.ports;
      exportTo = definition.exportTo;
    } else {
      // Label-formed: the union of the members' named ports, the first member (by name) winning a clash.
      const byName = new Map<string, ServicePortSpec>();
      for (const m of members) {
        for (const [portName, target] of Object.entries(m.endpoint.ports)) {
          if (byName.has(portName)) continue;
          byName.set(portName, {
            name: portName,
            port: m.servicePorts[portName] ?? target,
            targetPort: portName,
            protocol: portProtocol(portName),
          });
        }
      }
      ports = [...byName.values()].sort((a, b) => a.port - b.port);
      exportTo = members[0]?.exportTo ?? ['*'];
    }
    const service: LocalService = {
      name,
      namespace,
      ports,
      endpoints: members.map((m) => m.endpoint),
      exportTo,
      source: 'universal',
    };
    const signature = JSON.stringify(service);
    if (this.built.get(svcKey)?.signature === signature) return;
    this.built.set(svcKey, { service, signature });
    this.setServicesChanged();
  }

  private setServicesChanged(): void {
    this.servicesCache = undefined;
    this.changed = true;
  }

  // ---- DiscoverySource ------------------------------------------------------------

  services(): readonly LocalService[] {
    this.servicesCache ??= [...this.built.values()].map((b) => b.service);
    return this.servicesCache;
  }

  workloads(): readonly WorkloadEndpoint[] {
    this.workloadsCache ??= [...this.entries.values()].map((v) => v.endpoint);
    return this.workloadsCache;
  }

  onChange(listener: () => void): () => void {
    return this.notifier.subscribe(listener);
  }

  errors(): readonly DiscoveryProblem[] {
    return this.problems.list();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.notifier.close();
    if (this.heartbeatTimer !== undefined) clearTimeout(this.heartbeatTimer);
    for (const t of this.retryTimers.values()) clearTimeout(t);
    for (const w of this.watches.values()) w.close();
    this.watches.clear();
  }
}

registerDiscoverySource<UniversalSourceOptions>('universal', (options) => new UniversalSource(options));
