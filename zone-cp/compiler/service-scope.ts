/**
 * Which services one proxy may call, so it receives only those: the
 * services visible to its namespace (exportTo), narrowed by the
 * workload's dependency list when it declares one
 * (`meshfed.io/dependencies: reviews.bookinfo,ratings.bookinfo`, entries
 * are hosts in any form, `ns/*` or `*`), plus whatever the routes of those
 * services send to, so a VirtualService redirect still works.
 */

import type { WorkloadEndpoint } from '../discovery/discovery.js';
import { resolveHost } from './host-names.js';
import { isVisible, type MeshView, type ServiceView } from './mesh-view.js';
import { destinationHosts, resolveHttpRoutes, resolveTcpRoutes } from './routes.js';

export const DEPENDENCIES_KEY = 'meshfed.io/dependencies';

/**
 * The dependency list of a workload, from its annotations (or labels, where
 * `_` may stand for `,` since label values cannot hold commas); undefined
 * when it declares none.
 */
export function dependenciesOf(workload: WorkloadEndpoint): string[] | undefined {
  const raw =
    workload.annotations?.[DEPENDENCIES_KEY] ?? workload.labels[DEPENDENCIES_KEY]?.replace(/_/g, ',');
  if (raw === undefined) return undefined;
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** The services of a proxy in `namespace`, sorted by host. */
export function scopedServices(
  view: MeshView,
  namespace: string,
  dependencies: readonly string[] | undefined,
): readonly ServiceView[] {
  if (dependencies === undefined) return sortedVisible(view, namespace, view.visibleServices(namespace));
  // Workloads of one deployment share their list: compute it once per view.
  const key = `scope|${namespace}|${dependencies.join(',')}`;
  const cached = view.cache.get(key);
  if (Array.isArray(cached)) return cached as ServiceView[];
  const scoped = computeScope(view, namespace, dependencies);
  view.cache.set(key, scoped);
  return scoped;
}

function computeScope(
  view: MeshView,
  namespace: string,
  dependencies: readonly string[],
): readonly ServiceView[] {
  const visibleByHost = (host: string): ServiceView | undefined => {
    const svc = view.services.get(host);
    return svc !== undefined && isVisible(svc.exportTo, svc.namespace, namespace) ? svc : undefined;
  };
  const selected = new Map<string, ServiceView>();
  for (const entry of dependencies) {
    if (entry === '*') return sortedVisible(view, namespace, view.visibleServices(namespace));
    const nsWildcard = /^([^/]+)\/\*$/.exec(entry)?.[1];
    if (nsWildcard !== undefined) {
      for (const svc of view.visibleServices(namespace))
        if (svc.namespace === nsWildcard) selected.set(svc.host, svc);
      continue;
    }
    const svc = visibleByHost(resolveHost(entry, namespace));
    if (svc !== undefined) selected.set(svc.host, svc);
  }
  // Close over route destinations: calling reviews may mean talking to reviews-v2.
  const queue = [...selected.values()];
  for (let svc = queue.pop(); svc !== undefined; svc = queue.pop()) {
    const vs = view.virtualServiceFor(svc, namespace);
    if (vs === undefined) continue;
    const routes = [
      ...resolveHttpRoutes(vs.resource.spec.http, vs.namespace),
      ...resolveTcpRoutes(vs.resource.spec.tcp, vs.namespace),
    ];
    for (const host of destinationHosts(routes)) {
      const target = visibleByHost(host);
      if (target !== undefined && !selected.has(host)) {
        selected.set(host, target);
        queue.push(target);
      }
    }
  }
  return [...selected.values()].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
}

function sortedVisible(
  view: MeshView,
  namespace: string,
  visible: readonly ServiceView[],
): readonly ServiceView[] {
  const key = `visible-sorted|${namespace}`;
  const cached = view.cache.get(key);
  if (Array.isArray(cached)) return cached as ServiceView[];
  const sorted = [...visible].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  view.cache.set(key, sorted);
  return sorted;
}
