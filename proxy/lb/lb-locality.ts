/**
 * Which endpoints a cluster prefers: priority levels, tried in order, each
 * used only while it has an available endpoint. By default the proxy's own
 * zone comes first and other zones (reached through their east-west
 * gateways) only when every local endpoint is unhealthy, ejected or absent.
 * DestinationRule `localityLbSetting` overrides that as in Istio:
 * `failoverPriority` (labels, most significant first), `failover`
 * (region → region) and `distribute` (weighted shares per locality).
 */

import type { LocalityConfig } from '../../core/mesh/snapshot.js';
import type { LocalityPolicy } from '../config/config-types.js';
import type { EndpointState } from '../cluster/endpoint-state.js';

export interface LocalityContext {
  /** The proxy's meshfed zone. */
  zone: string;
  /** Istio locality `region/zone/subzone` of the proxy, '' when unknown. */
  locality: string;
  labels: Record<string, string>;
}

export interface LocalityPlan {
  /** Endpoint groups in priority order. */
  levels: EndpointState[][];
  /** `distribute`: groups sharing traffic by weight (then `levels` is unused). */
  distribute: Array<{ endpoints: EndpointState[]; weight: number }> | undefined;
}

const CLUSTER_LABEL = 'topology.istio.io/cluster';
const REGION_LABEL = 'topology.kubernetes.io/region';
const ZONE_LABEL = 'topology.kubernetes.io/zone';
const SUBZONE_LABEL = 'topology.istio.io/subzone';

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

function labelValue(e: EndpointState, name: string): string | undefined {
  const direct = e.config.labels[name];
  if (direct !== undefined) return direct;
  if (name === CLUSTER_LABEL) return e.config.zone;
  const parts = (e.config.locality ?? '').split('/');
  if (name === REGION_LABEL) return parts[0] || undefined;
  if (name === ZONE_LABEL) return parts[1] || undefined;
  if (name === SUBZONE_LABEL) return parts[2] || undefined;
  return undefined;
}

function proxyLabelValue(ctx: LocalityContext, name: string): string | undefined {
  const direct = ctx.labels[name];
  if (direct !== undefined) return direct;
  if (name === CLUSTER_LABEL) return ctx.zone;
  const parts = ctx.locality.split('/');
  if (name === REGION_LABEL) return parts[0] || undefined;
  if (name === ZONE_LABEL) return parts[1] || undefined;
  if (name === SUBZONE_LABEL) return parts[2] || undefined;
  return undefined;
}

function groupBy(endpoints: EndpointState[], priority: (e: EndpointState) => number): EndpointState[][] {
  const byPriority = new Map<number, EndpointState[]>();
  for (const e of endpoints) {
    const p = priority(e);
    let list = byPriority.get(p);
    if (list === undefined) byPriority.set(p, (list = []));
    list.push(e);
  }
  return [...byPriority.entries()].sort((a, b) => a[0] - b[0]).map(([, list]) => list);
}

/** Locality distance: 0 same subzone, 1 same zone, 2 same region, 3 failover region, 4 elsewhere. */
function localityDistance(e: EndpointState, ctx: LocalityContext, failoverTo: string | undefined): number {
  const mine = ctx.locality.split('/');
  const theirs = (e.config.locality ?? '').split('/');
  if (mine[0] === undefined || mine[0] === '' || theirs[0] !== mine[0]) {
    return failoverTo !== undefined && theirs[0] === failoverTo ? 3 : 4;
  }
  if ((theirs[1] ?? '') !== (mine[1] ?? '')) return 2;
  if ((theirs[2] ?? '') !== (mine[2] ?? '')) return 1;
  return 0;
}

export function planLocality(
  all: EndpointState[],
  ctx: LocalityContext,
  config: LocalityConfig,
  policy: LocalityPolicy | undefined,
): LocalityPlan {
  const endpoints =
    config.pinnedToZone && ctx.zone !== '' ? all.filter((e) => e.config.zone === ctx.zone) : all;
  const zoneRank = (e: EndpointState): number =>
    config.preferLocalZone && e.config.zone !== ctx.zone ? 1 : 0;

  if (policy !== undefined && policy.distribute.length > 0 && ctx.locality !== '') {
    const rule = policy.distribute.find((d) => localityMatches(d.from, ctx.locality));
    if (rule !== undefined) {
      const groups = rule.to.map(([pattern, weight]) => ({
        pattern,
        weight,
        endpoints: [] as EndpointState[],
      }));
      for (const e of endpoints) {
        const group = groups.find((g) => localityMatches(g.pattern, e.config.locality ?? ''));
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
  if (policy !== undefined && policy.failoverPriority.length > 0) {
    const labels = policy.failoverPriority;
    return {
      levels: groupBy(endpoints, (e) => {
        let matched = 0;
        for (const name of labels) {
          const mine = proxyLabelValue(ctx, name);
          if (mine === undefined || labelValue(e, name) !== mine) break;
          matched++;
        }
        return labels.length - matched;
      }),
      distribute: undefined,
    };
  }
  if (policy !== undefined && ctx.locality !== '') {
    const region = ctx.locality.split('/')[0] ?? '';
    const failoverTo = policy.failover.find((f) => f.from === region)?.to;
    return {
      levels: groupBy(endpoints, (e) => zoneRank(e) * 8 + localityDistance(e, ctx, failoverTo)),
      distribute: undefined,
    };
  }
  return { levels: groupBy(endpoints, zoneRank), distribute: undefined };
}
