/**
 * Validation of one resource: the Kubernetes envelope, the spec against the
 * kind's schema (the same schema the CRD carries, closed so that unknown
 * fields are errors), then the semantic rules Istio's own webhook enforces
 * that a structural schema cannot say. Deprecated Istio fields are accepted,
 * reported as warnings and rewritten to their successors.
 */

import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { ErrorCodes, MeshError, isMeshError } from '../errors.js';
import { parseDuration } from './duration.js';
import type { JsonSchema } from './json-schema.js';
import type { KindInfo } from './kind.js';
import { resolveKind } from './kinds.js';
import type { ObjectMeta, Resource } from './resource.js';

/** Options of {@link validateResource}. */
export interface ValidateOptions {
  /** Namespace given to namespaced resources that name none (default `default`). */
  defaultNamespace?: string;
}

/** A resource that passed validation, its kind, and what the user should hear about. */
export interface ValidationResult {
  resource: Resource;
  kind: KindInfo;
  warnings: string[];
}

/** Deeper than this the input cannot be a resource (decode allows 64). */
const MAX_COPY_DEPTH = 100;
const MAX_ANNOTATIONS_BYTES = 256 * 1024;

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

/** True for a Kubernetes DNS-1123 label (namespaces, Mesh and Zone names). */
export function isDns1123Label(value: string): boolean {
  return value.length <= 63 && DNS1123_LABEL.test(value);
}

/** True for a Kubernetes DNS-1123 subdomain (names of namespaced resources). */
export function isDns1123Subdomain(value: string): boolean {
  return value.length <= 253 && DNS1123_SUBDOMAIN.test(value);
}

const TOP_LEVEL = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);
const META_FIELDS = new Set([
  'name',
  'namespace',
  'labels',
  'annotations',
  'resourceVersion',
  'generation',
  'uid',
  'creationTimestamp',
]);
// Fields `kubectl get -o yaml` prints that meshfed has no use for: accepted so
// that exported objects re-apply, dropped with a warning.
const META_IGNORED = new Set([
  'generateName',
  'ownerReferences',
  'finalizers',
  'managedFields',
  'selfLink',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
]);

function invalid(field: string, message: string): MeshError {
  return new MeshError(ErrorCodes.VALIDATION, `${field}: ${message}`, { field });
}

// ---------------------------------------------------------------------------
// Schema compilation: once per kind, lazily, shared by every apply.

const ajv = new Ajv({ allErrors: false, strict: true, useDefaults: true });
ajv.addKeyword({ keyword: 'x-kubernetes-preserve-unknown-fields', schemaType: 'boolean' });
ajv.addKeyword({
  keyword: 'x-kubernetes-int-or-string',
  schemaType: 'boolean',
  errors: false,
  validate: (enabled: boolean, data: unknown) =>
    !enabled || typeof data === 'string' || (typeof data === 'number' && Number.isInteger(data)),
});
// Durations are checked by the semantic pass, which knows which ones may be 0.
ajv.addFormat('duration', true);

/**
 * A copy of the schema in which every object with `properties` and no
 * `additionalProperties` is closed, as Kubernetes' strict field validation
 * treats it. The CRD keeps the open form, which Kubernetes requires.
 */
export function closeSchema(schema: JsonSchema): JsonSchema {
  const out: JsonSchema = { ...schema };
  if (schema.properties) {
    const properties: Record<string, JsonSchema> = {};
    for (const [key, child] of Object.entries(schema.properties)) properties[key] = closeSchema(child);
    out.properties = properties;
    if (schema.additionalProperties === undefined && !schema['x-kubernetes-preserve-unknown-fields']) {
      out.additionalProperties = false;
    }
  }
  if (typeof schema.additionalProperties === 'object') {
    out.additionalProperties = closeSchema(schema.additionalProperties);
  }
  if (schema.items) out.items = closeSchema(schema.items);
  return out;
}

const compiled = new Map<string, ValidateFunction>();

function validatorFor(info: KindInfo): ValidateFunction {
  let fn = compiled.get(info.kind);
  if (fn === undefined) {
    fn = ajv.compile(closeSchema(info.specSchema));
    compiled.set(info.kind, fn);
  }
  return fn;
}

