/**
 * VirtualService routes for the snapshot: Istio's own shape, with every
 * destination host (route, mirror, mirrors) resolved to an FQDN relative
 * to the VirtualService's namespace, so the proxy never resolves names.
 */

import type { IstioObject } from '../../core/mesh/snapshot.js';
import { resolveHost } from './host-names.js';

/** A copy of `routes` with destination hosts resolved; delegate routes are dropped (unsupported). */
export function resolveHttpRoutes(
  routes: readonly IstioObject[] | undefined,
  namespace: string,
): IstioObject[] {
  return (routes ?? [])
    .filter((r) => r.delegate === undefined)
    .map((route) => {
      const out: IstioObject = { ...route };
      if (Array.isArray(route.route)) out.route = route.route.map((d) => resolveWeighted(d, namespace));
      if (isObject(route.mirror)) out.mirror = resolveDestination(route.mirror, namespace);
      if (Array.isArray(route.mirrors)) out.mirrors = route.mirrors.map((m) => resolveWeighted(m, namespace));
      return out;
    });
}

/** TCP routes with destination hosts resolved. */
export function resolveTcpRoutes(
  routes: readonly IstioObject[] | undefined,
  namespace: string,
): IstioObject[] {
  return (routes ?? []).map((route) => {
    const out: IstioObject = { ...route };
    if (Array.isArray(route.route)) out.route = route.route.map((d) => resolveWeighted(d, namespace));
    return out;
  });
}

/** Every destination host a route set sends to (including mirrors), resolved. */
export function destinationHosts(routes: readonly IstioObject[]): string[] {
  const hosts: string[] = [];
  const add = (d: unknown): void => {
    if (isObject(d) && typeof d.host === 'string') hosts.push(d.host);
  };
  for (const route of routes) {
    if (Array.isArray(route.route)) for (const r of route.route) if (isObject(r)) add(r.destination);
    add(route.mirror);
    if (Array.isArray(route.mirrors)) for (const m of route.mirrors) if (isObject(m)) add(m.destination);
  }
  return hosts;
}

function resolveWeighted(value: unknown, namespace: string): unknown {
  if (!isObject(value) || !isObject(value.destination)) return value;
  return { ...value, destination: resolveDestination(value.destination, namespace) };
}

function resolveDestination(destination: IstioObject, namespace: string): IstioObject {
  return typeof destination.host === 'string'
    ? { ...destination, host: resolveHost(destination.host, namespace) }
    : destination;
}

function isObject(value: unknown): value is IstioObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
