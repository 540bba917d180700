/**
 * First-match route selection over a service's compiled VirtualService
 * routes, and the weighted pick of a destination (one random draw).
 */

import type { IncomingHttpHeaders } from 'node:http';
import type {
  CompiledHttpRoute,
  CompiledService,
  CompiledTcpRoute,
  HttpMatch,
  RouteDestination,
} from '../config/config-types.js';
import type { StringMatcher } from '../config/string-match.js';

export interface RouteInput {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Query string without '?', or ''. */
  query: string;
  authority: string;
  scheme: string;
  port: number;
  headers: IncomingHttpHeaders;
}

function headerText(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function queryValue(query: string, name: string): string | undefined {
  if (query === '') return undefined;
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    if (decodeURIComponentSafe(key) === name) return eq < 0 ? '' : decodeURIComponentSafe(part.slice(eq + 1));
  }
  return undefined;
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}

function headersMatch(list: Array<[string, StringMatcher]>, headers: IncomingHttpHeaders): boolean {
  for (const [name, matcher] of list) if (!matcher.matches(headerText(headers, name))) return false;
  return true;
}

function matchOne(m: HttpMatch, r: RouteInput): boolean {
  if (m.port !== undefined && m.port !== r.port) return false;
  if (m.uri !== undefined && !m.uri.matches(r.path)) return false;
  if (m.method !== undefined && !m.method.matches(r.method)) return false;
  if (m.authority !== undefined && !m.authority.matches(r.authority)) return false;
  if (m.scheme !== undefined && !m.scheme.matches(r.scheme)) return false;
  if (m.headers.length > 0 && !headersMatch(m.headers, r.headers)) return false;
  for (const [name, matcher] of m.withoutHeaders)
    if (matcher.matches(headerText(r.headers, name))) return false;
  for (const [name, matcher] of m.query) if (!matcher.matches(queryValue(r.query, name))) return false;
  return true;
}

export interface RouteChoice {
  route: CompiledHttpRoute;
  match: HttpMatch | undefined;
}

/** The first route whose any match applies; the default route when the service has none. */
export function selectRoute(service: CompiledService, r: RouteInput): RouteChoice | undefined {
  const routes = service.http;
  if (routes.length === 0) return { route: service.defaultRoute, match: undefined };
  for (const route of routes) {
    if (route.matches.length === 0) return { route, match: undefined };
    for (const m of route.matches) if (matchOne(m, r)) return { route, match: m };
  }
  return undefined;
}

/** A destination by weight. */
export function pickDestination(route: {
  destinations: RouteDestination[];
  cumulative: number[];
  totalWeight: number;
}): RouteDestination | undefined {
  const list = route.destinations;
  if (list.length <= 1) return list[0];
  const draw = Math.random() * route.totalWeight;
  for (let i = 0; i < list.length; i++) if (draw < (route.cumulative[i] ?? 0)) return list[i];
  return list[list.length - 1];
}

/** The TCP route for a port: the first whose ports include it (or that names none). */
export function selectTcpRoute(service: CompiledService, port: number): CompiledTcpRoute {
  for (const route of service.tcp) if (route.ports.length === 0 || route.ports.includes(port)) return route;
  return service.defaultTcpRoute;
}
