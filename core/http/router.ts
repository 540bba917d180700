/**
 * A small path router for the control-plane REST APIs. Patterns are
 * `/apis/:group/:version/namespaces/:namespace/:plural`; matching is done on
 * pre-split segments so a request costs one split and a walk over the routes.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCodes, MeshError } from '../errors.js';

export type RouteParams = Record<string, string>;

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: RouteParams;
  query: URLSearchParams;
  /** The pattern that matched, for metrics labels (bounded cardinality). */
  route: string;
}

export type RouteHandler = (ctx: RequestContext) => Promise<void> | void;

/** What a route requires of its caller; the server enforces it before the handler runs. */
export type RouteAccess = 'public' | 'read' | 'write';

interface Route {
  method: string;
  pattern: string;
  segments: string[];
  handler: RouteHandler;
  access: RouteAccess;
}

export interface RouteMatch {
  handler: RouteHandler;
  params: RouteParams;
  pattern: string;
  access: RouteAccess;
}

export class Router {
  private readonly routes: Route[] = [];

  add(method: string, pattern: string, access: RouteAccess, handler: RouteHandler): this {
    this.routes.push({ method, pattern, segments: splitPath(pattern), handler, access });
    return this;
  }

  /**
   * Finds the handler for a method and path. A path that exists under another
   * method answers METHOD_NOT_ALLOWED rather than NOT_FOUND, as HTTP intends.
   */
  match(method: string, pathname: string): RouteMatch {
    const segments = splitPath(pathname);
    let pathKnown = false;
    for (const route of this.routes) {
      const params = matchSegments(route.segments, segments);
      if (params === undefined) continue;
      if (route.method !== method) {
        pathKnown = true;
        continue;
      }
      return { handler: route.handler, params, pattern: route.pattern, access: route.access };
    }
    if (pathKnown) {
      throw new MeshError(ErrorCodes.METHOD_NOT_ALLOWED, `method ${method} is not allowed on ${pathname}`);
    }
    throw new MeshError(ErrorCodes.NOT_FOUND, `no such endpoint: ${pathname}`);
  }
}

function splitPath(path: string): string[] {
  return path.split('/').filter((s) => s.length > 0);
}

function matchSegments(pattern: string[], actual: string[]): RouteParams | undefined {
  if (pattern.length !== actual.length) return undefined;
  const params: RouteParams = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] ?? '';
    const a = actual[i] ?? '';
    if (p.startsWith(':')) {
      let decoded: string;
      try {
        decoded = decodeURIComponent(a);
      } catch {
        return undefined;
      }
      params[p.slice(1)] = decoded;
    } else if (p !== a) {
      return undefined;
    }
  }
  return params;
}
