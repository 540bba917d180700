/**
 * Load balancers, locality priority, outlier detection and the circuit
 * breaker as units: distributions over many picks, Istio's locality
 * settings, Envoy's ejection arithmetic and overflow rules.
 */

import { afterEach, describe, expect, it } from '@jest/globals';
import type { EndpointConfig } from '../../core/mesh/snapshot.js';
import { CircuitBreaker } from '../../proxy/cluster/circuit-breaker.js';
import { EndpointState } from '../../proxy/cluster/endpoint-state.js';
import { createLoadBalancer, LbLevel, registeredLoadBalancers } from '../../proxy/lb/lb.js';
import '../../proxy/lb/lb-builtin.js';
import { localityMatches, planLocality } from '../../proxy/lb/lb-locality.js';
import { OutlierDetector } from '../../proxy/outlier/outlier-detector.js';
import type { UpstreamPool } from '../../proxy/upstream/upstream-pool.js';

const pool = {
  key: '',
  h2: false,
  open: () => {
    throw new Error('unused');
  },
  connections: () => 0,
  close: () => undefined,
  destroy: () => undefined,
} as unknown as UpstreamPool;

function endpoint(name: string, extra: Partial<EndpointConfig> = {}): EndpointState {
  return new EndpointState(
    {
      address: name,
      port: 1,
      via: 'sidecar',
      zone: 'zone-a',
      weight: 1,
      healthy: true,
      labels: {},
      identities: ['spiffe://cluster.local/ns/a/sa/b'],
      ...extra,
    },
    pool,
  );
}

function picks(name: string, level: LbLevel, n: number): Record<string, number> {
  const lb = createLoadBalancer(name);
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const e = lb.pick(level, undefined);
    if (e) out[e.config.address] = (out[e.config.address] ?? 0) + 1;
  }
  return out;
}

describe('load balancers', () => {
  it('are registered by Istio name', () => {
    expect(registeredLoadBalancers().sort()).toEqual(['LEAST_REQUEST', 'RANDOM', 'ROUND_ROBIN']);
    expect(() => createLoadBalancer('MAGLEV')).toThrow(
      /unknown load balancer "MAGLEV"; known: LEAST_REQUEST, RANDOM, ROUND_ROBIN/,
    );
  });

  it('round robin takes turns, and honours weights smoothly', () => {
    expect(picks('ROUND_ROBIN', new LbLevel([endpoint('a'), endpoint('b'), endpoint('c')]), 300)).toEqual({
      a: 100,
      b: 100,
      c: 100,
    });
    expect(
      picks('ROUND_ROBIN', new LbLevel([endpoint('a', { weight: 3 }), endpoint('b', { weight: 1 })]), 400),
    ).toEqual({ a: 300, b: 100 });
  });

  it('least request prefers the endpoint with fewer requests in flight', () => {
    const busy = endpoint('busy');
    busy.active = 50;
    const idle = endpoint('idle');
    const counts = picks('LEAST_REQUEST', new LbLevel([busy, idle]), 1000);
    expect(counts.idle).toBe(1000);
  });

  it('random spreads by weight', () => {
    const counts = picks(
      'RANDOM',
      new LbLevel([endpoint('a', { weight: 9 }), endpoint('b', { weight: 1 })]),
      10_000,
    );
    // Binomial(10000, 0.1): σ = 30.
    expect(counts.b).toBeGreaterThan(1000 - 150);
    expect(counts.b).toBeLessThan(1000 + 150);
  });

  it('a retry avoids the endpoint that just failed when another exists', () => {
    const a = endpoint('a');
    const b = endpoint('b');
    for (const name of ['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM']) {
      const lb = createLoadBalancer(name);
      for (let i = 0; i < 50; i++) expect(lb.pick(new LbLevel([a, b]), a)).toBe(b);
    }
  });
});

