/**
 * Validation of one resource: the Kubernetes envelope, the spec against the
 * kind's schema (the same schema the CRD carries, closed so that unknown
 * fields are errors), then the semantic rules Istio's own webhook enforces
 * that a structural schema cannot say. Deprecated Istio fields are accepted,
 * reported as warnings and rewritten to their successors.
 *
 * This file is the entry point and the envelope (top level and metadata);
 * the passes over the spec live in validate-schema.ts and validate-semantic*.ts.
 */

import { ErrorCodes, MeshError, isMeshError } from '../errors.js';
import { isDns1123Label, isDns1123Subdomain } from './dns-name.js';
import type { KindInfo } from './kind.js';
import { resolveKind } from './kinds.js';
import type { ObjectMeta, Resource } from './resource.js';
import { invalid, isObject, key } from './validate-common.js';
import type { Obj } from './validate-common.js';
import { checkSchema } from './validate-schema.js';
import { checkSpec } from './validate-semantic.js';

export { isDns1123Label, isDns1123Subdomain } from './dns-name.js';
export { closeSchema } from './validate-schema.js';

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

const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

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
  for (const name of Object.keys(value)) {
    const child = (value as Obj)[name];
    // JSON has no undefined; treat it as an absent field, as JSON.stringify does.
    if (child === undefined) continue;
    // defineProperty keeps a "__proto__" key an ordinary (and unknown) field.
    Object.defineProperty(out, name, {
      value: copyJson(child, key(path, name), depth + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function checkQualifiedKey(field: string, name: string): void {
  const slash = name.indexOf('/');
  const prefix = slash < 0 ? '' : name.slice(0, slash);
  const local = slash < 0 ? name : name.slice(slash + 1);
  if (slash >= 0 && (prefix.length === 0 || !isDns1123Subdomain(prefix))) {
    throw invalid(field, `key prefix "${prefix}" must be a DNS-1123 subdomain`);
  }
  if (local.length === 0 || local.length > 63 || !QUALIFIED_NAME.test(local)) {
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
  for (const [k, v] of Object.entries(value)) {
    const field = key(base, k);
    checkQualifiedKey(field, k);
    if (typeof v !== 'string') throw invalid(field, 'must be a string');
    if (name === 'labels' && v !== '' && (v.length > 63 || !QUALIFIED_NAME.test(v))) {
      throw invalid(
        field,
        'label value must be at most 63 characters of alphanumerics, "-", "_" or ".", starting and ending with an alphanumeric',
      );
    }
    bytes += k.length + v.length;
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
  for (const field of Object.keys(raw)) {
    if (META_FIELDS.has(field)) continue;
    if (META_IGNORED.has(field)) {
      warnings.push(`metadata.${field} is ignored by meshfed`);
      delete raw[field];
      continue;
    }
    throw invalid(key('metadata', field), 'unknown field');
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
  for (const field of ['resourceVersion', 'uid', 'creationTimestamp'] as const) {
    if (raw[field] !== undefined && typeof raw[field] !== 'string')
      throw invalid(`metadata.${field}`, 'must be a string');
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
  for (const field of Object.keys(copy)) {
    if (!TOP_LEVEL.has(field)) throw invalid(key('', field), 'unknown field');
  }
  const warnings: string[] = [];
  const metadata = checkMetadata(copy.metadata, info, options, warnings);
  // Status is written by controllers through their own path, never by apply.
  if (copy.status !== undefined) delete copy.status;
  const spec = copy.spec === undefined ? {} : copy.spec;
  checkSchema(info, spec);
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
