/**
 * VirtualService HTTP and TCP routes compiled for one service: matches into
 * StringMatchers (static conditions — sourceLabels, sourceNamespace,
 * gateways — decided here, since they depend only on this proxy), weights
 * into running sums, durations into milliseconds, retryOn into bits, and
 * each destination into the cluster name per port the caller may address.
 */

import { GrpcCode } from '../../core/grpc/grpc-codes.js';
import type { ProxyIdentity } from '../../core/mesh/snapshot.js';
import {
  arrayAt,
  invalid,
  objectAt,
  optionalBoolean,
  optionalDuration,
  optionalFraction,
  optionalInteger,
  optionalObject,
  optionalString,
  stringList,
  stringMap,
  type Obj,
} from '../../core/resource/config-read.js';
import {
  RetryOn,
  type CompiledHttpRoute,
  type CompiledTcpRoute,
  type FaultPolicy,
  type HeaderOps,
  type HttpMatch,
  type MirrorPolicy,
  type RetryPolicy,
  type RouteDestination,
} from './config-types.js';
import { compileRe2, compileStringMatch, type StringMatcher } from './string-match.js';

/** What route compilation needs to know about the rest of the snapshot. */
export interface RouteContext {
  proxy: ProxyIdentity;
  /** Ports of the service the routes belong to (callers address one of them). */
  servicePorts: number[];
  /** A destination host (FQDN or alias) → its FQDN and ports, or undefined when this proxy has no such service. */
  lookupService(host: string): { host: string; ports: number[] } | undefined;
}

/** Cluster name in Envoy's form: `outbound|9080|v1|reviews.bookinfo.svc.cluster.local`. */
export function clusterName(port: number, subset: string, host: string): string {
  return `outbound|${port}|${subset === '_' ? '' : subset}|${host}`;
}

const RETRY_TOKENS: Record<string, number> = {
  '5xx': RetryOn.HTTP_5XX,
  'gateway-error': RetryOn.GATEWAY_ERROR,
  reset: RetryOn.RESET,
  'reset-before-request': RetryOn.RESET,
  'connect-failure': RetryOn.CONNECT_FAILURE,
  'refused-stream': RetryOn.REFUSED_STREAM,
  'retriable-status-codes': RetryOn.RETRIABLE_STATUS_CODES,
  'retriable-4xx': RetryOn.RETRIABLE_4XX,
  cancelled: RetryOn.GRPC_CANCELLED,
  'deadline-exceeded': RetryOn.GRPC_DEADLINE_EXCEEDED,
  internal: RetryOn.GRPC_INTERNAL,
  'resource-exhausted': RetryOn.GRPC_RESOURCE_EXHAUSTED,
  unavailable: RetryOn.GRPC_UNAVAILABLE,
  // Accepted and ignored, as Envoy has no limiter here to trigger them.
  'envoy-ratelimited': 0,
  'retriable-headers': 0,
  'http3-post-connect-failure': 0,
};

const ISTIO_DEFAULT_RETRY_ON = 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes';

/** Istio's default when a route sets no retries: 2 retries on connect failure, refused stream, gRPC unavailable/cancelled and 503. */
export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 2,
  perTryTimeoutMs: 0,
  on: parseRetryOn(ISTIO_DEFAULT_RETRY_ON, 'retryOn').on,
  statusCodes: [503],
};

const NO_RETRY: RetryPolicy = { attempts: 0, perTryTimeoutMs: 0, on: 0, statusCodes: [] };

function parseRetryOn(text: string, path: string): { on: number; statusCodes: number[] } {
  let on = 0;
  const statusCodes: number[] = [];
  for (const raw of text.split(',')) {
    const token = raw.trim();
    if (token === '') continue;
    if (/^\d{3}$/.test(token)) {
      // Istio accepts status codes in retryOn and turns on retriable-status-codes for them.
      statusCodes.push(Number(token));
      on |= RetryOn.RETRIABLE_STATUS_CODES;
      continue;
    }
    const bit = RETRY_TOKENS[token];
    if (bit === undefined) throw invalid(path, `unknown retry condition "${token}"`);
    on |= bit;
  }
  return { on, statusCodes };
}

