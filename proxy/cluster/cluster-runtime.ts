/**
 * The live side of one upstream cluster (service × port × subset): its
 * endpoints with their pools, the load balancer, the circuit breaker, the
 * outlier detector and the locality plan. Created from a ClusterSpec and
 * updated in place by later snapshots, so in-flight requests, ejections
 * and warm connections carry over a config change.
 */

import type { EndpointConfig } from '../../core/mesh/snapshot.js';
import type { ClusterSpec } from '../config/config-types.js';
import { createLoadBalancer, LbLevel, type LoadBalancer } from '../lb/lb.js';
import '../lb/lb-builtin.js';
import { planLocality, type LocalityContext } from '../lb/lb-locality.js';
import { OutlierDetector } from '../outlier/outlier-detector.js';
import type { TlsProvider } from '../upstream/upstream-connect.js';
import { createPool, poolKey, type PoolSettings } from '../upstream/upstream-pool.js';
import { CircuitBreaker } from './circuit-breaker.js';
import { EndpointState, endpointKey } from './endpoint-state.js';

/** Idle upstream connections close after this long unless the DestinationRule says otherwise. */
export const DEFAULT_MESH_IDLE_MS = 30_000;
/** Plain HTTP servers (apps) often close idle connections after 5 s: give up ours first. */
export const DEFAULT_PLAINTEXT_IDLE_MS = 4_000;

export function poolSettingsFor(spec: ClusterSpec, e: EndpointConfig): PoolSettings {
  const tls = e.via !== 'plaintext' && !spec.policy.plaintext;
  // A plaintext endpoint is no sidecar (or one told to take plaintext): it speaks what the app speaks.
  const h2 = spec.policy.h2 || (tls && spec.policy.h2ToProxies);
  return {
    address: e.address,
    port: e.port,
    tls,
    sni: spec.sni,
    alpn: h2 ? ['h2'] : ['http/1.1'],
    identities: e.identities,
    connectTimeoutMs: spec.policy.connectTimeoutMs,
    h2,
    maxRequestsPerConnection: spec.policy.maxRequestsPerConnection,
    idleTimeoutMs: spec.policy.idleTimeoutMs || (tls ? DEFAULT_MESH_IDLE_MS : DEFAULT_PLAINTEXT_IDLE_MS),
    maxConnections: spec.policy.maxConnections,
  };
}

export class ClusterRuntime {
  spec: ClusterSpec;
  readonly name: string;
  endpoints: EndpointState[] = [];
  readonly breaker: CircuitBreaker;
  #lb: LoadBalancer;
  #lbName: string;
  #outlier: OutlierDetector | undefined;
  #levels: LbLevel[] = [];
  #distribute: Array<{ level: LbLevel; weight: number }> | undefined;
  #distributeTotal = 0;
  #plan: ReturnType<typeof planLocality> = { levels: [], distribute: undefined };
  readonly #provider: TlsProvider | undefined;
  closed = false;

  constructor(spec: ClusterSpec, locality: LocalityContext, provider: TlsProvider | undefined) {
    this.spec = spec;
    this.name = spec.name;
    this.#provider = provider;
    this.#lbName = spec.policy.lb;
    this.#lb = createLoadBalancer(spec.policy.lb);
    this.breaker = new CircuitBreaker({ ...spec.policy, h2: spec.policy.h2 });
    this.update(spec, locality);
  }

