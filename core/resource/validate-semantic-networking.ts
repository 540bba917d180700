/**
 * Semantic rules of the networking kinds (VirtualService, DestinationRule,
 * ServiceEntry, WorkloadEntry, WorkloadGroup) that Istio's webhook enforces
 * and a structural schema cannot say. They run after the schema passed, so
 * shapes are known; the accessors still guard every access so that a schema
 * change cannot turn into a TypeError.
 */

import {
  mapDeprecatedAllowOrigin,
  mapDeprecatedConsecutiveErrors,
  mapDeprecatedLeastConn,
  mapDeprecatedMinimumRingSize,
  mapDeprecatedPercent,
} from './deprecated-fields.js';
import { isDns1123Label } from './dns-name.js';
import { isEndpointAddress } from './endpoint-address.js';
import { checkRe2Regex } from './regex-re2.js';
import { asArray, asObject, checkExactlyOne, index, invalid, key } from './validate-common.js';
import type { Ctx, Obj } from './validate-common.js';

// ---------------------------------------------------------------------------
// VirtualService.

function checkPercentSum(items: unknown[], path: string): void {
  let anyWeight = false;
  let sum = 0;
  for (const item of items) {
    const weight = asObject(item)?.weight;
    if (typeof weight === 'number') {
      anyWeight = true;
      sum += weight;
    }
  }
  if (anyWeight && sum !== 100) {
    throw invalid(path, `destination weights sum to ${sum}; they must sum to 100`);
  }
  if (!anyWeight && items.length > 1) {
    throw invalid(path, 'weights are required when a route has more than one destination');
  }
}

const MATCH_KINDS = ['exact', 'prefix', 'regex'] as const;

/** StringMatch: exactly one of exact/prefix/regex, or none when presence alone is matched. */
function checkStringMatch(path: string, value: unknown, allowEmpty: boolean): void {
  const m = asObject(value);
  if (m === undefined) return;
  const set = MATCH_KINDS.filter((k) => m[k] !== undefined);
  if (set.length > 1)
    throw invalid(path, `set exactly one of exact, prefix or regex, not ${set.join(' and ')}`);
  if (set.length === 0 && !allowEmpty) throw invalid(path, 'set exactly one of exact, prefix or regex');
  if (typeof m.regex === 'string') checkRe2Regex(key(path, 'regex'), m.regex);
}

function checkDestination(path: string, value: unknown): void {
  const d = asObject(value);
  if (d === undefined) return;
  if (typeof d.host !== 'string' || d.host === '')
    throw invalid(key(path, 'host'), 'must be a non-empty host');
}

function checkRoutes(path: string, routes: unknown[]): void {
  routes.forEach((r, i) => checkDestination(key(index(path, i), 'destination'), asObject(r)?.destination));
  checkPercentSum(routes, path);
}

