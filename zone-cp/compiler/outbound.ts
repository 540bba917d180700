/**
 * One OutboundService: the routes of the VirtualService that applies, the
 * clusters of the DestinationRule that applies (subsets by labels, the
 * subset's trafficPolicy merged over the rule's, per field), endpoints
 * and locality. Built once per (service, rules, same-namespace) per change
 * and shared, as JSON text, by every proxy that calls the service.
 */

import type {
  ClusterConfig,
  IstioObject,
  LocalityConfig,
  OutboundService,
} from '../../core/mesh/snapshot.js';
import { ANY_SUBSET } from '../../core/mesh/sni.js';
import { clusterEndpoints } from './endpoints.js';
import { hostAliases } from './host-names.js';
import { labelsKey } from './labels.js';
import type { MeshView, ServiceView } from './mesh-view.js';
import type { DestinationRuleSpec, Policy, VirtualServiceSpec } from './policy-index.js';
import { resolveHttpRoutes, resolveTcpRoutes } from './routes.js';
import { contentHash } from './snapshot-version.js';

export interface OutboundChoice {
  svc: ServiceView;
  vs: Policy<VirtualServiceSpec> | undefined;
  dr: Policy<DestinationRuleSpec> | undefined;
  sameNamespace: boolean;
}

/** The service's OutboundService as JSON text and its hash, cached on the view. */
export function outboundJson(view: MeshView, choice: OutboundChoice): { json: string; hash: string } {
  const key = `out|${choice.svc.host}|${choice.vs?.uid ?? ''}|${choice.dr?.uid ?? ''}|${choice.sameNamespace ? 1 : 0}`;
  const cached = view.cache.get(key) as { json: string; hash: string } | undefined;
  if (cached !== undefined) return cached;
  const json = JSON.stringify(buildOutbound(view, choice));
  const entry = { json, hash: contentHash(json) };
  view.cache.set(key, entry);
  return entry;
}

export function buildOutbound(view: MeshView, choice: OutboundChoice): OutboundService {
  const { svc, vs, dr } = choice;
  const vsSpec = vs?.resource.spec;
  const drSpec = dr?.resource.spec;
  const top = drSpec?.trafficPolicy ?? {};
  // Pinned services get no remote endpoints at all: residency must not depend on the proxy's version.
  const pinned = view.isPinned(svc, dr);
  const clusters: ClusterConfig[] = [
    { subset: ANY_SUBSET, trafficPolicy: top, endpoints: endpointsFor(view, svc, undefined, pinned) },
  ];
  for (const subset of drSpec?.subsets ?? []) {
    clusters.push({
      subset: subset.name,
      trafficPolicy: mergePolicy(top, subset.trafficPolicy),
      endpoints: endpointsFor(view, svc, subset.labels ?? {}, pinned),
    });
  }
  return {
    host: svc.host,
    name: svc.name,
    namespace: svc.namespace,
    aliases: hostAliases(svc.name, svc.namespace, choice.sameNamespace),
    ports: svc.ports,
    http: resolveHttpRoutes(vsSpec?.http, vs?.namespace ?? svc.namespace),
    tcp: resolveTcpRoutes(vsSpec?.tcp, vs?.namespace ?? svc.namespace),
    clusters,
    locality: locality(view, top, pinned),
  };
}

function endpointsFor(
  view: MeshView,
  svc: ServiceView,
  labels: Record<string, string> | undefined,
  pinned: boolean,
) {
  const key = `ep|${svc.host}|${labels === undefined ? '*' : labelsKey(labels)}|${pinned ? 'pinned' : ''}`;
  const cached = view.cache.get(key);
  if (Array.isArray(cached)) return cached as ReturnType<typeof clusterEndpoints>;
  const endpoints = clusterEndpoints(svc, labels, view.zone, view.trust.trustDomain, { remote: !pinned });
  view.cache.set(key, endpoints);
  return endpoints;
}

/** Subset settings win per top-level field (loadBalancer, connectionPool, …), as in Istio. */
export function mergePolicy(top: IstioObject, subset: IstioObject | undefined): IstioObject {
  return subset === undefined ? top : { ...top, ...subset };
}

function locality(view: MeshView, policy: IstioObject, pinned: boolean): LocalityConfig {
  const lb = policy.loadBalancer;
  const setting =
    typeof lb === 'object' && lb !== null && !Array.isArray(lb)
      ? (lb as { localityLbSetting?: IstioObject }).localityLbSetting
      : undefined;
  const enabled = setting?.enabled;
  return {
    preferLocalZone: typeof enabled === 'boolean' ? enabled : view.settings.preferLocalZone,
    pinnedToZone: pinned,
    ...(setting === undefined ? {} : { setting }),
  };
}
