/**
 * AuthorizationPolicy, compiled once per snapshot and evaluated per request
 * with Istio's semantics: any matching DENY policy denies; then, if ALLOW
 * policies exist, one of them must match; otherwise the request is allowed.
 * A policy matches when any of its rules does; a rule when its `from` (any
 * source), `to` (any operation) and every `when` condition match. A policy
 * without rules matches nothing, so an ALLOW policy without rules denies
 * everything (allow-nothing); the rule `{}` matches everything.
 *
 * For TCP traffic, HTTP-only fields (methods, paths, hosts, request headers)
 * make an ALLOW rule never match and are ignored in a DENY rule — Istio's
 * fail-closed choice. AUDIT and CUSTOM policies do not decide anything here.
 */

import { BlockList, isIPv4, isIPv6 } from 'node:net';
import {
  arrayAt,
  invalid,
  objectAt,
  optionalString,
  stringList,
  type Obj,
} from '../../core/resource/config-read.js';

/** What a rule can look at, gathered once per request (only when policies exist). */
export interface AuthzRequest {
  /** Opaque TCP connection: HTTP-only fields cannot be evaluated. */
  tcp: boolean;
  /** Istio principal of the mTLS peer (`cluster.local/ns/x/sa/y`), '' for plaintext. */
  principal: string;
  /** Namespace from the peer's SPIFFE ID, '' for plaintext. */
  namespace: string;
  sourceIp: string;
  /** First X-Forwarded-For address, else sourceIp. */
  remoteIp: string;
  /** Service port (from the SNI) and the app port it maps to. */
  port: number;
  targetPort: number;
  destinationIp: string;
  sni: string;
  method: string;
  /** Path without the query string. */
  path: string;
  host: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface AuthzDecision {
  allowed: boolean;
  /** `namespace.name` of the policy that decided, or '' (no ALLOW policy matched / none exist). */
  policy: string;
}

const EXACT = 0;
const PREFIX = 1;
const SUFFIX = 2;
const PRESENT = 3;
const TEMPLATE = 4;

/** One Istio authz value: `exact`, `prefix*`, `*suffix`, `*` (present, non-empty), or a `{*}`/`{**}` path template. */
class ValueMatcher {
  constructor(
    readonly kind: number,
    readonly value: string,
    readonly regex: RegExp | undefined,
  ) {}