function checkHttpRoute(ctx: Ctx, path: string, route: Obj): void {
  asArray(route.match).forEach((raw, i) => {
    const m = asObject(raw);
    if (m === undefined) return;
    const mp = index(key(path, 'match'), i);
    for (const f of ['uri', 'scheme', 'method', 'authority']) {
      if (m[f] !== undefined) checkStringMatch(key(mp, f), m[f], false);
    }
    for (const f of ['headers', 'queryParams', 'withoutHeaders']) {
      const map = asObject(m[f]);
      if (map === undefined) continue;
      for (const [name, sm] of Object.entries(map)) checkStringMatch(key(key(mp, f), name), sm, true);
    }
  });
  const routes = asArray(route.route);
  checkRoutes(key(path, 'route'), routes);
  const has = (f: string): boolean => route[f] !== undefined;
  const actions = ['redirect', 'directResponse', 'delegate'].filter(has);
  if (routes.length > 0 && actions.length > 0) {
    throw invalid(path, `route cannot be combined with ${actions.join(' or ')}`);
  }
  if (actions.length > 1) throw invalid(path, `set only one of ${actions.join(' and ')}`);
  if (routes.length === 0 && actions.length === 0) {
    throw invalid(path, 'one of route, redirect, directResponse or delegate is required');
  }
  const rewrite = asObject(route.rewrite);
  if (rewrite !== undefined) {
    if (has('redirect')) throw invalid(key(path, 'rewrite'), 'cannot be combined with redirect');
    if (rewrite.uri !== undefined && rewrite.uriRegexRewrite !== undefined) {
      throw invalid(key(path, 'rewrite'), 'set only one of uri and uriRegexRewrite');
    }
    const rr = asObject(rewrite.uriRegexRewrite);
    if (rr !== undefined && typeof rr.match === 'string') {
      checkRe2Regex(key(key(key(path, 'rewrite'), 'uriRegexRewrite'), 'match'), rr.match);
    }
  }
  const fault = asObject(route.fault);
  if (fault !== undefined) {
    const fp = key(path, 'fault');
    const delay = asObject(fault.delay);
    if (delay !== undefined) {
      const dp = key(fp, 'delay');
      mapDeprecatedPercent(ctx, delay, dp, 'percent', 'percentage');
      if (delay.fixedDelay === undefined && delay.exponentialDelay === undefined) {
        throw invalid(key(dp, 'fixedDelay'), 'required field missing');
      }
    }
    const abort = asObject(fault.abort);
    if (abort !== undefined)
      checkExactlyOne(key(fp, 'abort'), abort, ['httpStatus', 'grpcStatus', 'http2Error']);
    if (delay === undefined && abort === undefined) throw invalid(fp, 'set delay or abort');
  }
  if (has('mirror_percent') && has('mirrorPercent')) {
    throw invalid(key(path, 'mirrorPercent'), 'set only one of mirrorPercent and mirror_percent');
  }
  mapDeprecatedPercent(ctx, route, path, 'mirror_percent', 'mirrorPercentage');
  mapDeprecatedPercent(ctx, route, path, 'mirrorPercent', 'mirrorPercentage');
  if (has('mirror') && has('mirrors')) throw invalid(path, 'set only one of mirror and mirrors');
  if (has('mirrorPercentage') && !has('mirror')) {
    throw invalid(key(path, 'mirrorPercentage'), 'requires mirror');
  }
  checkDestination(key(path, 'mirror'), route.mirror);
  asArray(route.mirrors).forEach((m, i) =>
    checkDestination(key(index(key(path, 'mirrors'), i), 'destination'), asObject(m)?.destination),
  );
  const cors = asObject(route.corsPolicy);
  if (cors !== undefined) {
    const cp = key(path, 'corsPolicy');
    mapDeprecatedAllowOrigin(ctx, cors, cp);
    asArray(cors.allowOrigins).forEach((o, i) =>
      checkStringMatch(index(key(cp, 'allowOrigins'), i), o, false),
    );
  }
}

export function checkVirtualService(ctx: Ctx, spec: Obj): void {
  const http = asArray(spec.http);
  const tcp = asArray(spec.tcp);
  const tls = asArray(spec.tls);
  if (http.length + tcp.length + tls.length === 0) {
    throw invalid('spec', 'at least one http, tcp or tls route is required');
  }
  asArray(spec.hosts).forEach((h, i) => {
    if (h === '') throw invalid(index('spec.hosts', i), 'must not be empty');
  });
  http.forEach((r, i) => checkHttpRoute(ctx, index('spec.http', i), asObject(r) ?? {}));
  tcp.forEach((r, i) => checkRoutes(key(index('spec.tcp', i), 'route'), asArray(asObject(r)?.route)));
  tls.forEach((r, i) => {
    const rp = index('spec.tls', i);
    const route = asObject(r) ?? {};
    asArray(route.match).forEach((m, j) => {
      if (asArray(asObject(m)?.sniHosts).length === 0) {
        throw invalid(key(index(key(rp, 'match'), j), 'sniHosts'), 'must list at least one SNI host');
      }
    });
    checkRoutes(key(rp, 'route'), asArray(route.route));
  });
}

// ---------------------------------------------------------------------------
// DestinationRule.

/**
 * Istio ignores failover rules without outlierDetection (istio#48084).
 * meshfed does not: endpoint health (readiness, and each zone's healthy
 * count reported through KDS) always triggers failover. What is missing
 * without outlierDetection is failing over on errors, so that is the warning.
 */
