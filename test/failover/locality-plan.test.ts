/**
 * core/mesh/locality-plan.ts, the planning both the proxy and the zone
 * CP's `inspect service` run: meshfed zones wherever Istio takes a region,
 * failoverPriority's `key=value` form, `enabled: false`, pinning, and the
 * lenient reading of a stored localityLbSetting.
 */

import { describe, expect, it } from '@jest/globals';
import {
  placeMatches,
  planLocality,
  type LocalityEndpoint,
  type LocalityRules,
} from '../../core/mesh/locality-plan.js';
import { parseLocalityRules } from '../../core/mesh/locality-rules.js';

interface Ep {
  name: string;
  config: LocalityEndpoint;
}

function ep(name: string, zone: string, locality?: string, labels: Record<string, string> = {}): Ep {
  return { name, config: { zone, ...(locality === undefined ? {} : { locality }), labels } };
}

const rules = (over: Partial<LocalityRules>): LocalityRules => ({
  enabled: true,
  failover: [],
  failoverPriority: [],
  distribute: [],
  ...over,
});
const names = (levels: Ep[][]): string[][] => levels.map((l) => l.map((e) => e.name));
const ctxA = { zone: 'zone-a', locality: '', labels: { app: 'client' } };
const dflt = { preferLocalZone: true, pinnedToZone: false };

const a = ep('a', 'zone-a');
const b = ep('b', 'zone-b');
const c = ep('c', 'zone-c');
const d = ep('d', 'zone-d');

describe('planLocality', () => {
  it('failover from/to naming meshfed zones, in rule order, without any topology labels', () => {
    const plan = planLocality(
      [d, c, b, a],
      ctxA,
      dflt,
      rules({
        failover: [
          { from: 'zone-a', to: 'zone-c' },
          { from: 'zone-a', to: 'zone-b' },
          { from: 'zone-b', to: 'zone-d' },
        ],
      }),
    );
    expect(names(plan.levels)).toEqual([['a'], ['c'], ['b'], ['d']]);
  });

  it('failover by region still works, and a zone target matches endpoints of that zone in any region', () => {
    const ctx = { zone: 'zone-a', locality: 'eu/eu-1', labels: {} };
    const local = ep('local', 'zone-a', 'eu/eu-1');
    const sameRegion = ep('same-region', 'zone-b', 'eu/eu-2');
    const us = ep('us', 'zone-c', 'us/us-1');
    const ap = ep('ap', 'zone-d', 'ap/ap-1');
    const noPref = { preferLocalZone: false, pinnedToZone: false };
    expect(
      names(
        planLocality(
          [ap, us, sameRegion, local],
          ctx,
          noPref,
          rules({ failover: [{ from: 'eu', to: 'ap' }] }),
        ).levels,
      ),
    ).toEqual([['local'], ['same-region'], ['ap'], ['us']]);
    expect(
      names(
        planLocality(
          [ap, us, sameRegion, local],
          ctx,
          noPref,
          rules({ failover: [{ from: 'zone-a', to: 'zone-c' }] }),
        ).levels,
      ),
    ).toEqual([['local'], ['same-region'], ['us'], ['ap']]);
  });

  it('failoverPriority key=value ranks matching endpoints first whatever the proxy carries', () => {
    const n1 = ep('n1', 'zone-b', undefined, { 'topology.istio.io/network': 'network1' });
    const n2 = ep('n2', 'zone-a', undefined, { 'topology.istio.io/network': 'network2' });
    const ctx = { ...ctxA, labels: { 'topology.istio.io/network': 'network2' } };
    const plan = planLocality(
      [n2, n1],
      ctx,
      dflt,
      rules({ failoverPriority: ['topology.istio.io/network=network1'] }),
    );
    expect(names(plan.levels)).toEqual([['n1'], ['n2']]);
    // The plain form compares with the proxy's own value: network2 first.
    expect(
      names(
        planLocality([n1, n2], ctx, dflt, rules({ failoverPriority: ['topology.istio.io/network'] })).levels,
      ),
    ).toEqual([['n2'], ['n1']]);
    // Mixed, and the cluster label stands for the zone: zone-c first, then the caller's own zone.
    expect(
      names(
        planLocality([a, b, c], ctxA, dflt, rules({ failoverPriority: ['topology.istio.io/cluster=zone-c'] }))
          .levels,
      ),
    ).toEqual([['c'], ['a', 'b']]);
  });

  it('distribute with zone names; endpoints no group names get nothing', () => {
    const plan = planLocality(
      [a, b, c],
      ctxA,
      dflt,
      rules({
        distribute: [
          {
            from: 'zone-a',
            to: [
              ['zone-a', 80],
              ['zone-b/*', 20],
            ],
          },
        ],
      }),
    );
    expect(plan.distribute?.map((g) => [g.endpoints.map((e) => e.name), g.weight])).toEqual([
      [['a'], 80],
      [['b'], 20],
    ]);
    expect(placeMatches('zone-b/*', 'zone-b', undefined)).toBe(true);
    expect(placeMatches('eu/*', 'zone-b', 'eu/eu-2')).toBe(true);
    expect(placeMatches('eu/*', 'zone-b', undefined)).toBe(false);
  });

  it('enabled: false is one level; pinning drops other zones even under rules', () => {
    expect(names(planLocality([a, b], ctxA, dflt, rules({ enabled: false })).levels)).toEqual([['a', 'b']]);
    const pinned = { preferLocalZone: true, pinnedToZone: true };
    expect(
      names(
        planLocality([a, b, c], ctxA, pinned, rules({ failover: [{ from: 'zone-a', to: 'zone-b' }] })).levels,
      ),
    ).toEqual([['a']]);
    expect(
      planLocality([b, c], ctxA, pinned, rules({ distribute: [{ from: '*', to: [['zone-b', 100]] }] }))
        .distribute,
    ).toEqual([{ endpoints: [], weight: 100 }]);
  });
});

describe('parseLocalityRules', () => {
  it('reads a setting, and refuses a malformed entry naming its field (the proxy NACKs it)', () => {
    expect(
      parseLocalityRules(
        {
          failoverPriority: ['topology.istio.io/cluster'],
          distribute: [{ from: 'zone-a', to: { 'zone-a': 60, 'zone-b': 40 } }],
        },
        'lb.localityLbSetting',
      ),
    ).toEqual({
      enabled: true,
      failover: [],
      failoverPriority: ['topology.istio.io/cluster'],
      distribute: [
        {
          from: 'zone-a',
          to: [
            ['zone-a', 60],
            ['zone-b', 40],
          ],
        },
      ],
    });
    expect(parseLocalityRules({ enabled: false }, 's').enabled).toBe(false);
    expect(() => parseLocalityRules({ failover: ['junk'] }, 's')).toThrow(/s\.failover\[0\]/);
    expect(() => parseLocalityRules({ distribute: [{ to: { 'zone-a': 60, 'zone-b': 30 } }] }, 's')).toThrow(
      /s\.distribute\[0\]\.to.*sum to 90/,
    );
    expect(() =>
      parseLocalityRules({ failover: [{ from: 'a', to: 'b' }], distribute: [{ to: { a: 100 } }] }, 's'),
    ).toThrow(/not both/);
  });
});
