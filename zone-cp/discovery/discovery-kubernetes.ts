/**
 * Kubernetes discovery: informers (@kubernetes/client-node `makeInformer`)
 * on Services, EndpointSlices, Pods, Namespaces and Nodes, folded into the
 * zone-local model.
 *
 * - Views are maintained incrementally: an event marks the services it can
 *   affect (a Service, the Service of an EndpointSlice, the services a Pod
 *   is an endpoint of) and only those are rebuilt, once per burst.
 * - Listeners are called only when a rebuilt service or workload really
 *   changed (pod status churn that changes nothing the mesh uses is silent).
 * - A dropped watch resumes from its last resourceVersion; `410 Gone`
 *   relists (client-node's ListWatch does both); a failed list or watch
 *   (API server down, 5xx) restarts the informer with capped exponential
 *   backoff and jitter, keeping the last known view meanwhile.
 * - A periodic resync rebuilds every view from the informer caches, so a
 *   bug in the incremental bookkeeping cannot outlive one resync period.
 * - A malformed object is skipped and reported by `errors()`.
 *
 * Registered as 'kubernetes' by discovery-builtins.ts, which loads this
 * module (and @kubernetes/client-node, ~1 s) only when the source starts.
 */

import { makeInformer } from '@kubernetes/client-node';
import type {
  Informer,
  KubeConfig,
  KubernetesListObject,
  KubernetesObject,
  ObjectCache,
} from '@kubernetes/client-node';