const FAILOVER_WARNING =
  'without outlierDetection, meshfed fails over only when endpoints turn unhealthy (readiness, or zone health reported through KDS), not when they answer with errors; add outlierDetection to fail over on errors too';
/** `enabled: false` switches locality load balancing off, so the rules beside it never apply. */
const DISABLED_WARNING =
  'enabled is false, so locality load balancing is off and these rules never apply (traffic is spread over every zone)';

/** A locality rule's `from` (and `to`, for failover) must name a locality. */
function requireLocality(path: string, rule: Obj, field: 'from' | 'to'): void {
  const value = rule[field];
  if (typeof value !== 'string' || value === '') throw invalid(key(path, field), 'required field missing');
}

function checkLoadBalancer(ctx: Ctx, path: string, lb: Obj, settings: Obj): void {
  mapDeprecatedLeastConn(ctx, lb, path);
  const ch = asObject(lb.consistentHash);
  if (ch !== undefined) {
    const chp = key(path, 'consistentHash');
    if (lb.simple !== undefined) throw invalid(path, 'set only one of simple and consistentHash');
    checkExactlyOne(chp, ch, ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName']);
    if (ch.ringHash !== undefined && ch.maglev !== undefined)
      throw invalid(chp, 'set only one of ringHash and maglev');
    mapDeprecatedMinimumRingSize(ctx, ch, chp);
  }
  const locality = asObject(lb.localityLbSetting);
  if (locality === undefined) return;
  const lp = key(path, 'localityLbSetting');
  const distribute = asArray(locality.distribute);
  const failover = asArray(locality.failover);
  const priority = asArray(locality.failoverPriority);
  const set = [
    distribute.length > 0 ? 'distribute' : '',
    failover.length > 0 ? 'failover' : '',
    priority.length > 0 ? 'failoverPriority' : '',
  ].filter((s) => s !== '');
  if (set.length > 1)
    throw invalid(
      lp,
      `set at most one of distribute, failover or failoverPriority, not ${set.join(' and ')}`,
    );
  distribute.forEach((d, i) => {
    const dp = index(key(lp, 'distribute'), i);
    const rule = asObject(d) ?? {};
    requireLocality(dp, rule, 'from');
    const to = asObject(rule.to) ?? {};
    const sum = Object.values(to).reduce<number>((acc, w) => acc + (typeof w === 'number' ? w : 0), 0);
    if (sum !== 100) throw invalid(key(dp, 'to'), `weights sum to ${sum}; they must sum to 100`);
  });
  priority.forEach((entry, i) => {
    // `label` or `label=value`: an empty side would match nothing, silently.
    const eq = typeof entry === 'string' ? entry.indexOf('=') : -1;
    if (typeof entry !== 'string' || entry === '' || eq === 0 || eq === entry.length - 1) {
      throw invalid(
        index(key(lp, 'failoverPriority'), i),
        `${JSON.stringify(entry)} is not a label: write label or label=value`,
      );
    }
  });
  failover.forEach((f, i) => {
    const fp = index(key(lp, 'failover'), i);
    const rule = asObject(f) ?? {};
    requireLocality(fp, rule, 'from');
    requireLocality(fp, rule, 'to');
    if (rule.from === rule.to) throw invalid(fp, 'from and to must differ');
  });
  if (set.length > 0 && locality.enabled === false) {
    ctx.warnings.push(`${key(lp, set[0] ?? '')}: ${DISABLED_WARNING}`);
  } else if ((failover.length > 0 || priority.length > 0) && settings.outlierDetection === undefined) {
    ctx.warnings.push(
      `${key(lp, failover.length > 0 ? 'failover' : 'failoverPriority')}: ${FAILOVER_WARNING}`,
    );
  }
}

function checkPolicySettings(ctx: Ctx, path: string, settings: Obj): void {
  const lb = asObject(settings.loadBalancer);
  if (lb !== undefined) checkLoadBalancer(ctx, key(path, 'loadBalancer'), lb, settings);
  const od = asObject(settings.outlierDetection);
  if (od !== undefined) mapDeprecatedConsecutiveErrors(ctx, od, key(path, 'outlierDetection'));
  const tls = asObject(settings.tls);
  if (tls !== undefined && tls.mode === 'MUTUAL' && tls.credentialName === undefined) {
    if (tls.clientCertificate === undefined || tls.privateKey === undefined) {
      throw invalid(key(path, 'tls'), 'MUTUAL needs clientCertificate and privateKey, or credentialName');
    }
  }
}

function checkTrafficPolicy(ctx: Ctx, path: string, value: unknown): void {
  const tp = asObject(value);
  if (tp === undefined) return;
  checkPolicySettings(ctx, path, tp);
  const seen = new Set<number>();
  asArray(tp.portLevelSettings).forEach((p, i) => {
    const pp = index(key(path, 'portLevelSettings'), i);
    const settings = asObject(p) ?? {};
    const port = asObject(settings.port)?.number;
    if (typeof port !== 'number') throw invalid(key(key(pp, 'port'), 'number'), 'required field missing');
    if (seen.has(port)) throw invalid(key(key(pp, 'port'), 'number'), `port ${port} is listed twice`);
    seen.add(port);
    checkPolicySettings(ctx, pp, settings);
  });
}

export function checkDestinationRule(ctx: Ctx, spec: Obj): void {
  if (spec.host === '') throw invalid('spec.host', 'must not be empty');
  checkTrafficPolicy(ctx, 'spec.trafficPolicy', spec.trafficPolicy);
  const names = new Set<string>();
  asArray(spec.subsets).forEach((s, i) => {
    const sp = index('spec.subsets', i);
    const subset = asObject(s) ?? {};
    const name = typeof subset.name === 'string' ? subset.name : '';
    if (!isDns1123Label(name))
      throw invalid(key(sp, 'name'), `"${name}" is not a valid subset name: must be a DNS-1123 label`);
    if (names.has(name)) throw invalid(key(sp, 'name'), `duplicate subset name "${name}"`);
    names.add(name);
    checkTrafficPolicy(ctx, key(sp, 'trafficPolicy'), subset.trafficPolicy);
  });
}

// ---------------------------------------------------------------------------
// ServiceEntry, WorkloadEntry, WorkloadGroup.

export function checkWorkloadEntry(path: string, entry: Obj): void {
  const address = entry.address;
  if ((address === undefined || address === '') && (entry.network === undefined || entry.network === '')) {
    throw invalid(key(path, 'address'), 'required unless network is set');
  }
  // Istio also takes a Unix socket, unix:///abs/path, for an endpoint on the proxy's own host.
  if (typeof address === 'string' && address !== '' && !address.startsWith('unix:///')) {
    if (!isEndpointAddress(address)) {
      throw invalid(key(path, 'address'), `"${address}" is not an IP address, a DNS name or unix:///path`);
    }
  }
}

export function checkServiceEntry(spec: Obj): void {
  if (asArray(spec.hosts).length === 0) throw invalid('spec.hosts', 'must list at least one host');
  const numbers = new Set<number>();
  const names = new Set<string>();
  asArray(spec.ports).forEach((p, i) => {
    const pp = index('spec.ports', i);
    const port = asObject(p) ?? {};
    if (typeof port.number === 'number') {
      if (numbers.has(port.number)) throw invalid(key(pp, 'number'), `port ${port.number} is listed twice`);
      numbers.add(port.number);
    }
    if (typeof port.name === 'string') {
      if (names.has(port.name)) throw invalid(key(pp, 'name'), `port name "${port.name}" is used twice`);
      names.add(port.name);
    }
  });
  const endpoints = asArray(spec.endpoints);
  if (endpoints.length > 0 && spec.workloadSelector !== undefined) {
    throw invalid('spec', 'set only one of endpoints and workloadSelector');
  }
  endpoints.forEach((e, i) => {
    const ep = index('spec.endpoints', i);
    const endpoint = asObject(e) ?? {};
    checkWorkloadEntry(ep, endpoint);
    for (const name of Object.keys(asObject(endpoint.ports) ?? {})) {
      if (!names.has(name))
        throw invalid(key(key(ep, 'ports'), name), `port "${name}" is not a port name of the ServiceEntry`);
    }
  });
}

export function checkWorkloadGroup(spec: Obj): void {
  const probe = asObject(spec.probe);
  if (probe === undefined) return;
  checkExactlyOne('spec.probe', probe, ['httpGet', 'tcpSocket', 'exec']);
}