function compileRetry(route: Obj, path: string): RetryPolicy {
  const retries = optionalObject(route, 'retries', path);
  if (retries === undefined) return DEFAULT_RETRY;
  const p = `${path}.retries`;
  const attempts = optionalInteger(retries, 'attempts', p) ?? 0;
  if (attempts === 0) return NO_RETRY;
  const retryOn = optionalString(retries, 'retryOn', p) ?? ISTIO_DEFAULT_RETRY_ON;
  const parsed = parseRetryOn(retryOn, `${p}.retryOn`);
  if (parsed.on & RetryOn.RETRIABLE_STATUS_CODES && parsed.statusCodes.length === 0)
    parsed.statusCodes.push(503);
  return {
    attempts,
    perTryTimeoutMs: optionalDuration(retries, 'perTryTimeout', p) ?? 0,
    on: parsed.on,
    statusCodes: parsed.statusCodes,
  };
}

/** gRPC status names Istio accepts in fault.abort.grpcStatus: the standard ones. */
const GRPC_CODES: Readonly<Record<string, number>> = GrpcCode;

function compileFault(route: Obj, path: string): FaultPolicy | undefined {
  const fault = optionalObject(route, 'fault', path);
  if (fault === undefined) return undefined;
  const p = `${path}.fault`;
  const delay = optionalObject(fault, 'delay', p);
  const abort = optionalObject(fault, 'abort', p);
  const result: FaultPolicy = {
    delayMs: 0,
    delayFraction: 0,
    abortStatus: 0,
    abortGrpcStatus: -1,
    abortFraction: 0,
  };
  if (delay !== undefined) {
    const dp = `${p}.delay`;
    const fixed = optionalDuration(delay, 'fixedDelay', dp);
    if (fixed === undefined)
      throw invalid(`${dp}.fixedDelay`, 'is required (exponentialDelay is not supported)');
    result.delayMs = fixed;
    result.delayFraction = optionalFraction(delay, 'percentage', dp, 'percent') ?? 0;
  }
  if (abort !== undefined) {
    const ap = `${p}.abort`;
    const status = optionalInteger(abort, 'httpStatus', ap, 200, 599);
    const grpc = optionalString(abort, 'grpcStatus', ap);
    if (grpc !== undefined) {
      const code = GRPC_CODES[grpc] ?? (/^\d+$/.test(grpc) ? Number(grpc) : undefined);
      if (code === undefined || code > 16) throw invalid(`${ap}.grpcStatus`, `unknown gRPC status "${grpc}"`);
      result.abortGrpcStatus = code;
    }
    if (status === undefined && grpc === undefined) {
      throw invalid(ap, 'set httpStatus or grpcStatus');
    }
    // A gRPC-only abort still needs an HTTP status for non-gRPC callers.
    result.abortStatus = status ?? 503;
    result.abortFraction = optionalFraction(abort, 'percentage', ap) ?? 0;
  }
  return result;
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

function headerOps(value: Obj | undefined, path: string): HeaderOps | undefined {
  if (value === undefined) return undefined;
  const lower = (entries: Record<string, string>): Array<[string, string]> =>
    Object.entries(entries).map(([k, v]) => [k.toLowerCase(), v]);
  const ops: HeaderOps = {
    set: lower(stringMap(value, 'set', path)),
    add: lower(stringMap(value, 'add', path)),
    remove: stringList(value, 'remove', path).map((h) => h.toLowerCase()),
  };
  for (const [name, v] of [...ops.set, ...ops.add]) {
    if (name.startsWith(':') || name === 'host') throw invalid(path, `cannot change header "${name}"`);
    if (!HEADER_NAME.test(name)) throw invalid(path, `"${name}" is not a valid header name`);
    if (!HEADER_VALUE.test(v))
      throw invalid(path, `the value of header "${name}" has characters HTTP does not allow`);
  }
  return ops.set.length + ops.add.length + ops.remove.length === 0 ? undefined : ops;
}

function headersOf(
  owner: Obj,
  path: string,
): { request: HeaderOps | undefined; response: HeaderOps | undefined } {
  const headers = optionalObject(owner, 'headers', path);
  if (headers === undefined) return { request: undefined, response: undefined };
  const p = `${path}.headers`;
  return {
    request: headerOps(optionalObject(headers, 'request', p), `${p}.request`),
    response: headerOps(optionalObject(headers, 'response', p), `${p}.response`),
  };
}

function clusterByPort(
  dest: Obj,
  path: string,
  ctx: RouteContext,
): { host: string; subset: string; map: Map<number, string | undefined> } {
  const hostName = optionalString(dest, 'host', path);
  if (hostName === undefined || hostName === '') throw invalid(`${path}.host`, 'is required');
  const subset = optionalString(dest, 'subset', path) ?? '_';
  const portObj = optionalObject(dest, 'port', path);
  const explicit =
    portObj === undefined ? undefined : optionalInteger(portObj, 'number', `${path}.port`, 1, 65535);
  const target = ctx.lookupService(hostName);
  const map = new Map<number, string | undefined>();
  for (const requestPort of ctx.servicePorts) {
    if (target === undefined) {
      map.set(requestPort, undefined);
      continue;
    }
    let port: number | undefined;
    if (explicit !== undefined) port = target.ports.includes(explicit) ? explicit : undefined;
    else if (target.ports.includes(requestPort)) port = requestPort;
    else if (target.ports.length === 1) port = target.ports[0];
    map.set(requestPort, port === undefined ? undefined : clusterName(port, subset, target.host));
  }
  return { host: target?.host ?? hostName, subset, map };
}

function compileDestinations(
  list: unknown[],
  path: string,
  ctx: RouteContext,
  withHeaders: boolean,
): { destinations: RouteDestination[]; cumulative: number[]; totalWeight: number } {
  const destinations: RouteDestination[] = [];
  const cumulative: number[] = [];
  let total = 0;
  list.forEach((raw, i) => {
    const p = `${path}[${i}]`;
    const entry = objectAt(raw, p);
    const dest = objectAt(entry.destination, `${p}.destination`);
    const { host, subset, map } = clusterByPort(dest, `${p}.destination`, ctx);
    // Istio: a single destination without weight takes all traffic; with several, weights must be given.
    const given = optionalInteger(entry, 'weight', p, 0, 100);
    const weight = list.length === 1 ? 100 : (given ?? 0);
    const headers = withHeaders ? headersOf(entry, p) : { request: undefined, response: undefined };
    destinations.push({
      host,
      subset,
      clusterByPort: map,
      weight,
      requestHeaders: headers.request,
      responseHeaders: headers.response,
    });
    total += weight;
    cumulative.push(total);
  });
  if (destinations.length > 1 && total === 0) throw invalid(path, 'weights are all 0');
  if (destinations.length > 1 && total !== 100) throw invalid(path, `weights sum to ${total}, not 100`);
  return { destinations, cumulative, totalWeight: total };
}

function matcherList(
  parent: Obj,
  name: string,
  path: string,
  ignoreCase = false,
): Array<[string, StringMatcher]> {
  const value = optionalObject(parent, name, path);
  if (value === undefined) return [];
  return Object.entries(value).map(([k, v]) => [
    ignoreCase ? k.toLowerCase() : k,
    compileStringMatch(v, `${path}.${name}[${JSON.stringify(k)}]`, { allowEmpty: true }),
  ]);
}

/** Compiles one HTTPMatchRequest, or undefined when a static condition rules it out for this proxy. */
function compileMatch(raw: unknown, path: string, proxy: ProxyIdentity): HttpMatch | undefined {
  const m = objectAt(raw, path);
  const gateways = stringList(m, 'gateways', path);
  if (gateways.length > 0 && !gateways.includes('mesh')) return undefined;
  const sourceNamespace = optionalString(m, 'sourceNamespace', path);
  if (sourceNamespace !== undefined && sourceNamespace !== proxy.namespace) return undefined;
  const sourceLabels = optionalObject(m, 'sourceLabels', path);
  if (sourceLabels !== undefined) {
    for (const [k, v] of Object.entries(sourceLabels)) if (proxy.labels[k] !== v) return undefined;
  }
  const ignoreUriCase = optionalBoolean(m, 'ignoreUriCase', path) ?? false;
  const opt = (name: string, ignoreCase = false): StringMatcher | undefined =>
    m[name] === undefined || m[name] === null
      ? undefined
      : compileStringMatch(m[name], `${path}.${name}`, { ignoreCase });
  const uriObj = optionalObject(m, 'uri', path);
  const uriPrefix = uriObj === undefined ? undefined : optionalString(uriObj, 'prefix', `${path}.uri`);
  return {
    uri: opt('uri', ignoreUriCase),
    scheme: opt('scheme'),
    method: opt('method'),
    authority: opt('authority'),
    headers: matcherList(m, 'headers', path, true),
    withoutHeaders: matcherList(m, 'withoutHeaders', path, true),
    query: matcherList(m, 'queryParams', path),
    port: optionalInteger(m, 'port', path, 1, 65535),
    uriPrefix,
  };
}

function compileMirrors(route: Obj, path: string, ctx: RouteContext): MirrorPolicy[] {
  const mirrors: MirrorPolicy[] = [];
  const single = optionalObject(route, 'mirror', path);
  if (single !== undefined) {
    const { host, subset, map } = clusterByPort(single, `${path}.mirror`, ctx);
    const fraction =
      optionalFraction(route, 'mirrorPercentage', path, 'mirrorPercent') ??
      (optionalInteger(route, 'mirror_percent', path, 0, 100) ?? 100) / 100;
    mirrors.push({ host, subset, clusterByPort: map, fraction });
  }
  arrayAt(route, 'mirrors', path).forEach((raw, i) => {
    const p = `${path}.mirrors[${i}]`;
    const entry = objectAt(raw, p);
    const { host, subset, map } = clusterByPort(
      objectAt(entry.destination, `${p}.destination`),
      `${p}.destination`,
      ctx,
    );
    mirrors.push({
      host,
      subset,
      clusterByPort: map,
      fraction: optionalFraction(entry, 'percentage', p) ?? 1,
    });
  });
  return mirrors;
}

function compileRewrite(route: Obj, path: string): CompiledHttpRoute['rewrite'] {
  const rewrite = optionalObject(route, 'rewrite', path);
  if (rewrite === undefined) return undefined;
  const p = `${path}.rewrite`;
  const out: NonNullable<CompiledHttpRoute['rewrite']> = {};
  const uri = optionalString(rewrite, 'uri', p);
  const authority = optionalString(rewrite, 'authority', p);
  const regexRewrite = optionalObject(rewrite, 'uriRegexRewrite', p);
  if (uri !== undefined) out.uri = uri;
  if (authority !== undefined) out.authority = authority;
  if (regexRewrite !== undefined) {
    const rp = `${p}.uriRegexRewrite`;
    const match = optionalString(regexRewrite, 'match', rp) ?? '';
    out.regex = new RegExp(compileRe2(match, `${rp}.match`).source.slice(4, -2), 'g');
    out.regexReplacement = (optionalString(regexRewrite, 'rewrite', rp) ?? '').replace(/\\(\d)/g, '$$$1');
  }
  return out;
}

/** Compiles `OutboundService.http`; routes whose every match is ruled out for this proxy are dropped. */
export function compileHttpRoutes(list: unknown[], path: string, ctx: RouteContext): CompiledHttpRoute[] {
  const routes: CompiledHttpRoute[] = [];
  list.forEach((raw, i) => {
    const p = `${path}[${i}]`;
    const route = objectAt(raw, p);
    const rawMatches = arrayAt(route, 'match', p);
    const matches: HttpMatch[] = [];
    rawMatches.forEach((m, j) => {
      const compiled = compileMatch(m, `${p}.match[${j}]`, ctx.proxy);
      if (compiled !== undefined) matches.push(compiled);
    });
    const redirectObj = optionalObject(route, 'redirect', p);
    const directObj = optionalObject(route, 'directResponse', p);
    const routeList = arrayAt(route, 'route', p);
    if (routeList.length === 0 && redirectObj === undefined && directObj === undefined) {
      throw invalid(p, 'needs route, redirect or directResponse');
    }
    const { destinations, cumulative, totalWeight } = compileDestinations(routeList, `${p}.route`, ctx, true);
    const headers = headersOf(route, p);
    const compiled: CompiledHttpRoute = {
      name: optionalString(route, 'name', p) ?? `route-${i}`,
      matches,
      destinations,
      cumulative,
      totalWeight,
      redirect: undefined,
      directResponse: undefined,
      rewrite: compileRewrite(route, p),
      timeoutMs: optionalDuration(route, 'timeout', p) ?? 0,
      retry: compileRetry(route, p),
      fault: compileFault(route, p),
      mirrors: compileMirrors(route, p, ctx),
      requestHeaders: headers.request,
      responseHeaders: headers.response,
    };
    if (redirectObj !== undefined) {
      const rp = `${p}.redirect`;
      const r: NonNullable<CompiledHttpRoute['redirect']> = {
        status: optionalInteger(redirectObj, 'redirectCode', rp, 300, 399) ?? 301,
      };
      const uri = optionalString(redirectObj, 'uri', rp);
      const authority = optionalString(redirectObj, 'authority', rp);
      const scheme = optionalString(redirectObj, 'scheme', rp);
      const port = optionalInteger(redirectObj, 'port', rp, 1, 65535);
      if (uri !== undefined) r.uri = uri;
      if (authority !== undefined) r.authority = authority;
      if (scheme !== undefined) r.scheme = scheme;
      if (port !== undefined) r.port = port;
      compiled.redirect = r;
    }
    if (directObj !== undefined) {
      const dp = `${p}.directResponse`;
      const bodyObj = optionalObject(directObj, 'body', dp);
      const text = bodyObj === undefined ? undefined : optionalString(bodyObj, 'string', `${dp}.body`);
      const bytes = bodyObj === undefined ? undefined : optionalString(bodyObj, 'bytes', `${dp}.body`);
      compiled.directResponse = {
        status: optionalInteger(directObj, 'status', dp, 200, 599) ?? 200,
        body:
          text !== undefined
            ? Buffer.from(text)
            : bytes !== undefined
              ? Buffer.from(bytes, 'base64')
              : Buffer.alloc(0),
      };
    }
    // Every match ruled out for this proxy: the route never applies here.
    if (rawMatches.length > 0 && matches.length === 0) return;
    routes.push(compiled);
  });
  return routes;
}

/** The route a request gets when the service has no VirtualService: the whole service, default retries. */
export function defaultHttpRoute(host: string, ctx: RouteContext): CompiledHttpRoute {
  const { destinations, cumulative, totalWeight } = compileDestinations(
    [{ destination: { host } }],
    'default',
    ctx,
    false,
  );
  return {
    name: 'default',
    matches: [],
    destinations,
    cumulative,
    totalWeight,
    redirect: undefined,
    directResponse: undefined,
    rewrite: undefined,
    timeoutMs: 0,
    retry: DEFAULT_RETRY,
    fault: undefined,
    mirrors: [],
    requestHeaders: undefined,
    responseHeaders: undefined,
  };
}

/** Compiles `OutboundService.tcp`. */
export function compileTcpRoutes(list: unknown[], path: string, ctx: RouteContext): CompiledTcpRoute[] {
  return list.flatMap((raw, i) => {
    const p = `${path}[${i}]`;
    const route = objectAt(raw, p);
    const ports: number[] = [];
    let ruledOut = false;
    const matches = arrayAt(route, 'match', p);
    matches.forEach((m, j) => {
      const mp = `${p}.match[${j}]`;
      const match = objectAt(m, mp);
      const sourceNamespace = optionalString(match, 'sourceNamespace', mp);
      if (sourceNamespace !== undefined && sourceNamespace !== ctx.proxy.namespace) ruledOut = true;
      const port = optionalInteger(match, 'port', mp, 1, 65535);
      if (port !== undefined) ports.push(port);
    });
    if (ruledOut && ports.length === 0) return [];
    const { destinations, cumulative, totalWeight } = compileDestinations(
      arrayAt(route, 'route', p),
      `${p}.route`,
      ctx,
      false,
    );
    if (destinations.length === 0) throw invalid(`${p}.route`, 'needs at least one destination');
    return [{ ports, destinations, cumulative, totalWeight }];
  });
}

/** The TCP route of a service without VirtualService tcp routes. */
export function defaultTcpRoute(host: string, ctx: RouteContext): CompiledTcpRoute {
  const { destinations, cumulative, totalWeight } = compileDestinations(
    [{ destination: { host } }],
    'default',
    ctx,
    false,
  );
  return { ports: [], destinations, cumulative, totalWeight };
}