import { ErrorCodes, MeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import type { Logger } from '../../core/log.js';
import { loadKubeConfig } from '../../core/store/store-kubernetes.js';
import type { KubeConfigOptions } from '../../core/store/store-kubernetes.js';
import type { DiscoveryProblem, DiscoverySource, LocalService, WorkloadEndpoint } from './discovery.js';
import {
  assembleService,
  identityOf,
  nodeLocality,
  podView,
  podWorkload,
  serviceView,
  sliceView,
} from './discovery-kubernetes-map.js';
import type { PodView, ServiceView, SliceView } from './discovery-kubernetes-map.js';
import { listRaw } from './discovery-kubernetes-rest.js';
import { ChangeNotifier } from './discovery-notify.js';
import { ProblemSet } from './discovery-problems.js';

export interface KubernetesSourceOptions extends KubeConfigOptions {
  /** A ready KubeConfig; otherwise one is loaded from `kubeconfigPath`/`context`, KUBECONFIG or in-cluster. */
  kubeConfig?: KubeConfig;
  logger?: Logger;
  /** Gather changes this long before notifying. Default 10 ms. */
  debounceMs?: number;
  /** Rebuild every view from the caches this often. Default 5 min; 0 disables. */
  resyncMs?: number;
  /** `start()` fails with UNAVAILABLE if the first lists have not all succeeded by then. Default 30 s. */
  startTimeoutMs?: number;
  /** First retry delay after a failed list or watch; doubles up to `retryMaxMs`. Default 200 ms. */
  retryInitialMs?: number;
  /** Default 10 s. */
  retryMaxMs?: number;
  /** Watch Nodes for topology (locality). Default true; without it endpoints carry no locality. */
  watchNodes?: boolean;
}

export interface InformerStatus {
  kind: string;
  /** The first list succeeded. */
  synced: boolean;
  /** The informer is retrying after this error. */
  lastError?: string;
}

type Kind = 'Service' | 'EndpointSlice' | 'Pod' | 'Namespace' | 'Node';

const PATHS: Record<Kind, string> = {
  Service: '/api/v1/services',
  EndpointSlice: '/apis/discovery.k8s.io/v1/endpointslices',
  Pod: '/api/v1/pods',
  Namespace: '/api/v1/namespaces',
  Node: '/api/v1/nodes',
};

interface InformerEntry {
  kind: Kind;
  informer: Informer<KubernetesObject> & ObjectCache<KubernetesObject>;
  synced: boolean;
  failedDuringStart: boolean;
  lastError: string | undefined;
  attempts: number;
  retryTimer: NodeJS.Timeout | undefined;
  firstSync: Promise<void>;
  resolveFirstSync: () => void;
}

const key = (namespace: string, name: string): string => `${namespace}/${name}`;

export class KubernetesSource implements DiscoverySource {
  readonly name = 'kubernetes';

  private readonly kc: KubeConfig;
  private readonly logger: Logger;
  private readonly notifier: ChangeNotifier;
  private readonly problems: ProblemSet;
  private readonly options: Required<
    Pick<
      KubernetesSourceOptions,
      'resyncMs' | 'startTimeoutMs' | 'retryInitialMs' | 'retryMaxMs' | 'watchNodes'
    >
  >;
  private readonly entries: InformerEntry[] = [];

  // Raw views, maintained from informer events.
  private readonly svcViews = new Map<string, ServiceView>();
  /** Service key → slice key → slice. */
  private readonly slicesByService = new Map<string, Map<string, SliceView>>();
  /** Slice key → the service key it was filed under. */
  private readonly sliceOwner = new Map<string, string>();
  private readonly pods = new Map<string, PodView>();
  private readonly localities = new Map<string, string | undefined>();
  private readonly nsLabels = new Map<string, Record<string, string>>();

  // Derived views.
  private readonly built = new Map<string, { service: LocalService; signature: string }>();
  /** Pod key → services it is an endpoint of (to rebuild them when the pod changes). */
  private readonly servicesOfPod = new Map<string, Set<string>>();
  /** Service key → pod keys it references. */
  private readonly podsOfService = new Map<string, Set<string>>();
  private readonly workloadViews = new Map<string, { workload: WorkloadEndpoint; signature: string }>();
  private readonly dirtyServices = new Set<string>();
  private readonly dirtyPods = new Set<string>();
  private changed = false;
  private servicesCache: readonly LocalService[] | undefined;
  private workloadsCache: readonly WorkloadEndpoint[] | undefined;

  private resyncTimer: NodeJS.Timeout | undefined;
  private started: Promise<void> | undefined;
  /** The first full view is built: from now on events notify listeners. */
  private ready = false;
  private closed = false;

  constructor(options: KubernetesSourceOptions = {}) {
    this.kc = options.kubeConfig ?? loadKubeConfig(options);
    this.logger = options.logger ?? createLogger('zone-cp.discovery.kubernetes');
    this.problems = new ProblemSet(this.logger);
    this.notifier = new ChangeNotifier(options.debounceMs ?? 10, this.logger, () => this.rebuild());
    this.options = {
      resyncMs: options.resyncMs ?? 300_000,
      startTimeoutMs: options.startTimeoutMs ?? 30_000,
      retryInitialMs: options.retryInitialMs ?? 200,
      retryMaxMs: options.retryMaxMs ?? 10_000,
      watchNodes: options.watchNodes ?? true,
    };
  }

  start(): Promise<void> {
    this.started ??= this.doStart();
    return this.started;
  }

  private async doStart(): Promise<void> {
    if (this.closed) throw new MeshError(ErrorCodes.CLOSED, 'the kubernetes discovery source is closed');
    const kinds: Kind[] = ['Namespace', 'Service', 'EndpointSlice', 'Pod'];
    if (this.options.watchNodes) kinds.push('Node');
    for (const kind of kinds) this.entries.push(this.makeEntry(kind));
    for (const entry of this.entries) void this.attempt(entry);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const pending = this.entries.filter((e) => !e.synced);
        const why = pending.map((e) => `${e.kind}: ${e.lastError ?? 'no answer'}`).join('; ');
        reject(
          new MeshError(
            ErrorCodes.UNAVAILABLE,
            `Kubernetes API ${this.kc.getCurrentCluster()?.server ?? ''} not synced after ${this.options.startTimeoutMs} ms (${why})`,
          ),
        );
      }, this.options.startTimeoutMs);
    });
    try {
      await Promise.race([Promise.all(this.entries.map((e) => e.firstSync)), timeout]);
    } finally {
      clearTimeout(timer);
    }
    // The first view is built now rather than on the first debounce, so services() is complete at once.
    this.rebuild();
    this.ready = true;
    if (this.options.resyncMs > 0) {
      this.resyncTimer = setInterval(() => this.resync(), this.options.resyncMs);
      this.resyncTimer.unref();
    }
    this.logger.info('kubernetes discovery synced', {
      server: this.kc.getCurrentCluster()?.server,
      services: this.built.size,
      pods: this.pods.size,
    });
  }

  private makeEntry(kind: Kind): InformerEntry {
    const path = PATHS[kind];
    const list = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const raw = await listRaw(this.kc, path);
      // The informer's cache indexes by metadata; an object without it is reported, not cached.
      const items = raw.items.filter((item) => {
        const id = identityOf(item);
        if ('reason' in id) this.problems.report(`${kind}/?/?`, id.reason);
        return !('reason' in id);
      }) as KubernetesObject[];
      return { metadata: raw.metadata, items };
    };
    const informer = makeInformer<KubernetesObject>(this.kc, path, list);
    let resolveFirstSync: () => void = () => undefined;
    const firstSync = new Promise<void>((resolve) => (resolveFirstSync = resolve));
    const entry: InformerEntry = {
      kind,
      informer,
      synced: false,
      failedDuringStart: false,
      lastError: undefined,
      attempts: 0,
      retryTimer: undefined,
      firstSync,
      resolveFirstSync,
    };
    informer.on('add', (obj) => this.upsert(kind, obj));
    informer.on('update', (obj) => this.upsert(kind, obj));
    informer.on('delete', (obj) => this.remove(kind, obj));
    informer.on('error', (err: unknown) => this.onInformerError(entry, err));
    return entry;
  }

  /** Starts (or restarts) one informer: list if needed, then watch. */
  private async attempt(entry: InformerEntry): Promise<void> {
    if (this.closed) return;
    entry.failedDuringStart = false;
    try {
      await entry.informer.start();
    } catch (err) {
      this.onInformerError(entry, err);
      return;
    }
    if (entry.failedDuringStart || this.closed) return;
    if (!entry.synced) {
      entry.synced = true;
      entry.resolveFirstSync();
    }
    if (entry.lastError !== undefined) {
      this.logger.info('kubernetes watch recovered', { kind: entry.kind, after: entry.lastError });
    }
    entry.lastError = undefined;
    entry.attempts = 0;
  }

  private onInformerError(entry: InformerEntry, err: unknown): void {
    // Stopping an informer aborts its request, which reports as an error: not one.
    if (this.closed) return;
    entry.failedDuringStart = true;
    const message = err instanceof Error ? err.message : String(err);
    if (entry.lastError !== message) {
      this.logger.warn('kubernetes list/watch failed; retrying', { kind: entry.kind, err: message });
    }
    entry.lastError = message;
    if (entry.retryTimer !== undefined) return;
    const base = Math.min(this.options.retryMaxMs, this.options.retryInitialMs * 2 ** entry.attempts);
    entry.attempts++;
    const delay = base / 2 + Math.random() * (base / 2);
    entry.retryTimer = setTimeout(() => {
      entry.retryTimer = undefined;
      void this.attempt(entry);
    }, delay);
  }

  // ---- events -------------------------------------------------------------

  private upsert(kind: Kind, obj: KubernetesObject): void {
    const id = identityOf(obj);
    if ('reason' in id) {
      this.problems.report(`${kind}/?/?`, id.reason);
      return;
    }
    const k = key(id.value.namespace, id.value.name);
    const resource = `${kind}/${id.value.namespace}/${id.value.name}`;
    switch (kind) {
      case 'Service': {
        const view = serviceView(obj);
        if ('reason' in view || view.value === undefined) {
          if ('reason' in view) this.problems.report(resource, view.reason);
          else this.problems.clear(resource);
          this.dropService(k);
          break;
        }
        this.problems.clear(resource);
        this.svcViews.set(k, view.value);
        this.markService(k);
        break;
      }
      case 'EndpointSlice': {
        const view = sliceView(obj);
        if ('reason' in view) {
          this.problems.report(resource, view.reason);
          this.dropSlice(k);
          break;
        }
        this.problems.clear(resource);
        this.fileSlice(k, view.value);
        break;
      }
      case 'Pod': {
        const view = podView(obj);
        if ('reason' in view) {
          this.problems.report(resource, view.reason);
          this.dropPod(k);
          break;
        }
        this.problems.clear(resource);
        this.pods.set(k, view.value);
        this.markPod(k);
        break;
      }
      case 'Namespace':
        this.nsLabels.set(id.value.name, labelsOf(obj));
        break;
      case 'Node': {
        const locality = nodeLocality(obj);
        if (this.localities.has(id.value.name) && this.localities.get(id.value.name) === locality) break;
        this.localities.set(id.value.name, locality);
        // Rare (node labels seldom change): rebuild whatever runs there.
        for (const [podKey, pod] of this.pods) if (pod.nodeName === id.value.name) this.markPod(podKey);
        break;
      }
    }
  }

  private remove(kind: Kind, obj: KubernetesObject): void {
    const id = identityOf(obj);
    if ('reason' in id) return;
    const k = key(id.value.namespace, id.value.name);
    this.problems.clear(`${kind}/${id.value.namespace}/${id.value.name}`);
    switch (kind) {
      case 'Service':
        this.dropService(k);
        break;
      case 'EndpointSlice':
        this.dropSlice(k);
        break;
      case 'Pod':
        this.dropPod(k);
        break;
      case 'Namespace':
        this.nsLabels.delete(id.value.name);
        break;
      case 'Node':
        this.localities.delete(id.value.name);
        for (const [podKey, pod] of this.pods) if (pod.nodeName === id.value.name) this.markPod(podKey);
        break;
    }
  }

  private fileSlice(sliceKey: string, slice: SliceView): void {
    const owner = slice.service === undefined ? undefined : key(slice.namespace, slice.service);
    const previous = this.sliceOwner.get(sliceKey);
    if (previous !== undefined && previous !== owner) this.dropSlice(sliceKey);
    if (owner === undefined) return;
    let slices = this.slicesByService.get(owner);
    if (!slices) {
      slices = new Map();
      this.slicesByService.set(owner, slices);
    }
    slices.set(sliceKey, slice);
    this.sliceOwner.set(sliceKey, owner);
    this.markService(owner);
  }

  private dropSlice(sliceKey: string): void {
    const owner = this.sliceOwner.get(sliceKey);
    if (owner === undefined) return;
    this.sliceOwner.delete(sliceKey);
    const slices = this.slicesByService.get(owner);
    slices?.delete(sliceKey);
    if (slices?.size === 0) this.slicesByService.delete(owner);
    this.markService(owner);
  }

  private dropService(k: string): void {
    if (this.svcViews.delete(k)) this.markService(k);
  }

  private dropPod(k: string): void {
    if (this.pods.delete(k)) this.markPod(k);
  }

  private markService(k: string): void {
    this.dirtyServices.add(k);
    this.invalidate();
  }

  private markPod(k: string): void {
    this.dirtyPods.add(k);
    for (const svc of this.servicesOfPod.get(k) ?? []) this.dirtyServices.add(svc);
    this.invalidate();
  }

  private invalidate(): void {
    if (this.ready) this.notifier.notify();
  }

  // ---- derived views ----------------------------------------------------------

  /** Rebuilds what is dirty; true when a service or workload changed (listeners are then called). */
  private rebuild(): boolean {
    for (const svcKey of this.dirtyServices) this.rebuildService(svcKey);
    this.dirtyServices.clear();
    for (const podKey of this.dirtyPods) this.rebuildWorkload(podKey);
    this.dirtyPods.clear();
    const changed = this.changed;
    this.changed = false;
    return changed;
  }

  private rebuildService(svcKey: string): void {
    const previousPods = this.podsOfService.get(svcKey);
    for (const podKey of previousPods ?? []) {
      const set = this.servicesOfPod.get(podKey);
      set?.delete(svcKey);
      if (set?.size === 0) this.servicesOfPod.delete(podKey);
    }
    this.podsOfService.delete(svcKey);
    const view = this.svcViews.get(svcKey);
    if (!view) {
      if (this.built.delete(svcKey)) this.setChanged('services');
      return;
    }
    const slices = this.slicesByService.get(svcKey)?.values() ?? [];
    const referenced = new Set<string>();
    const service = assembleService(
      view,
      slices,
      (podName) => {
        const podKey = key(view.namespace, podName);
        referenced.add(podKey);
        return this.pods.get(podKey);
      },
      (nodeName) => (nodeName === undefined ? undefined : this.localities.get(nodeName)),
    );
    this.podsOfService.set(svcKey, referenced);
    for (const podKey of referenced) {
      let set = this.servicesOfPod.get(podKey);
      if (!set) {
        set = new Set();
        this.servicesOfPod.set(podKey, set);
      }
      set.add(svcKey);
    }
    const signature = JSON.stringify(service);
    if (this.built.get(svcKey)?.signature === signature) return;
    this.built.set(svcKey, { service, signature });
    this.setChanged('services');
  }

  private rebuildWorkload(podKey: string): void {
    const pod = this.pods.get(podKey);
    if (!pod || pod.terminal || pod.addresses.length === 0) {
      if (this.workloadViews.delete(podKey)) this.setChanged('workloads');
      return;
    }
    const workload = podWorkload(
      pod,
      pod.nodeName === undefined ? undefined : this.localities.get(pod.nodeName),
    );
    const signature = JSON.stringify(workload);
    if (this.workloadViews.get(podKey)?.signature === signature) return;
    this.workloadViews.set(podKey, { workload, signature });
    this.setChanged('workloads');
  }

  private setChanged(what: 'services' | 'workloads'): void {
    this.changed = true;
    if (what === 'services') this.servicesCache = undefined;
    else this.workloadsCache = undefined;
  }

  /**
   * Rebuilds the raw views from the informer caches, then every derived
   * view; listeners hear of it only if something differs. Runs every
   * `resyncMs`; callable for a forced check.
   */
  resync(): void {
    if (this.closed) return;
    this.svcViews.clear();
    this.slicesByService.clear();
    this.sliceOwner.clear();
    this.pods.clear();
    this.localities.clear();
    this.nsLabels.clear();
    for (const entry of this.entries) for (const obj of entry.informer.list()) this.upsert(entry.kind, obj);
    for (const svcKey of [...this.built.keys(), ...this.svcViews.keys()]) this.dirtyServices.add(svcKey);
    for (const podKey of [...this.workloadViews.keys(), ...this.pods.keys()]) this.dirtyPods.add(podKey);
    this.notifier.notify();
  }

  // ---- DiscoverySource ------------------------------------------------------

  services(): readonly LocalService[] {
    this.servicesCache ??= [...this.built.values()].map((b) => b.service);
    return this.servicesCache;
  }

  workloads(): readonly WorkloadEndpoint[] {
    this.workloadsCache ??= [...this.workloadViews.values()].map((w) => w.workload);
    return this.workloadsCache;
  }

  onChange(listener: () => void): () => void {
    return this.notifier.subscribe(listener);
  }

  errors(): readonly DiscoveryProblem[] {
    return this.problems.list();
  }

  /** Labels of a namespace as last seen (the injection webhook reads `meshfed-injection`). */
  namespaceLabels(namespace: string): Record<string, string> | undefined {
    return this.nsLabels.get(namespace);
  }

  /** Per informer: synced, and the error it is retrying after. */
  status(): InformerStatus[] {
    return this.entries.map((e) => ({
      kind: e.kind,
      synced: e.synced,
      ...(e.lastError === undefined ? {} : { lastError: e.lastError }),
    }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.resyncTimer !== undefined) clearInterval(this.resyncTimer);
    this.notifier.close();
    for (const entry of this.entries) {
      if (entry.retryTimer !== undefined) clearTimeout(entry.retryTimer);
      entry.resolveFirstSync();
      await entry.informer.stop();
    }
  }
}

function labelsOf(obj: KubernetesObject): Record<string, string> {
  const labels = obj.metadata?.labels;
  const out: Record<string, string> = {};
  if (labels && typeof labels === 'object') {
    for (const [k, v] of Object.entries(labels)) if (typeof v === 'string') out[k] = v;
  }
  return out;
}