  matches(input: string): boolean {
    switch (this.kind) {
      case EXACT:
        return input === this.value;
      case PREFIX:
        return input.startsWith(this.value);
      case SUFFIX:
        return input.endsWith(this.value);
      case PRESENT:
        return input !== '';
      default:
        return this.regex !== undefined && this.regex.test(input);
    }
  }
}

function compileValue(value: string, lowerCase: boolean, pathTemplates: boolean): ValueMatcher {
  const text = lowerCase ? value.toLowerCase() : value;
  if (text === '*') return new ValueMatcher(PRESENT, '', undefined);
  if (pathTemplates && text.includes('{')) {
    // {*} is one path segment, {**} any number of them (Istio path templates).
    const pattern = text
      .split(/(\{\*\*\}|\{\*\})/)
      .map((part) => (part === '{**}' ? '.*' : part === '{*}' ? '[^/]+' : escapeRegex(part)))
      .join('');
    return new ValueMatcher(TEMPLATE, text, new RegExp(`^${pattern}$`));
  }
  if (text.endsWith('*')) return new ValueMatcher(PREFIX, text.slice(0, -1), undefined);
  if (text.startsWith('*')) return new ValueMatcher(SUFFIX, text.slice(1), undefined);
  return new ValueMatcher(EXACT, text, undefined);
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

class ValueSet {
  constructor(readonly matchers: ValueMatcher[]) {}
  any(input: string): boolean {
    for (const m of this.matchers) if (m.matches(input)) return true;
    return false;
  }
}

function valueSet(list: string[], lowerCase = false, pathTemplates = false): ValueSet | undefined {
  if (list.length === 0) return undefined;
  return new ValueSet(list.map((v) => compileValue(v, lowerCase, pathTemplates)));
}

/** IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is checked as the IPv4 address. */
function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

class IpSet {
  constructor(readonly list: BlockList) {}
  has(ip: string): boolean {
    const address = normalizeIp(ip);
    if (isIPv4(address)) return this.list.check(address, 'ipv4');
    if (isIPv6(address)) return this.list.check(address, 'ipv6');
    return false;
  }
}

function ipSet(list: string[], path: string): IpSet | undefined {
  if (list.length === 0) return undefined;
  const blocks = new BlockList();
  list.forEach((entry, i) => {
    const [address = '', prefixText] = entry.split('/');
    const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined;
    if (family === undefined) throw invalid(`${path}[${i}]`, `"${entry}" is not an IP address or CIDR block`);
    if (prefixText === undefined) {
      blocks.addAddress(address, family);
      return;
    }
    const prefix = Number(prefixText);
    const max = family === 'ipv4' ? 32 : 128;
    if (!/^\d+$/.test(prefixText) || prefix > max) {
      throw invalid(`${path}[${i}]`, `"${entry}" has an invalid prefix length`);
    }
    blocks.addSubnet(address, prefix, family);
  });
  return new IpSet(blocks);
}

interface Source {
  principals?: ValueSet;
  notPrincipals?: ValueSet;
  requestPrincipals?: ValueSet;
  notRequestPrincipals?: ValueSet;
  namespaces?: ValueSet;
  notNamespaces?: ValueSet;
  serviceAccounts?: ValueSet;
  notServiceAccounts?: ValueSet;
  ipBlocks?: IpSet;
  notIpBlocks?: IpSet;
  remoteIpBlocks?: IpSet;
  notRemoteIpBlocks?: IpSet;
}

interface Operation {
  hosts?: ValueSet;
  notHosts?: ValueSet;
  ports?: Set<number>;
  notPorts?: Set<number>;
  methods?: ValueSet;
  notMethods?: ValueSet;
  paths?: ValueSet;
  notPaths?: ValueSet;
  httpOnly: boolean;
}

type ConditionKind =
  'header' | 'ip' | 'remoteIp' | 'namespace' | 'principal' | 'port' | 'destIp' | 'sni' | 'jwt';

interface Condition {
  kind: ConditionKind;
  header: string;
  values?: ValueSet;
  notValues?: ValueSet;
  ipValues?: IpSet;
  ipNotValues?: IpSet;
  ports?: Set<number>;
  notPorts?: Set<number>;
  httpOnly: boolean;
}

interface Rule {
  from: Source[];
  to: Operation[];
  when: Condition[];
  httpOnly: boolean;
}

interface Policy {
  id: string;
  action: 'ALLOW' | 'DENY';
  rules: Rule[];
}

function ports(list: string[], path: string): Set<number> | undefined {
  if (list.length === 0) return undefined;
  return new Set(
    list.map((p, i) => {
      const n = Number(p);
      if (!/^\d+$/.test(p) || n < 1 || n > 65535)
        throw invalid(`${path}[${i}]`, `"${p}" is not a port number`);
      return n;
    }),
  );
}

function compileSource(value: Obj, path: string): Source {
  const s: Source = {};
  const assign = <K extends keyof Source>(name: K, v: Source[K]): void => {
    if (v !== undefined) s[name] = v;
  };
  assign('principals', valueSet(stringList(value, 'principals', path)));
  assign('notPrincipals', valueSet(stringList(value, 'notPrincipals', path)));
  assign('requestPrincipals', valueSet(stringList(value, 'requestPrincipals', path)));
  assign('notRequestPrincipals', valueSet(stringList(value, 'notRequestPrincipals', path)));
  assign('namespaces', valueSet(stringList(value, 'namespaces', path)));
  assign('notNamespaces', valueSet(stringList(value, 'notNamespaces', path)));
  assign('serviceAccounts', valueSet(stringList(value, 'serviceAccounts', path)));
  assign('notServiceAccounts', valueSet(stringList(value, 'notServiceAccounts', path)));
  assign('ipBlocks', ipSet(stringList(value, 'ipBlocks', path), `${path}.ipBlocks`));
  assign('notIpBlocks', ipSet(stringList(value, 'notIpBlocks', path), `${path}.notIpBlocks`));
  assign('remoteIpBlocks', ipSet(stringList(value, 'remoteIpBlocks', path), `${path}.remoteIpBlocks`));
  assign(
    'notRemoteIpBlocks',
    ipSet(stringList(value, 'notRemoteIpBlocks', path), `${path}.notRemoteIpBlocks`),
  );
  return s;
}

function compileOperation(value: Obj, path: string): Operation {
  const op: Operation = { httpOnly: false };
  const hosts = valueSet(stringList(value, 'hosts', path), true);
  const notHosts = valueSet(stringList(value, 'notHosts', path), true);
  const methods = valueSet(stringList(value, 'methods', path));
  const notMethods = valueSet(stringList(value, 'notMethods', path));
  const paths = valueSet(stringList(value, 'paths', path), false, true);
  const notPaths = valueSet(stringList(value, 'notPaths', path), false, true);
  const p = ports(stringList(value, 'ports', path), `${path}.ports`);
  const np = ports(stringList(value, 'notPorts', path), `${path}.notPorts`);
  if (hosts) op.hosts = hosts;
  if (notHosts) op.notHosts = notHosts;
  if (methods) op.methods = methods;
  if (notMethods) op.notMethods = notMethods;
  if (paths) op.paths = paths;
  if (notPaths) op.notPaths = notPaths;
  if (p) op.ports = p;
  if (np) op.notPorts = np;
  op.httpOnly = Boolean(hosts || notHosts || methods || notMethods || paths || notPaths);
  return op;
}

const HEADER_KEY = /^request\.headers\[([^\]]+)\]$/;

function compileCondition(value: Obj, path: string): Condition {
  const keyName = optionalString(value, 'key', path);
  if (keyName === undefined) throw invalid(`${path}.key`, 'is required');
  const values = stringList(value, 'values', path);
  const notValues = stringList(value, 'notValues', path);
  if (values.length === 0 && notValues.length === 0) {
    throw invalid(path, 'set values or notValues');
  }
  const header = HEADER_KEY.exec(keyName);
  if (header?.[1] !== undefined) {
    const c: Condition = { kind: 'header', header: header[1].toLowerCase(), httpOnly: true };
    const v = valueSet(values);
    const nv = valueSet(notValues);
    if (v) c.values = v;
    if (nv) c.notValues = nv;
    return c;
  }
  const simple = (kind: ConditionKind, httpOnly = false): Condition => {
    const c: Condition = { kind, header: '', httpOnly };
    const v = valueSet(values);
    const nv = valueSet(notValues);
    if (v) c.values = v;
    if (nv) c.notValues = nv;
    return c;
  };
  const ipCondition = (kind: ConditionKind): Condition => {
    const c: Condition = { kind, header: '', httpOnly: false };
    const v = ipSet(values, `${path}.values`);
    const nv = ipSet(notValues, `${path}.notValues`);
    if (v) c.ipValues = v;
    if (nv) c.ipNotValues = nv;
    return c;
  };
  switch (keyName) {
    case 'source.ip':
      return ipCondition('ip');
    case 'remote.ip':
      return ipCondition('remoteIp');
    case 'destination.ip':
      return ipCondition('destIp');
    case 'source.namespace':
      return simple('namespace');
    case 'source.principal':
      return simple('principal');
    case 'connection.sni':
      return simple('sni');
    case 'destination.port': {
      const c: Condition = { kind: 'port', header: '', httpOnly: false };
      const p = ports(values, `${path}.values`);
      const np = ports(notValues, `${path}.notValues`);
      if (p) c.ports = p;
      if (np) c.notPorts = np;
      return c;
    }
    default:
      // JWT claims need RequestAuthentication, which meshfed does not run: the
      // request principal is always empty, so these only ever see ''.
      if (keyName.startsWith('request.auth.')) return simple('jwt', true);
      throw invalid(`${path}.key`, `unsupported condition key "${keyName}"`);
  }
}

function compileRule(value: unknown, path: string): Rule {
  const rule = objectAt(value, path);
  const from = arrayAt(rule, 'from', path).map((f, i) => {
    const p = `${path}.from[${i}]`;
    return compileSource(objectAt(objectAt(f, p).source, `${p}.source`), `${p}.source`);
  });
  const to = arrayAt(rule, 'to', path).map((t, i) => {
    const p = `${path}.to[${i}]`;
    return compileOperation(objectAt(objectAt(t, p).operation, `${p}.operation`), `${p}.operation`);
  });
  const when = arrayAt(rule, 'when', path).map((w, i) =>
    compileCondition(objectAt(w, `${path}.when[${i}]`), `${path}.when[${i}]`),
  );
  const httpOnly = to.some((o) => o.httpOnly) || when.some((c) => c.httpOnly);
  return { from, to, when, httpOnly };
}

function sourceMatches(s: Source, r: AuthzRequest): boolean {
  if (s.principals && !s.principals.any(r.principal)) return false;
  if (s.notPrincipals?.any(r.principal)) return false;
  if (s.requestPrincipals && !s.requestPrincipals.any('')) return false;
  if (s.notRequestPrincipals?.any('')) return false;
  if (s.namespaces && !s.namespaces.any(r.namespace)) return false;
  if (s.notNamespaces?.any(r.namespace)) return false;
  if (s.serviceAccounts || s.notServiceAccounts) {
    const sa = serviceAccountOf(r.principal);
    if (s.serviceAccounts && !s.serviceAccounts.any(sa)) return false;
    if (s.notServiceAccounts?.any(sa)) return false;
  }
  if (s.ipBlocks && !s.ipBlocks.has(r.sourceIp)) return false;
  if (s.notIpBlocks?.has(r.sourceIp)) return false;
  if (s.remoteIpBlocks && !s.remoteIpBlocks.has(r.remoteIp)) return false;
  if (s.notRemoteIpBlocks?.has(r.remoteIp)) return false;
  return true;
}

/** `td/ns/<ns>/sa/<sa>` → `<ns>/<sa>` (Istio's serviceAccounts form). */
function serviceAccountOf(principal: string): string {
  const ns = principal.indexOf('/ns/');
  const sa = principal.indexOf('/sa/');
  if (ns < 0 || sa < 0) return '';
  return `${principal.slice(ns + 4, sa)}/${principal.slice(sa + 4)}`;
}

function hostMatches(set: ValueSet, host: string): boolean {
  const lower = host.toLowerCase();
  if (set.any(lower)) return true;
  const colon = lower.lastIndexOf(':');
  return colon > 0 && !lower.endsWith(']') && set.any(lower.slice(0, colon));
}

function portMatches(set: Set<number>, r: AuthzRequest): boolean {
  return set.has(r.targetPort) || set.has(r.port);
}

/** `ignoreHttp`: evaluating a DENY rule for TCP traffic, where HTTP-only fields are left out. */
function operationMatches(op: Operation, r: AuthzRequest, ignoreHttp: boolean): boolean {
  if (op.ports && !portMatches(op.ports, r)) return false;
  if (op.notPorts && portMatches(op.notPorts, r)) return false;
  if (ignoreHttp) return true;
  if (op.hosts && !hostMatches(op.hosts, r.host)) return false;
  if (op.notHosts && hostMatches(op.notHosts, r.host)) return false;
  if (op.methods && !op.methods.any(r.method)) return false;
  if (op.notMethods?.any(r.method)) return false;
  if (op.paths && !op.paths.any(r.path)) return false;
  if (op.notPaths?.any(r.path)) return false;
  return true;
}

function headerValues(r: AuthzRequest, name: string): string[] {
  const v = r.headers[name];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

function conditionMatches(c: Condition, r: AuthzRequest, ignoreHttp: boolean): boolean {
  if (c.httpOnly && ignoreHttp) return true;
  switch (c.kind) {
    case 'ip':
    case 'remoteIp':
    case 'destIp': {
      const ip = c.kind === 'ip' ? r.sourceIp : c.kind === 'remoteIp' ? r.remoteIp : r.destinationIp;
      if (c.ipValues && !c.ipValues.has(ip)) return false;
      return !c.ipNotValues?.has(ip);
    }
    case 'port':
      if (c.ports && !portMatches(c.ports, r)) return false;
      return !(c.notPorts && portMatches(c.notPorts, r));
    case 'header': {
      const values = headerValues(r, c.header);
      if (c.values && !values.some((v) => c.values?.any(v))) return false;
      return !(c.notValues && values.some((v) => c.notValues?.any(v)));
    }
    default: {
      const v =
        c.kind === 'namespace'
          ? r.namespace
          : c.kind === 'principal'
            ? r.principal
            : c.kind === 'sni'
              ? r.sni
              : '';
      if (c.values && !c.values.any(v)) return false;
      return !c.notValues?.any(v);
    }
  }
}

function ruleMatches(rule: Rule, r: AuthzRequest, deny: boolean): boolean {
  const ignoreHttp = r.tcp && deny;
  if (r.tcp && !deny && rule.httpOnly) return false;
  if (rule.from.length > 0 && !rule.from.some((s) => sourceMatches(s, r))) return false;
  if (rule.to.length > 0 && !rule.to.some((o) => operationMatches(o, r, ignoreHttp))) return false;
  for (const c of rule.when) if (!conditionMatches(c, r, ignoreHttp)) return false;
  return true;
}

const ALLOWED: AuthzDecision = { allowed: true, policy: '' };
const DENIED_NO_ALLOW: AuthzDecision = { allowed: false, policy: '' };

export class AuthzEngine {
  readonly #deny: Policy[];
  readonly #allow: Policy[];
  readonly #decisions = new Map<string, AuthzDecision>();

  constructor(deny: Policy[], allow: Policy[]) {
    this.#deny = deny;
    this.#allow = allow;
  }

  /** No DENY or ALLOW policy: every request is allowed without gathering its attributes. */
  get empty(): boolean {
    return this.#deny.length === 0 && this.#allow.length === 0;
  }

  get policyCount(): number {
    return this.#deny.length + this.#allow.length;
  }

  evaluate(r: AuthzRequest): AuthzDecision {
    for (const p of this.#deny) {
      if (p.rules.some((rule) => ruleMatches(rule, r, true))) return this.#decision(false, p.id);
    }
    if (this.#allow.length === 0) return ALLOWED;
    for (const p of this.#allow) {
      if (p.rules.some((rule) => ruleMatches(rule, r, false))) return this.#decision(true, p.id);
    }
    return DENIED_NO_ALLOW;
  }

  /** Decisions are shared objects per policy, so evaluating allocates nothing. */
  #decision(allowed: boolean, policy: string): AuthzDecision {
    const key = `${allowed ? 'a' : 'd'}${policy}`;
    let d = this.#decisions.get(key);
    if (d === undefined) {
      d = { allowed, policy };
      this.#decisions.set(key, d);
    }
    return d;
  }
}

/** Compiles `inbound.authorization` (AuthorizationPolicyConfig[]); throws VALIDATION naming the field. */
export function compileAuthorization(policies: readonly unknown[], path: string): AuthzEngine {
  const deny: Policy[] = [];
  const allow: Policy[] = [];
  policies.forEach((raw, i) => {
    const p = `${path}[${i}]`;
    const policy = objectAt(raw, p);
    const name = optionalString(policy, 'name', p) ?? `policy-${i}`;
    const namespace = optionalString(policy, 'namespace', p) ?? '';
    const action = optionalString(policy, 'action', p) ?? 'ALLOW';
    if (!['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'].includes(action)) {
      throw invalid(`${p}.action`, `unknown action "${action}" (ALLOW, DENY, AUDIT, CUSTOM)`);
    }
    const rules = arrayAt(policy, 'rules', p).map((r, j) => compileRule(r, `${p}.rules[${j}]`));
    if (action === 'ALLOW' || action === 'DENY') {
      (action === 'ALLOW' ? allow : deny).push({ id: `${namespace}.${name}`, action, rules });
    }
  });
  return new AuthzEngine(deny, allow);
}