describe('locality', () => {
  const ctx = { zone: 'zone-a', locality: 'region1/zone1/sz1', labels: { app: 'x' } };
  const local = endpoint('local', { zone: 'zone-a', locality: 'region1/zone1/sz1' });
  const sameRegion = endpoint('same-region', { zone: 'zone-a', locality: 'region1/zone2' });
  const failoverRegion = endpoint('failover', { zone: 'zone-b', locality: 'region2/zone9' });
  const elsewhere = endpoint('elsewhere', { zone: 'zone-c', locality: 'region3/zone1' });
  const names = (levels: EndpointState[][]): string[][] => levels.map((l) => l.map((e) => e.config.address));

  it('by default: own zone first, then every other zone', () => {
    const plan = planLocality(
      [elsewhere, local, failoverRegion],
      ctx,
      { preferLocalZone: true, pinnedToZone: false },
      undefined,
    );
    expect(names(plan.levels)).toEqual([['local'], ['elsewhere', 'failover']]);
    expect(
      names(
        planLocality([elsewhere, local], ctx, { preferLocalZone: false, pinnedToZone: false }, undefined)
          .levels,
      ),
    ).toEqual([['elsewhere', 'local']]);
    expect(
      names(
        planLocality([elsewhere, local], ctx, { preferLocalZone: true, pinnedToZone: true }, undefined)
          .levels,
      ),
    ).toEqual([['local']]);
  });

  it('failover: region by region, the configured target region before the rest', () => {
    const plan = planLocality(
      [elsewhere, failoverRegion, sameRegion, local],
      ctx,
      { preferLocalZone: false, pinnedToZone: false },
      {
        enabled: true,
        failover: [{ from: 'region1', to: 'region2' }],
        failoverPriority: [],
        distribute: [],
      },
    );
    expect(names(plan.levels)).toEqual([['local'], ['same-region'], ['failover'], ['elsewhere']]);
  });

  it('failoverPriority: endpoints matching more leading labels first', () => {
    const a = endpoint('a', { labels: { 'topology.istio.io/network': 'n1', tier: 'gold' } });
    const b = endpoint('b', { labels: { 'topology.istio.io/network': 'n1', tier: 'silver' } });
    const c = endpoint('c', { labels: { 'topology.istio.io/network': 'n2', tier: 'gold' } });
    const plan = planLocality(
      [c, b, a],
      { ...ctx, labels: { 'topology.istio.io/network': 'n1', tier: 'gold' } },
      { preferLocalZone: true, pinnedToZone: false },
      {
        enabled: true,
        failover: [],
        failoverPriority: ['topology.istio.io/network', 'tier'],
        distribute: [],
      },
    );
    expect(names(plan.levels)).toEqual([['a'], ['b'], ['c']]);
  });

  it('distribute: weighted shares per locality', () => {
    const plan = planLocality(
      [local, sameRegion, elsewhere],
      ctx,
      { preferLocalZone: true, pinnedToZone: false },
      {
        enabled: true,
        failover: [],
        failoverPriority: [],
        distribute: [
          {
            from: 'region1/zone1/*',
            to: [
              ['region1/zone1/*', 70],
              ['region1/zone2/*', 20],
              ['region3/*', 10],
            ],
          },
        ],
      },
    );
    expect(plan.distribute?.map((g) => [g.endpoints.map((e) => e.config.address), g.weight])).toEqual([
      [['local'], 70],
      [['same-region'], 20],
      [['elsewhere'], 10],
    ]);
    expect(localityMatches('region1/*', 'region1/zone7/x')).toBe(true);
    expect(localityMatches('region1/zone1/*', 'region1/zone2/x')).toBe(false);
  });
});

