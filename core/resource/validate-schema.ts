/**
 * The structural pass: a kind's spec against its schema (the one the CRD
 * carries, closed so that unknown fields are errors), compiled once per kind,
 * with ajv's first error turned into a VALIDATION error naming the field.
 */

import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import type { MeshError } from '../errors.js';
import type { JsonSchema } from './json-schema.js';
import type { KindInfo } from './kind.js';
import { index, invalid, isObject, key } from './validate-common.js';

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
    for (const [name, child] of Object.entries(schema.properties)) properties[name] = closeSchema(child);
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

/**
 * Check `spec` against the kind's closed schema, filling in schema defaults
 * in place.
 *
 * @throws MeshError VALIDATION naming the first offending field.
 */
export function checkSchema(info: KindInfo, spec: unknown): void {
  const validate = validatorFor(info);
  if (!validate(spec)) {
    const first = validate.errors?.[0];
    throw first === undefined ? invalid('spec', 'invalid') : describeAjvError(first, spec);
  }
}

// ---------------------------------------------------------------------------
// Error paths.

function describeAjvError(error: ErrorObject, data: unknown): MeshError {
  const base = fieldPath('spec', error.instancePath, data);
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties':
      return invalid(key(base, String(params.additionalProperty)), 'unknown field');
    case 'required':
      return invalid(key(base, String(params.missingProperty)), 'required field missing');
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
