/**
 * Consul discovery: services and instances already registered in a Consul
 * catalog (VMs, bare metal) imported into the zone without touching the
 * machines, kept in sync with blocking queries, removed when they leave
 * Consul. Mapping rules: discovery-consul-map.ts and docs/consul.md.
 *
 * One blocking query follows the service list (`/v1/catalog/services`) and
 * one follows each imported service (`/v1/health/service/:name`), through
 * the `consul` npm client. Consul's rules for blocking clients
 * (api-docs/features/blocking, "Implementation Details") are kept:
 * - an index lower than the last one (a snapshot restore, a new server)
 *   resets the query to index 0, a fresh read;
 * - an index of 0 is never waited on (it would not block): 1 is used;
 * - reads of one query are at least `minIntervalMs` apart, so an index that
 *   keeps changing cannot turn the loop into a busy one.
 * A failed read (Consul unreachable, an error status, an answer of the
 * wrong shape) keeps the last good view, is reported by `errors()` and
 * `status()`, and is retried with capped exponential backoff and jitter; the
 * retry reads at index 0, because the server that answers it may not be
 * the one whose index we held (waiting on a foreign index could stall for a
 * whole wait). A malformed instance is skipped and reported; the rest of
 * its service is kept.
 */

import { ErrorCodes, MeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import type { Logger } from '../../core/log.js';
import type { Resource } from '../../core/resource/resource.js';
import { registerDiscoverySource } from './discovery.js';
import type { DiscoveryProblem, DiscoverySource, LocalService, WorkloadEndpoint } from './discovery.js';
import { ConsulCall, ConsulHttpClient } from './discovery-consul-client.js';
import type { ConsulAnswer } from './discovery-consul-client.js';
import {
  ConsulAnswerError,
  assembleService,
  hasAllTags,
  isPlainService,
  mapInstance,
  meshServiceName,
  parseCatalogServices,
  parseHealthEntry,
} from './discovery-consul-map.js';
import type { AssembledService, MappedInstance, MappingSettings } from './discovery-consul-map.js';
import { resolveConsulSettings } from './discovery-consul-options.js';
import type { ConsulSettings, ConsulSourceOptions } from './discovery-consul-options.js';
import { ChangeNotifier } from './discovery-notify.js';
import { ProblemSet } from './discovery-problems.js';

export type { ConsulSourceOptions } from './discovery-consul-options.js';

/** How one blocking query is doing. */
export interface ConsulQueryStatus {
  /** The index the next read waits on ('0': a fresh read). */
  index: string;
  /** RFC 3339 time of the last good answer. */
  lastSuccess?: string;
  /** The error the query is retrying after. */
  lastError?: string;
}

export interface ConsulSourceStatus {
  address: string;
  /** The first full view was loaded. */
  synced: boolean;
  catalog: ConsulQueryStatus;
  services: Array<ConsulQueryStatus & { name: string; instances: number }>;
}

/** One blocking query loop. */
interface Query {
  index: bigint;
  call: ConsulCall | undefined;
  timer: NodeJS.Timeout | undefined;
  wake: (() => void) | undefined;
  stopped: boolean;
  attempts: number;
  lastError: string | undefined;
  lastSuccess: number | undefined;
  settled: boolean;
  firstSettled: Promise<void>;
  settle: () => void;
}

/** A followed Consul service. */
interface ServiceWatch {
  consulName: string;
  meshName: string;
  query: Query;
  view: AssembledService | undefined;
  /** JSON of what the compiler reads (services and workloads), to notify only on real change. */
  signature: string;
  instances: number;
}

const CATALOG_PROBLEM = 'ConsulCatalog/services';
const CATALOG_ACL_PROBLEM = 'ConsulCatalog/acl';

function newQuery(): Query {
  let settle: () => void = () => undefined;
  const firstSettled = new Promise<void>((resolve) => (settle = resolve));
  const query: Query = {
    index: 0n,
    call: undefined,
    timer: undefined,
    wake: undefined,
    stopped: false,
    attempts: 0,
    lastError: undefined,
    lastSuccess: undefined,
    settled: false,
    firstSettled,
    settle: () => {
      query.settled = true;
      settle();
    },
  };
  return query;
}

function statusOf(query: Query): ConsulQueryStatus {
  return {
    index: query.index.toString(),
    ...(query.lastSuccess === undefined ? {} : { lastSuccess: new Date(query.lastSuccess).toISOString() }),
    ...(query.lastError === undefined ? {} : { lastError: query.lastError }),
  };
}

function messageOf(err: unknown): string {
  if (err instanceof Error) {
    const status = (err as { statusCode?: unknown }).statusCode;
    return typeof status === 'number' && !err.message.includes(String(status))
      ? `${err.message} (HTTP ${status})`
      : err.message;
  }
  return String(err);
}

export class ConsulSource implements DiscoverySource {
  readonly name = 'consul';

  private readonly settings: ConsulSettings;
  private readonly mapping: MappingSettings;
  private readonly client: ConsulHttpClient;
  private readonly logger: Logger;
  private readonly notifier: ChangeNotifier;
  private readonly problems: ProblemSet;
  private readonly catalog: Query = newQuery();
  private catalogLoaded = false;
  private resolveCatalogLoaded: () => void = () => undefined;
  private readonly catalogLoadedOnce = new Promise<void>((resolve) => (this.resolveCatalogLoaded = resolve));
  /** Consul service name → its watch. */
  private readonly watches = new Map<string, ServiceWatch>();
  /** Failing reads and ACL filtering, by resource: not malformed objects, so kept apart from `problems`. */
  private readonly conditions = new Map<string, string>();
  private errorsCache: { from: readonly DiscoveryProblem[]; list: readonly DiscoveryProblem[] } | undefined;
  /** Consul names skipped at the catalog level (reported), to clear their problem when they go. */
  private readonly refused = new Set<string>();

  private changed = false;
  private servicesCache: readonly LocalService[] | undefined;
  private workloadsCache: readonly WorkloadEndpoint[] | undefined;
  private entriesCache: readonly Resource[] | undefined;
  private started: Promise<void> | undefined;
  private ready = false;
  private closed = false;

  /** @throws MeshError CONFIG for a bad option, naming it. */
  constructor(options: ConsulSourceOptions = {}) {
    this.settings = resolveConsulSettings(options);
    this.logger = options.logger ?? createLogger('zone-cp.discovery.consul');
    this.problems = new ProblemSet(this.logger);
    this.notifier = new ChangeNotifier(this.settings.debounceMs, this.logger, () => this.rebuild());
    this.mapping = {
      defaultNamespace: this.settings.defaultNamespace,
      namespaceKey: this.settings.namespaceKey,
      warningHealthy: this.settings.warningHealthy,
    };
    this.client = new ConsulHttpClient({
      address: this.settings.address,
      ...(this.settings.token === undefined ? {} : { token: this.settings.token }),
      ...(this.settings.datacenter === undefined ? {} : { datacenter: this.settings.datacenter }),
      ...(this.settings.caPem === undefined ? {} : { caPem: this.settings.caPem }),
      stale: this.settings.stale,
    });
  }

  start(): Promise<void> {
    this.started ??= this.doStart();
    return this.started;
  }

  private async doStart(): Promise<void> {
    if (this.closed) throw new MeshError(ErrorCodes.CLOSED, 'the consul discovery source is closed');
    void this.run(
      this.catalog,
      (index, call) => this.read(index, call, (o) => this.client.services(o)),
      (answer) => this.applyCatalog(answer),
    );
    // Once loaded (even after start gave up waiting), the view goes live and listeners hear of it.
    const synced = this.synced().then(() => {
      if (this.closed) return;
      this.ready = true;
      this.changed = true;
      this.invalidateCaches();
      this.notifier.notify();
      this.logger.info('consul discovery synced', {
        address: this.settings.address.origin,
        services: this.watches.size,
        workloads: this.workloads().length,
      });
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const why = this.catalog.lastError ?? (this.catalogLoaded ? 'services still loading' : 'no answer');
        reject(
          new MeshError(
            ErrorCodes.UNAVAILABLE,
            `Consul at ${this.settings.address.origin} not synced after ${this.settings.startTimeoutMs} ms (${why})`,
          ),
        );
      }, this.settings.startTimeoutMs);
    });
    try {
      await Promise.race([synced, timeout]);
    } finally {
      clearTimeout(timer);
    }
    if (this.closed)
      throw new MeshError(ErrorCodes.CLOSED, 'the consul discovery source was closed while starting');
  }

  /** The service list loaded once, and every service it named read once (successfully or not). */
  private async synced(): Promise<void> {
    await this.catalogLoadedOnce;
    await Promise.all([...this.watches.values()].map((w) => w.query.firstSettled));
  }

  // ---- blocking query loop --------------------------------------------------

  private read(
    index: bigint,
    call: ConsulCall,
    send: (options: {
      index: bigint;
      waitMs: number;
      timeoutMs: number;
      call: ConsulCall;
    }) => Promise<ConsulAnswer>,
  ): Promise<ConsulAnswer> {
    const waitMs = this.settings.waitMs;
    // Consul may hold a request up to wait + wait/16; the timeout only catches a server that went silent.
    const timeoutMs = (index > 0n ? waitMs + waitMs / 16 : 0) + this.settings.requestTimeoutMs;
    return send({ index, waitMs, timeoutMs, call });
  }

  private async run(
    query: Query,
    read: (index: bigint, call: ConsulCall) => Promise<ConsulAnswer>,
    apply: (answer: ConsulAnswer) => void,
    onError: (message: string | undefined) => void = (message) => this.reportCatalogError(message),
  ): Promise<void> {
    while (!query.stopped) {
      const started = Date.now();
      const call = new ConsulCall();
      query.call = call;
      try {
        const answer = await read(query.index, call);
        if (query.stopped) return;
        if (answer.index === undefined) {
          throw new ConsulAnswerError('the answer has no X-Consul-Index header, so it cannot be followed');
        }
        apply(answer);
        if (answer.index < query.index) {
          this.logger.info('consul index went backwards; reading afresh', {
            from: query.index.toString(),
            to: answer.index.toString(),
          });
          query.index = 0n;
        } else {
          query.index = answer.index < 1n ? 1n : answer.index;
        }
        if (query.lastError !== undefined)
          this.logger.info('consul query recovered', { after: query.lastError });
        query.lastError = undefined;
        query.attempts = 0;
        query.lastSuccess = Date.now();
        onError(undefined);
        query.settle();
      } catch (err) {
        query.call = undefined;
        if (query.stopped) return;
        const message = messageOf(err);
        if (query.lastError !== message)
          this.logger.warn('consul read failed; keeping the last view', { err: message });
        query.lastError = message;
        query.index = 0n;
        onError(message);
        query.settle();
        const base = Math.min(this.settings.retryMaxMs, this.settings.retryInitialMs * 2 ** query.attempts);
        query.attempts++;
        await this.pause(query, base / 2 + Math.random() * (base / 2));
        continue;
      }
      query.call = undefined;
      const elapsed = Date.now() - started;
      if (elapsed < this.settings.minIntervalMs)
        await this.pause(query, this.settings.minIntervalMs - elapsed);
    }
  }

  private pause(query: Query, ms: number): Promise<void> {
    if (query.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      query.wake = resolve;
      query.timer = setTimeout(() => {
        query.timer = undefined;
        query.wake = undefined;
        resolve();
      }, ms);
    });
  }

  private stop(query: Query): void {
    query.stopped = true;
    query.call?.cancel();
    if (query.timer !== undefined) clearTimeout(query.timer);
    query.timer = undefined;
    query.wake?.();
    query.wake = undefined;
    query.settle();
  }

  private reportCatalogError(message: string | undefined): void {
    this.setCondition(
      CATALOG_PROBLEM,
      message === undefined
        ? undefined
        : `reading the service list from ${this.settings.address.origin} failed: ${message}; serving the last view (${this.watches.size} services)`,
    );
  }

  /** Records (or clears, with undefined) a condition of the source itself: a failing read, an ACL filter. */
  private setCondition(resource: string, reason: string | undefined): void {
    if (this.conditions.get(resource) === reason) return;
    if (reason === undefined) this.conditions.delete(resource);
    else this.conditions.set(resource, reason);
    this.errorsCache = undefined;
  }

  // ---- applying answers -------------------------------------------------------

  private applyCatalog(answer: ConsulAnswer): void {
    const listed = parseCatalogServices(answer.body);
    if (answer.filteredByAcls && !this.conditions.has(CATALOG_ACL_PROBLEM)) {
      this.logger.warn('consul filters the service list by ACLs', { address: this.settings.address.origin });
    }
    this.setCondition(
      CATALOG_ACL_PROBLEM,
      answer.filteredByAcls
        ? 'Consul filtered the service list by ACLs: the token cannot read every service (it needs service:read and node:read)'
        : undefined,
    );
    const wanted = new Map<string, string>();
    const meshNames = new Map<string, string>();
    const refused = new Set<string>();
    for (const consulName of [...listed.keys()].sort()) {
      if (this.settings.excludeServices.has(consulName)) continue;
      // The tags of the list are the union over instances: a service none of whose instances could pass is not followed.
      if (!hasAllTags(listed.get(consulName) ?? [], this.settings.tagFilter)) continue;
      const mesh = meshServiceName(consulName);
      const reason =
        'reason' in mesh
          ? mesh.reason
          : meshNames.has(mesh.value)
            ? `service "${consulName}" and service "${meshNames.get(mesh.value) ?? ''}" would both be mesh service "${mesh.value}"`
            : undefined;
      if ('reason' in mesh || reason !== undefined) {
        refused.add(consulName);
        this.problems.report(`Consul/${consulName}`, reason ?? 'refused');
        continue;
      }
      meshNames.set(mesh.value, consulName);
      wanted.set(consulName, mesh.value);
    }
    for (const name of this.refused) if (!refused.has(name)) this.problems.clear(`Consul/${name}`);
    this.refused.clear();
    for (const name of refused) this.refused.add(name);

    for (const [consulName, watch] of [...this.watches]) {
      if (wanted.get(consulName) === watch.meshName) continue;
      this.stop(watch.query);
      this.watches.delete(consulName);
      this.problems.clear(`Consul/${consulName}`);
      this.problems.clearPrefix(`Consul/${consulName}/`);
      this.setCondition(`Consul/${consulName}`, undefined);
      this.setCondition(`Consul/${consulName}/acl`, undefined);
      if (watch.view !== undefined) this.markChanged();
      this.logger.info('consul service left the catalog', { service: consulName });
    }
    for (const [consulName, meshName] of wanted) {
      if (this.watches.has(consulName)) continue;
      this.follow(consulName, meshName);
    }
    if (!this.catalogLoaded) {
      this.catalogLoaded = true;
      this.resolveCatalogLoaded();
    }
  }

  private follow(consulName: string, meshName: string): void {
    const watch: ServiceWatch = {
      consulName,
      meshName,
      query: newQuery(),
      view: undefined,
      signature: '',
      instances: 0,
    };
    this.watches.set(consulName, watch);
    void this.run(
      watch.query,
      (index, call) => this.read(index, call, (o) => this.client.healthService(consulName, o)),
      (answer) => this.applyHealth(watch, answer),
      (message) =>
        this.setCondition(
          `Consul/${consulName}`,
          message === undefined
            ? undefined
            : `reading its instances failed: ${message}; serving its last view (${watch.instances} instances)`,
        ),
    );
  }

  private applyHealth(watch: ServiceWatch, answer: ConsulAnswer): void {
    if (!Array.isArray(answer.body)) throw new ConsulAnswerError('the health answer is not a JSON list');
    const problems = new Map<string, string>();
    const mapped: MappedInstance[] = [];
    for (const [i, entry] of (answer.body as unknown[]).entries()) {
      if (!isPlainService(entry)) continue;
      const parsed = parseHealthEntry(entry, watch.consulName, i);
      if ('reason' in parsed) {
        problems.set(parsed.resource, parsed.reason);
        continue;
      }
      if (!hasAllTags(parsed.value.tags, this.settings.tagFilter)) continue;
      const m = mapInstance(parsed.value, parsed.resource, watch.meshName, this.mapping);
      if ('reason' in m) problems.set(parsed.resource, m.reason);
      else mapped.push(m.value);
    }
    const view = assembleService(watch.meshName, mapped);
    for (const [resource, reason] of view.problems) problems.set(resource, reason);
    this.setCondition(
      `Consul/${watch.consulName}/acl`,
      answer.filteredByAcls ? 'Consul filtered its instances by ACLs (the token needs node:read)' : undefined,
    );
    this.replaceProblems(`Consul/${watch.consulName}/`, problems);
    watch.instances = mapped.length;
    const signature = JSON.stringify([view.services, view.workloads]);
    const visible = signature !== watch.signature || watch.view === undefined;
    watch.view = view;
    watch.signature = signature;
    // WorkloadEntries (status messages carry check output) change without anything the compiler reads changing.
    this.entriesCache = undefined;
    if (visible) this.markChanged();
  }

  /** Sets the problems under `prefix` to exactly `problems`, logging only new ones. */
  private replaceProblems(prefix: string, problems: Map<string, string>): void {
    for (const { resource } of this.problems.list()) {
      if (resource.startsWith(prefix) && !problems.has(resource)) this.problems.clear(resource);
    }
    for (const [resource, reason] of problems) this.problems.report(resource, reason);
  }

  private markChanged(): void {
    this.changed = true;
    this.invalidateCaches();
    if (this.ready) this.notifier.notify();
  }

  private invalidateCaches(): void {
    this.servicesCache = undefined;
    this.workloadsCache = undefined;
    this.entriesCache = undefined;
  }

  private rebuild(): boolean {
    const changed = this.changed;
    this.changed = false;
    return changed;
  }

  // ---- DiscoverySource ------------------------------------------------------

  services(): readonly LocalService[] {
    if (!this.ready) return [];
    this.servicesCache ??= [...this.watches.values()].flatMap((w) => w.view?.services ?? []);
    return this.servicesCache;
  }

  workloads(): readonly WorkloadEndpoint[] {
    if (!this.ready) return [];
    this.workloadsCache ??= [...this.watches.values()].flatMap((w) => w.view?.workloads ?? []);
    return this.workloadsCache;
  }

  /**
   * The imported instances as Istio WorkloadEntries (`networking.istio.io/v1`),
   * health in `status.conditions[type=Healthy]`, for the zone CP to show.
   */
  workloadEntries(): readonly Resource[] {
    if (!this.ready) return [];
    this.entriesCache ??= [...this.watches.values()].flatMap((w) => w.view?.entries ?? []);
    return this.entriesCache;
  }

  onChange(listener: () => void): () => void {
    return this.notifier.subscribe(listener);
  }

  /** Instances and services skipped as malformed, and the source's own conditions (failing reads, ACL filtering). */
  errors(): readonly DiscoveryProblem[] {
    const problems = this.problems.list();
    if (this.errorsCache?.from !== problems) {
      const all = [...problems, ...[...this.conditions].map(([resource, reason]) => ({ resource, reason }))];
      all.sort((a, b) => (a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : 0));
      this.errorsCache = { from: problems, list: all };
    }
    return this.errorsCache.list;
  }

  /** Per query: the index it waits on, its last success and the error it is retrying after. */
  status(): ConsulSourceStatus {
    return {
      address: this.settings.address.origin,
      synced: this.ready,
      catalog: statusOf(this.catalog),
      services: [...this.watches.values()]
        .sort((a, b) => (a.consulName < b.consulName ? -1 : 1))
        .map((w) => ({ name: w.consulName, instances: w.instances, ...statusOf(w.query) })),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stop(this.catalog);
    for (const watch of this.watches.values()) this.stop(watch.query);
    this.resolveCatalogLoaded();
    this.notifier.close();
    this.client.close();
  }
}

registerDiscoverySource<ConsulSourceOptions>('consul', (options) => new ConsulSource(options));