describe('outlier detection', () => {
  const detectors: OutlierDetector[] = [];
  afterEach(() => detectors.splice(0).forEach((d) => d.close()));

  function detector(
    endpoints: EndpointState[],
    policy: Partial<ConstructorParameters<typeof OutlierDetector>[0]> = {},
  ) {
    const changes: Array<[string, boolean]> = [];
    const d = new OutlierDetector(
      {
        consecutive5xx: 3,
        consecutiveGateway: 0,
        intervalMs: 60_000,
        baseEjectionMs: 1000,
        maxEjectionPercent: 100,
        minHealthPercent: 0,
        ...policy,
      },
      { endpoints, onEjectionChange: (e, ejected) => changes.push([e.config.address, ejected]) },
    );
    detectors.push(d);
    return { d, changes };
  }

  it('ejects after consecutive 5xx; a success in between resets the count', () => {
    const a = endpoint('a');
    const { d, changes } = detector([a, endpoint('b')]);
    d.onResult(a, 500);
    d.onResult(a, 500);
    d.onResult(a, 200);
    d.onResult(a, 503);
    d.onResult(a, 502);
    expect(a.ejected).toBe(false);
    d.onResult(a, 0);
    expect(a.ejected).toBe(true);
    expect(changes).toEqual([['a', true]]);
  });

  it('each ejection lasts base × count, and the sweep lets endpoints back', () => {
    const a = endpoint('a');
    const { d } = detector([a, endpoint('b')], { consecutive5xx: 1 });
    // Bounded by the clock read before and after the call, so a pause on a loaded host cannot fail it.
    const t0 = Date.now();
    d.onResult(a, 500);
    const t0After = Date.now();
    expect(a.ejectedUntil).toBeGreaterThanOrEqual(t0 + 1000);
    expect(a.ejectedUntil).toBeLessThanOrEqual(t0After + 1000);
    d.sweep(a.ejectedUntil + 1);
    expect(a.ejected).toBe(false);
    const t1 = Date.now();
    d.onResult(a, 500);
    const t1After = Date.now();
    expect(a.ejectedUntil).toBeGreaterThanOrEqual(t1 + 2000);
    expect(a.ejectedUntil).toBeLessThanOrEqual(t1After + 2000);
  });

  it('respects maxEjectionPercent but always allows one ejection', () => {
    const eps = [endpoint('a'), endpoint('b'), endpoint('c'), endpoint('d')];
    const { d } = detector(eps, { consecutive5xx: 1, maxEjectionPercent: 10 });
    for (const e of eps) d.onResult(e, 500);
    expect(eps.filter((e) => e.ejected)).toHaveLength(1);
  });

  it('counts gateway errors separately when configured', () => {
    const a = endpoint('a');
    const { d } = detector([a, endpoint('b')], { consecutive5xx: 0, consecutiveGateway: 2 });
    d.onResult(a, 500);
    d.onResult(a, 500);
    expect(a.ejected).toBe(false);
    d.onResult(a, 503);
    d.onResult(a, 504);
    expect(a.ejected).toBe(true);
  });
});

describe('circuit breaker', () => {
  it('grants up to maxConnections, queues up to http1MaxPendingRequests, overflows the rest', () => {
    const cb = new CircuitBreaker({
      maxConnections: 2,
      http1MaxPendingRequests: 1,
      http2MaxRequests: 1000,
      maxRetries: 1,
      h2: false,
    });
    const granted: string[] = [];
    const waiter = (name: string) => ({ onSlotGranted: () => granted.push(name) });
    expect(cb.acquire(waiter('a'))).toBe('go');
    expect(cb.acquire(waiter('b'))).toBe('go');
    expect(cb.acquire(waiter('c'))).toBe('wait');
    expect(cb.acquire(waiter('d'))).toBe('overflow');
    cb.release();
    expect(granted).toEqual(['c']);
    expect(cb.active).toBe(2);
    expect(cb.overflows).toBe(1);
    expect(cb.tryRetry()).toBe(true);
    expect(cb.tryRetry()).toBe(false);
  });

  it('tryAcquire never queues: what it refuses holds no slot, and a freed slot is free for the next', () => {
    const cb = new CircuitBreaker({
      maxConnections: 1,
      http1MaxPendingRequests: 10,
      http2MaxRequests: 1000,
      maxRetries: 1,
      h2: false,
    });
    expect(cb.tryAcquire()).toBe(true);
    expect(cb.tryAcquire()).toBe(false);
    expect(cb.pending).toBe(0);
    expect(cb.overflows).toBe(1);
    cb.release();
    expect(cb.active).toBe(0);
    expect(cb.tryAcquire()).toBe(true);
  });

  it('for HTTP/2 bounds requests, not connections, and never queues', () => {
    const cb = new CircuitBreaker({
      maxConnections: 1,
      http1MaxPendingRequests: 10,
      http2MaxRequests: 2,
      maxRetries: 3,
      h2: true,
    });
    const w = { onSlotGranted: () => undefined };
    expect(cb.acquire(w)).toBe('go');
    expect(cb.acquire(w)).toBe('go');
    expect(cb.acquire(w)).toBe('overflow');
  });
});
