/**
 * Which endpoints a cluster prefers: priority levels, tried in order, each
 * used only while it has an available endpoint. The proxy runs this on
 * every config or health change, and the zone CP runs the very same code
 * to answer `meshfed inspect service`, so what the inspect command shows
 * is what the proxy does.
 *
 * By default the proxy's own zone comes first and other zones (reached
 * through their east-west gateways) only when every local endpoint is
 * unhealthy, ejected or absent. DestinationRule `localityLbSetting`
 * overrides that as in Istio, with one extension: wherever Istio expects a
 * region (`failover.from`/`to`, `distribute` patterns) a meshfed zone name
 * works too, because in meshfed the zone, not the region, is the unit that
 * fails.
 */

import type { LocalityConfig } from './snapshot.js';

/** What the plan reads of an endpoint. */
export interface LocalityEndpoint {
  /** The meshfed zone that runs it. */
  zone: string;
  /** Istio locality `region/zone/subzone`, when known. */
  locality?: string;
  labels: Record<string, string>;
}

/** The caller (the proxy) the plan is made for. */
export interface LocalityContext {
  /** The proxy's meshfed zone. */
  zone: string;
  /** Istio locality `region/zone/subzone` of the proxy, '' when unknown. */
  locality: string;
  labels: Record<string, string>;
}

/** DestinationRule `localityLbSetting`, parsed. */
export interface LocalityRules {
  enabled: boolean;
  failover: Array<{ from: string; to: string }>;
  failoverPriority: string[];
  distribute: Array<{ from: string; to: Array<[string, number]> }>;
}

export interface LocalityPlan<T> {
  /** Endpoint groups in priority order. */
  levels: T[][];
  /** `distribute`: groups sharing traffic by weight (then `levels` is unused). */
  distribute: Array<{ endpoints: T[]; weight: number }> | undefined;
}

export const CLUSTER_LABEL = 'topology.istio.io/cluster';
export const REGION_LABEL = 'topology.kubernetes.io/region';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
export const SUBZONE_LABEL = 'topology.istio.io/subzone';

/** The proxy's Istio locality from its topology labels. */
export function localityOfLabels(labels: Record<string, string>): string {
  const region = labels[REGION_LABEL];
  if (region === undefined) return '';
  const zone = labels[ZONE_LABEL];
  const subzone = labels[SUBZONE_LABEL];
  return [region, zone ?? '', subzone ?? ''].join('/').replace(/\/+$/, '');
}

/** `region1/zone1/*`, `region1/*`, `*` against `region1/zone1/sz`. */
export function localityMatches(pattern: string, locality: string): boolean {
  if (pattern === '*' || pattern === '') return true;
  const want = pattern.split('/');
  const have = locality.split('/');
  for (let i = 0; i < want.length; i++) {
    const w = want[i];
    if (w === '*') return true;
    if (w !== (have[i] ?? '')) return false;
  }
  return true;
}

/**
 * A locality pattern against an endpoint or proxy: its Istio locality, or
 * its meshfed zone (`zone-a`, `zone-a/*`), so rules work in meshes that
 * carry no topology labels at all.
 */
export function placeMatches(pattern: string, zone: string, locality: string | undefined): boolean {
  if (pattern === '*' || pattern === zone || pattern === `${zone}/*`) return true;
  return locality !== undefined && locality !== '' && localityMatches(pattern, locality);
}

function topologyValue(
  name: string,
  labels: Record<string, string>,
  zone: string,
  locality: string | undefined,
): string | undefined {
  const direct = labels[name];
  if (direct !== undefined) return direct;
  if (name === CLUSTER_LABEL) return zone;
  const parts = (locality ?? '').split('/');
  if (name === REGION_LABEL) return parts[0] || undefined;
  if (name === ZONE_LABEL) return parts[1] || undefined;
  if (name === SUBZONE_LABEL) return parts[2] || undefined;
  return undefined;
}

function groupBy<T>(endpoints: readonly T[], priority: (e: T) => number): T[][] {
  const byPriority = new Map<number, T[]>();
  for (const e of endpoints) {
    const p = priority(e);
    let list = byPriority.get(p);
    if (list === undefined) byPriority.set(p, (list = []));
    list.push(e);
  }
  return [...byPriority.entries()].sort((a, b) => a[0] - b[0]).map(([, list]) => list);
}

/**
 * The failover targets for this proxy, most preferred first: the `to` of
 * every rule whose `from` names the proxy's region or its meshfed zone.
 */