  /** Applies a new spec for the same cluster name. */
  update(spec: ClusterSpec, locality: LocalityContext): void {
    this.spec = spec;
    if (spec.policy.lb !== this.#lbName) {
      this.#lbName = spec.policy.lb;
      this.#lb = createLoadBalancer(spec.policy.lb);
    }
    this.breaker.update({ ...spec.policy, h2: spec.policy.h2 });
    const previous = new Map(this.endpoints.map((e) => [e.key, e]));
    const next: EndpointState[] = [];
    for (const config of spec.endpoints) {
      const key = endpointKey(config);
      const settings = poolSettingsFor(spec, config);
      const old = previous.get(key);
      if (old !== undefined && !next.includes(old)) {
        previous.delete(key);
        old.config = config;
        if (old.pool.key !== poolKey(settings)) {
          old.pool.close();
          old.pool = createPool(settings, this.#provider);
        }
        next.push(old);
      } else {
        next.push(new EndpointState(config, createPool(settings, this.#provider)));
      }
    }
    for (const gone of previous.values()) gone.pool.close();
    this.endpoints = next;
    if (spec.policy.outlier !== undefined) {
      if (this.#outlier === undefined) this.#outlier = new OutlierDetector(spec.policy.outlier, this);
      else this.#outlier.update(spec.policy.outlier);
    } else if (this.#outlier !== undefined) {
      this.#outlier.close();
      this.#outlier = undefined;
      for (const e of this.endpoints) e.ejected = false;
    }
    this.#plan = planLocality(this.endpoints, locality, spec.locality, spec.policy.locality);
    this.#rebuild();
  }

  /** Recomputes the available endpoints per level: after a snapshot, an ejection or a return. */
  #rebuild(): void {
    this.#levels = this.#plan.levels.map((list) => new LbLevel(list.filter((e) => e.available)));
    if (this.#plan.distribute !== undefined) {
      this.#distribute = this.#plan.distribute.map((g) => ({
        level: new LbLevel(g.endpoints.filter((e) => e.available)),
        weight: g.weight,
      }));
      this.#distributeTotal = this.#distribute.reduce((sum, g) => sum + g.weight, 0);
    } else {
      this.#distribute = undefined;
    }
  }

  onEjectionChange(_endpoint: EndpointState, _ejected: boolean): void {
    this.#rebuild();
  }

  /** An available endpoint by locality priority and the load balancer, or undefined (no healthy upstream). */
  pick(avoid: EndpointState | undefined): EndpointState | undefined {
    const distribute = this.#distribute;
    if (distribute !== undefined) return this.#pickDistributed(distribute, avoid);
    for (const level of this.#levels) {
      if (level.endpoints.length > 0) return this.#lb.pick(level, avoid);
    }
    return undefined;
  }

  #pickDistributed(
    groups: Array<{ level: LbLevel; weight: number }>,
    avoid: EndpointState | undefined,
  ): EndpointState | undefined {
    let total = 0;
    for (const g of groups) if (g.level.endpoints.length > 0) total += g.weight;
    if (total === 0) return undefined;
    let draw = Math.random() * total;
    for (const g of groups) {
      if (g.level.endpoints.length === 0) continue;
      draw -= g.weight;
      if (draw < 0) return this.#lb.pick(g.level, avoid);
    }
    return undefined;
  }

  /** Outcome of one try against `e`: a status, or 0 for a local failure (connect, reset, timeout). */
  recordResult(e: EndpointState, status: number): void {
    this.#outlier?.onResult(e, status);
  }

  get ejectionsTotal(): number {
    return this.#outlier?.ejectionsTotal ?? 0;
  }

  get distributeTotal(): number {
    return this.#distributeTotal;
  }

  /** Runs the outlier sweep now (tests and the admin endpoint use it). */
  sweepOutliers(now?: number): void {
    this.#outlier?.sweep(now);
  }

  /** Graceful: pools finish what they carry. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#outlier?.close();
    for (const e of this.endpoints) e.pool.close();
  }

  destroy(): void {
    this.closed = true;
    this.#outlier?.close();
    for (const e of this.endpoints) e.pool.destroy();
  }
}

/** Every cluster of the active config, by name; runtimes are reused across snapshots. */
export class ClusterManager {
  readonly clusters = new Map<string, ClusterRuntime>();
  readonly #provider: TlsProvider | undefined;

  constructor(provider: TlsProvider | undefined) {
    this.#provider = provider;
  }

  /** Makes the set of clusters exactly `specs`; removed clusters close gracefully. */
  apply(specs: readonly ClusterSpec[], locality: LocalityContext): void {
    const seen = new Set<string>();
    for (const spec of specs) {
      seen.add(spec.name);
      const existing = this.clusters.get(spec.name);
      if (existing !== undefined) existing.update(spec, locality);
      else this.clusters.set(spec.name, new ClusterRuntime(spec, locality, this.#provider));
    }
    for (const [name, runtime] of this.clusters) {
      if (!seen.has(name)) {
        runtime.close();
        this.clusters.delete(name);
      }
    }
  }

  close(): void {
    for (const runtime of this.clusters.values()) runtime.close();
  }

  destroy(): void {
    for (const runtime of this.clusters.values()) runtime.destroy();
    this.clusters.clear();
  }
}