function describeAjvError(error: ErrorObject, data: unknown): MeshError {
  const base = fieldPath('spec', error.instancePath, data);
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties': {
      const field = fieldPath(base, `/${escapePointer(String(params.additionalProperty))}`, undefined);
      return invalid(field, 'unknown field');
    }
    case 'required': {
      const field = fieldPath(base, `/${escapePointer(String(params.missingProperty))}`, undefined);
      return invalid(field, 'required field missing');
    }
    case 'enum': {
      const allowed = Array.isArray(params.allowedValues) ? params.allowedValues.join(', ') : '';
      return invalid(base, `must be one of ${allowed}`);
    }
    case 'x-kubernetes-int-or-string':
      return invalid(base, 'must be an integer or a string');
    default:
      return invalid(base, error.message ?? `fails ${error.keyword}`);
  }
}

function escapePointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

// ---------------------------------------------------------------------------
// The envelope.

/**
 * A deep copy of JSON-shaped input. Refuses what JSON cannot carry (functions,
 * bigints, non-finite numbers) and cycles, so that everything after it may
 * recurse freely.
 */
function copyJson(value: unknown, path: string, depth: number): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalid(path, 'must be a finite number');
    return value;
  }
  if (typeof value !== 'object') throw invalid(path, `a ${typeof value} is not a JSON value`);
  if (depth > MAX_COPY_DEPTH) throw invalid(path, `nested deeper than ${MAX_COPY_DEPTH} levels`);
  if (Array.isArray(value)) {
    const out: unknown[] = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = copyJson(value[i], `${path}[${i}]`, depth + 1);
    return out;
  }
  const out: Obj = {};
  for (const key of Object.keys(value)) {
    const child = (value as Obj)[key];
    // JSON has no undefined; treat it as an absent field, as JSON.stringify does.
    if (child === undefined) continue;
    // defineProperty keeps a "__proto__" key an ordinary (and unknown) field.
    Object.defineProperty(out, key, {
      value: copyJson(child, fieldPath(path, `/${escapePointer(key)}`, undefined), depth + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function checkQualifiedKey(field: string, key: string): void {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? '' : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (slash >= 0 && (prefix.length === 0 || !isDns1123Subdomain(prefix))) {
    throw invalid(field, `key prefix "${prefix}" must be a DNS-1123 subdomain`);
  }
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    throw invalid(
      field,
      'key must be 1-63 characters of alphanumerics, "-", "_" or ".", starting and ending with an alphanumeric, with an optional DNS subdomain prefix and "/"',
    );
  }
}

function checkStringMap(meta: Obj, name: 'labels' | 'annotations'): void {
  const value = meta[name];
  if (value === undefined) return;
  const base = `metadata.${name}`;
  if (!isObject(value)) throw invalid(base, 'must be a map of strings');
  let bytes = 0;
  for (const [key, v] of Object.entries(value)) {
    const field = fieldPath(base, `/${escapePointer(key)}`, undefined);
    checkQualifiedKey(field, key);
    if (typeof v !== 'string') throw invalid(field, 'must be a string');
    if (name === 'labels' && v !== '' && (v.length > 63 || !QUALIFIED_NAME.test(v))) {
      throw invalid(
        field,
        'label value must be at most 63 characters of alphanumerics, "-", "_" or ".", starting and ending with an alphanumeric',
      );
    }
    bytes += key.length + v.length;
  }
  if (bytes > MAX_ANNOTATIONS_BYTES) throw invalid(base, `must total at most ${MAX_ANNOTATIONS_BYTES} bytes`);
}

function checkMetadata(
  raw: unknown,
  info: KindInfo,
  options: ValidateOptions,
  warnings: string[],
): ObjectMeta {
  if (raw === undefined) throw invalid('metadata', 'required field missing');
  if (!isObject(raw)) throw invalid('metadata', 'must be an object');
  for (const key of Object.keys(raw)) {
    if (META_FIELDS.has(key)) continue;
    if (META_IGNORED.has(key)) {
      warnings.push(`metadata.${key} is ignored by meshfed`);
      delete raw[key];
      continue;
    }
    throw invalid(fieldPath('metadata', `/${escapePointer(key)}`, undefined), 'unknown field');
  }
  const name = raw.name;
  if (name === undefined) throw invalid('metadata.name', 'required field missing');
  if (typeof name !== 'string') throw invalid('metadata.name', 'must be a string');
  if (info.namespaced ? !isDns1123Subdomain(name) : !isDns1123Label(name)) {
    const form = info.namespaced
      ? 'a DNS-1123 subdomain (lower-case alphanumerics, "-" and ".", at most 253 characters)'
      : 'a DNS-1123 label (lower-case alphanumerics and "-", at most 63 characters)';
    throw invalid('metadata.name', `"${name}" is not a valid ${info.kind} name: must be ${form}`);
  }
  const namespace = raw.namespace;
  if (info.namespaced) {
    if (namespace === undefined || namespace === '') {
      raw.namespace = options.defaultNamespace ?? 'default';
    } else if (typeof namespace !== 'string') {
      throw invalid('metadata.namespace', 'must be a string');
    }
    const ns = raw.namespace;
    if (typeof ns !== 'string' || !isDns1123Label(ns)) {
      throw invalid(
        'metadata.namespace',
        `"${String(ns)}" is not a valid namespace: must be a DNS-1123 label`,
      );
    }
  } else if (namespace !== undefined && namespace !== '') {
    throw invalid('metadata.namespace', `${info.kind} is cluster-scoped and takes no namespace`);
  } else {
    delete raw.namespace;
  }
  checkStringMap(raw, 'labels');
  checkStringMap(raw, 'annotations');
  for (const key of ['resourceVersion', 'uid', 'creationTimestamp'] as const) {
    if (raw[key] !== undefined && typeof raw[key] !== 'string')
      throw invalid(`metadata.${key}`, 'must be a string');
  }
  const generation = raw.generation;
  if (generation !== undefined && !(typeof generation === 'number' && Number.isInteger(generation))) {
    throw invalid('metadata.generation', 'must be integer');
  }
  return raw as unknown as ObjectMeta;
}

function validateUnchecked(input: unknown, options: ValidateOptions): ValidationResult {
  if (!isObject(input)) {
    throw new MeshError(
      ErrorCodes.VALIDATION,
      `a resource must be an object with apiVersion, kind, metadata and spec, not ${
        Array.isArray(input) ? 'an array' : input === null ? 'null' : `a ${typeof input}`
      }`,
    );
  }
  const copy = copyJson(input, '', 0) as Obj;
  const { apiVersion, kind } = copy;
  if (typeof apiVersion !== 'string' || apiVersion === '') {
    throw invalid(
      'apiVersion',
      apiVersion === undefined ? 'required field missing' : 'must be a non-empty string',
    );
  }
  if (typeof kind !== 'string' || kind === '') {
    throw invalid('kind', kind === undefined ? 'required field missing' : 'must be a non-empty string');
  }
  const info = resolveKind(apiVersion, kind);
  for (const key of Object.keys(copy)) {
    if (!TOP_LEVEL.has(key))
      throw invalid(fieldPath('', `/${escapePointer(key)}`, undefined), 'unknown field');
  }
  const warnings: string[] = [];
  const metadata = checkMetadata(copy.metadata, info, options, warnings);
  // Status is written by controllers through their own path, never by apply.
  if (copy.status !== undefined) delete copy.status;
  const spec = copy.spec === undefined ? {} : copy.spec;
  const validate = validatorFor(info);
  if (!validate(spec)) {
    const first = validate.errors?.[0];
    throw first === undefined ? invalid('spec', 'invalid') : describeAjvError(first, spec);
  }
  checkSpec(info, spec as Obj, warnings);
  const resource: Resource = { apiVersion, kind, metadata, spec: spec as Obj };
  return { resource, kind: info, warnings };
}

/**
 * Validate one decoded document and return a normalised deep copy of it:
 * namespace defaulted, status dropped, schema defaults applied, deprecated
 * fields rewritten to their successors (each rewrite is a warning).
 *
 * @throws MeshError VALIDATION with `field` (`spec.http[0].route[1].weight`)
 *   for any invalid input; UNKNOWN_KIND when apiVersion/kind is not served.
 *   Never anything but a MeshError; the input is not modified.
 */
export function validateResource(input: unknown, options: ValidateOptions = {}): ValidationResult {
  try {
    return validateUnchecked(input, options);
  } catch (err) {
    if (isMeshError(err)) throw err;
    if (err instanceof RangeError) {
      throw new MeshError(ErrorCodes.VALIDATION, 'resource is nested too deeply', { cause: err });
    }
    throw new MeshError(ErrorCodes.INTERNAL, `validation failed unexpectedly: ${String(err)}`, {
      cause: err,
    });
  }
}

// ---------------------------------------------------------------------------
// Paths and small helpers.

/** A JSON object as the validator sees it. */
type Obj = Record<string, unknown>;

function isObject(value: unknown): value is Obj {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function asObject(value: unknown): Obj | undefined {
  return isObject(value) ? value : undefined;
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

function key(base: string, name: string): string {
  if (IDENTIFIER.test(name)) return base === '' ? name : `${base}.${name}`;
  return `${base}[${JSON.stringify(name)}]`;
}

function index(base: string, i: number): string {
  return `${base}[${i}]`;
}

/**
 * `spec.http[0].route[1].weight` from a JSON pointer (`/http/0/route/1/weight`)
 * relative to `data`. The data tells an array index from a map key named "0".
 */
function fieldPath(base: string, pointer: string, data: unknown): string {
  if (pointer === '') return base;
  let path = base;
  let node = data;
  for (const raw of pointer.slice(1).split('/')) {
    const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      path = index(path, Number(segment));
      node = node[Number(segment)];
    } else {
      path = key(path, segment);
      node = isObject(node) ? node[segment] : undefined;
    }
  }
  return path;
}

// ---------------------------------------------------------------------------
// Semantic rules, per kind. They run after the schema passed, so shapes are
// known; the helpers above still guard every access so that a schema change
// cannot turn into a TypeError.

interface Ctx {
  warnings: string[];
}

// Durations that Istio allows to be zero, meaning "disabled".
const ZERO_DURATION_OK = new Set(['timeout', 'perTryTimeout', 'idleTimeout']);

/** Check every string the schema marks as a duration. */
function checkDurations(data: unknown, schema: JsonSchema, path: string, name: string): void {
  if (typeof data === 'string') {
    if (schema.format !== 'duration') return;
    let ms: number;
    try {
      ms = parseDuration(data);
    } catch (err) {
      throw invalid(path, err instanceof Error ? err.message : 'invalid duration');
    }
    if (ms === 0 && !ZERO_DURATION_OK.has(name))
      throw invalid(path, `duration must be positive, got "${data}"`);
    if (ms > 0 && ms < 0.001) throw invalid(path, `duration must be at least 1us, got "${data}"`);
    return;
  }
  if (Array.isArray(data)) {
    if (schema.items === undefined) return;
    for (let i = 0; i < data.length; i++) checkDurations(data[i], schema.items, index(path, i), name);
    return;
  }
  if (!isObject(data)) return;
  for (const [k, v] of Object.entries(data)) {
    const child =
      schema.properties?.[k] ??
      (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined);
    if (child !== undefined) checkDurations(v, child, key(path, k), k);
  }
}

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

/**
 * RE2 (Envoy's regex engine) has no lookaround and no backreferences; JS
 * would accept them and the proxy would then reject the config. RE2-only
 * syntax that JS lacks (`(?P<name>`, leading `(?i)` flags) is translated
 * before JS compiles the pattern.
 */
function checkRegex(path: string, pattern: string): void {
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      const next = pattern[i + 1] ?? '';
      if (!inClass && ((next >= '1' && next <= '9') || next === 'k')) {
        throw invalid(path, `invalid regex "${pattern}": backreferences are not supported (RE2 syntax)`);
      }
      i++;
    } else if (inClass) {
      if (c === ']') inClass = false;
    } else if (c === '[') {
      inClass = true;
    } else if (c === '(' && pattern[i + 1] === '?') {
      const look = pattern.slice(i + 2, i + 4);
      if (look.startsWith('=') || look.startsWith('!') || look === '<=' || look === '<!') {
        throw invalid(
          path,
          `invalid regex "${pattern}": lookahead and lookbehind are not supported (RE2 syntax)`,
        );
      }
    }
  }
  const js = pattern.replace(/\(\?P</g, '(?<').replace(/^\(\?[imsU]+\)/, '');
  try {
    new RegExp(js);
  } catch (err) {
    throw invalid(path, `invalid regex "${pattern}": ${err instanceof Error ? err.message : String(err)}`);
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
  if (typeof m.regex === 'string') checkRegex(key(path, 'regex'), m.regex);
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

function mapDeprecatedPercent(ctx: Ctx, parent: Obj, path: string, from: string, to: string): void {
  const old = parent[from];
  if (old === undefined) return;
  delete parent[from];
  if (parent[to] !== undefined) {
    ctx.warnings.push(`${key(path, from)} is deprecated and ignored because ${key(path, to)} is set`);
    return;
  }
  parent[to] = { value: old };
  ctx.warnings.push(`${key(path, from)} is deprecated; mapped to ${key(path, to)}.value`);
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
      checkRegex(key(key(key(path, 'rewrite'), 'uriRegexRewrite'), 'match'), rr.match);
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
    if (abort !== undefined) {
      const set = ['httpStatus', 'grpcStatus', 'http2Error'].filter((f) => abort[f] !== undefined);
      if (set.length !== 1)
        throw invalid(key(fp, 'abort'), 'set exactly one of httpStatus, grpcStatus or http2Error');
    }
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
    const old = cors.allowOrigin;
    if (Array.isArray(old)) {
      delete cors.allowOrigin;
      if (cors.allowOrigins === undefined) {
        cors.allowOrigins = old.map((origin) => ({ exact: origin }));
        ctx.warnings.push(
          `${key(cp, 'allowOrigin')} is deprecated; mapped to ${key(cp, 'allowOrigins')} exact matches`,
        );
      } else {
        ctx.warnings.push(`${key(cp, 'allowOrigin')} is deprecated and ignored because allowOrigins is set`);
      }
    }
    asArray(cors.allowOrigins).forEach((o, i) =>
      checkStringMatch(index(key(cp, 'allowOrigins'), i), o, false),
    );
  }
}

function checkVirtualService(ctx: Ctx, spec: Obj): void {
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

const FAILOVER_WARNING =
  'localityLbSetting.failover has nothing to trigger it without outlierDetection; meshfed will still fail over on zone health reported through KDS';

function checkLoadBalancer(ctx: Ctx, path: string, lb: Obj, settings: Obj): void {
  if (lb.simple === 'LEAST_CONN') {
    lb.simple = 'LEAST_REQUEST';
    ctx.warnings.push(`${key(path, 'simple')}: LEAST_CONN is deprecated; mapped to LEAST_REQUEST`);
  }
  const ch = asObject(lb.consistentHash);
  if (ch !== undefined) {
    const chp = key(path, 'consistentHash');
    if (lb.simple !== undefined) throw invalid(path, 'set only one of simple and consistentHash');
    const keys = ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'].filter(
      (f) => ch[f] !== undefined,
    );
    if (keys.length !== 1) {
      throw invalid(
        chp,
        'set exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName',
      );
    }
    if (ch.ringHash !== undefined && ch.maglev !== undefined)
      throw invalid(chp, 'set only one of ringHash and maglev');
    if (ch.minimumRingSize !== undefined) {
      const size = ch.minimumRingSize;
      delete ch.minimumRingSize;
      if (ch.ringHash === undefined && ch.maglev === undefined) {
        ch.ringHash = { minimumRingSize: size };
        ctx.warnings.push(`${key(chp, 'minimumRingSize')} is deprecated; mapped to ringHash.minimumRingSize`);
      } else {
        ctx.warnings.push(
          `${key(chp, 'minimumRingSize')} is deprecated and ignored because ringHash or maglev is set`,
        );
      }
    }
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
    if (typeof rule.from !== 'string' || rule.from === '')
      throw invalid(key(dp, 'from'), 'required field missing');
    const to = asObject(rule.to) ?? {};
    const sum = Object.values(to).reduce<number>((acc, w) => acc + (typeof w === 'number' ? w : 0), 0);
    if (sum !== 100) throw invalid(key(dp, 'to'), `weights sum to ${sum}; they must sum to 100`);
  });
  failover.forEach((f, i) => {
    const fp = index(key(lp, 'failover'), i);
    const rule = asObject(f) ?? {};
    if (typeof rule.from !== 'string' || rule.from === '')
      throw invalid(key(fp, 'from'), 'required field missing');
    if (typeof rule.to !== 'string' || rule.to === '') throw invalid(key(fp, 'to'), 'required field missing');
    if (rule.from === rule.to) throw invalid(fp, 'from and to must differ');
  });
  if (failover.length > 0 && settings.outlierDetection === undefined) {
    ctx.warnings.push(`${key(lp, 'failover')}: ${FAILOVER_WARNING}`);
  }
}

function checkPolicySettings(ctx: Ctx, path: string, settings: Obj): void {
  const lb = asObject(settings.loadBalancer);
  if (lb !== undefined) checkLoadBalancer(ctx, key(path, 'loadBalancer'), lb, settings);
  const od = asObject(settings.outlierDetection);
  if (od !== undefined && od.consecutiveErrors !== undefined) {
    const op = key(path, 'outlierDetection');
    const old = od.consecutiveErrors;
    delete od.consecutiveErrors;
    if (od.consecutive5xxErrors === undefined) {
      od.consecutive5xxErrors = old;
      ctx.warnings.push(`${key(op, 'consecutiveErrors')} is deprecated; mapped to consecutive5xxErrors`);
    } else {
      ctx.warnings.push(
        `${key(op, 'consecutiveErrors')} is deprecated and ignored because consecutive5xxErrors is set`,
      );
    }
  }
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

function checkDestinationRule(ctx: Ctx, spec: Obj): void {
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

function checkWorkloadEntry(path: string, entry: Obj): void {
  const address = entry.address;
  if ((address === undefined || address === '') && (entry.network === undefined || entry.network === '')) {
    throw invalid(key(path, 'address'), 'required unless network is set');
  }
}

function checkServiceEntry(spec: Obj): void {
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

function checkWorkloadGroup(spec: Obj): void {
  const probe = asObject(spec.probe);
  if (probe === undefined) return;
  const set = ['httpGet', 'tcpSocket', 'exec'].filter((f) => probe[f] !== undefined);
  if (set.length !== 1) throw invalid('spec.probe', 'set exactly one of httpGet, tcpSocket or exec');
}

function isPort(text: string): boolean {
  if (!/^[0-9]{1,5}$/.test(text)) return false;
  const n = Number(text);
  return n >= 1 && n <= 65535;
}

function checkPeerAuthentication(spec: Obj): void {
  const ports = asObject(spec.portLevelMtls);
  if (ports === undefined) return;
  const labels = asObject(asObject(spec.selector)?.matchLabels);
  if (Object.keys(ports).length > 0 && (labels === undefined || Object.keys(labels).length === 0)) {
    throw invalid('spec.portLevelMtls', 'requires a selector with matchLabels');
  }
  for (const port of Object.keys(ports)) {
    if (!isPort(port))
      throw invalid(key('spec.portLevelMtls', port), 'key must be a port number in 1..65535');
  }
}

function checkAuthorizationPolicy(spec: Obj): void {
  const targets = ['selector', 'targetRef', 'targetRefs'].filter((f) => spec[f] !== undefined);
  if (targets.length > 1) throw invalid('spec', `set only one of ${targets.join(' and ')}`);
  const action = spec.action ?? 'ALLOW';
  const provider = asObject(spec.provider);
  if (action === 'CUSTOM') {
    if (typeof provider?.name !== 'string' || provider.name === '') {
      throw invalid('spec.provider.name', 'action CUSTOM requires a provider');
    }
  } else if (provider !== undefined) {
    throw invalid('spec.provider', `is only allowed with action CUSTOM, not ${String(action)}`);
  }
  asArray(spec.rules).forEach((r, i) => {
    const rp = index('spec.rules', i);
    const rule = asObject(r) ?? {};
    asArray(rule.from).forEach((f, j) => {
      const source = asObject(asObject(f)?.source);
      if (source !== undefined && Object.keys(source).length === 0) {
        throw invalid(key(index(key(rp, 'from'), j), 'source'), 'must not be empty');
      }
    });
    asArray(rule.to).forEach((t, j) => {
      const tp = key(index(key(rp, 'to'), j), 'operation');
      const operation = asObject(asObject(t)?.operation);
      if (operation === undefined) return;
      if (Object.keys(operation).length === 0) throw invalid(tp, 'must not be empty');
      for (const field of ['ports', 'notPorts']) {
        asArray(operation[field]).forEach((port, k) => {
          if (typeof port !== 'string' || !isPort(port)) {
            throw invalid(index(key(tp, field), k), 'must be a port number in 1..65535');
          }
        });
      }
    });
    asArray(rule.when).forEach((w, j) => {
      const cond = asObject(w) ?? {};
      if (asArray(cond.values).length === 0 && asArray(cond.notValues).length === 0) {
        throw invalid(index(key(rp, 'when'), j), 'set values or notValues');
      }
    });
  });
}

function checkSpec(info: KindInfo, spec: Obj, warnings: string[]): void {
  checkDurations(spec, info.specSchema, 'spec', 'spec');
  const ctx: Ctx = { warnings };
  switch (info.kind) {
    case 'VirtualService':
      return checkVirtualService(ctx, spec);
    case 'DestinationRule':
      return checkDestinationRule(ctx, spec);
    case 'ServiceEntry':
      return checkServiceEntry(spec);
    case 'WorkloadEntry':
      return checkWorkloadEntry('spec', spec);
    case 'WorkloadGroup':
      return checkWorkloadGroup(spec);
    case 'PeerAuthentication':
      return checkPeerAuthentication(spec);
    case 'AuthorizationPolicy':
      return checkAuthorizationPolicy(spec);
    default:
      return;
  }
}