function failoverTargets(rules: LocalityRules, ctx: LocalityContext): string[] {
  const region = ctx.locality.split('/')[0] ?? '';
  const targets: string[] = [];
  for (const rule of rules.failover) {
    if (rule.from === ctx.zone || (region !== '' && rule.from === region)) targets.push(rule.to);
  }
  return targets;
}

/**
 * Locality distance: 0 same subzone, 1 same zone, 2 same region, then the
 * failover targets in order, then everything else. When either side has no
 * Istio locality the meshfed zone decides: same zone 0, else a target or
 * elsewhere.
 */
function localityDistance(e: LocalityEndpoint, ctx: LocalityContext, targets: readonly string[]): number {
  const theirs = (e.locality ?? '').split('/');
  const targetIndex = targets.findIndex((t) => t === e.zone || (theirs[0] !== '' && t === theirs[0]));
  const away = 3 + (targetIndex >= 0 ? targetIndex : targets.length);
  const mine = ctx.locality.split('/');
  if (mine[0] === undefined || mine[0] === '' || theirs[0] === '') return e.zone === ctx.zone ? 0 : away;
  if (theirs[0] !== mine[0]) return away;
  if ((theirs[1] ?? '') !== (mine[1] ?? '')) return 2;
  if ((theirs[2] ?? '') !== (mine[2] ?? '')) return 1;
  return 0;
}

/**
 * One `failoverPriority` entry against an endpoint: `label` matches when
 * the endpoint's value equals the proxy's own; `label=value` (Istio 1.20+)
 * when the endpoint's value is `value`, whatever the proxy carries.
 */
function priorityMatches(entry: string, e: LocalityEndpoint, ctx: LocalityContext): boolean {
  const eq = entry.indexOf('=');
  const name = eq < 0 ? entry : entry.slice(0, eq);
  const want = eq < 0 ? topologyValue(name, ctx.labels, ctx.zone, ctx.locality) : entry.slice(eq + 1);
  return want !== undefined && topologyValue(name, e.labels, e.zone, e.locality) === want;
}

/**
 * The plan for `all` (anything carrying a LocalityEndpoint as `config`,
 * so the proxy plans its live endpoint objects and the zone CP plain
 * configs). Pure: the same inputs always give the same plan.
 */
export function planLocality<T extends { readonly config: LocalityEndpoint }>(
  all: readonly T[],
  ctx: LocalityContext,
  config: LocalityConfig,
  rules: LocalityRules | undefined,
): LocalityPlan<T> {
  // Data residency: nothing outside the proxy's zone, whatever the rules say.
  const endpoints =
    config.pinnedToZone && ctx.zone !== '' ? all.filter((e) => e.config.zone === ctx.zone) : all;
  // `enabled: false` turns locality load balancing off: one level, every endpoint.
  if (rules !== undefined && !rules.enabled)
    return { levels: groupBy(endpoints, () => 0), distribute: undefined };
  const zoneRank = (e: T): number => (config.preferLocalZone && e.config.zone !== ctx.zone ? 1 : 0);

  if (rules !== undefined && rules.distribute.length > 0) {
    const rule = rules.distribute.find((d) => placeMatches(d.from, ctx.zone, ctx.locality));
    if (rule !== undefined) {
      const groups = rule.to.map(([pattern, weight]) => ({ pattern, weight, endpoints: [] as T[] }));
      for (const e of endpoints) {
        const group = groups.find((g) => placeMatches(g.pattern, e.config.zone, e.config.locality));
        group?.endpoints.push(e);
      }
      return {
        levels: [],
        distribute: groups
          .filter((g) => g.weight > 0)
          .map(({ endpoints: list, weight }) => ({ endpoints: list, weight })),
      };
    }
  }
  if (rules !== undefined && rules.failoverPriority.length > 0) {
    const entries = rules.failoverPriority;
    return {
      levels: groupBy(endpoints, (e) => {
        let matched = 0;
        for (const entry of entries) {
          if (!priorityMatches(entry, e.config, ctx)) break;
          matched++;
        }
        return entries.length - matched;
      }),
      distribute: undefined,
    };
  }
  if (rules !== undefined && (rules.failover.length > 0 || ctx.locality !== '')) {
    const targets = failoverTargets(rules, ctx);
    return {
      levels: groupBy(endpoints, (e) => zoneRank(e) * 1000 + localityDistance(e.config, ctx, targets)),
      distribute: undefined,
    };
  }
  return { levels: groupBy(endpoints, zoneRank), distribute: undefined };
}
