/**
 * What every validation pass shares: the VALIDATION error with its field, the
 * guarded accessors of JSON-shaped data, and the field paths errors and
 * warnings name (`spec.http[0].route[1].weight`).
 */

import { ErrorCodes, MeshError } from '../errors.js';

/** A JSON object as the validator sees it. */
export type Obj = Record<string, unknown>;

/** State a semantic pass carries: what the user should hear about. */
export interface Ctx {
  warnings: string[];
}

/** A VALIDATION error naming `field`. */
export function invalid(field: string, message: string): MeshError {
  return new MeshError(ErrorCodes.VALIDATION, `${field}: ${message}`, { field });
}

export function isObject(value: unknown): value is Obj {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function asObject(value: unknown): Obj | undefined {
  return isObject(value) ? value : undefined;
}

export function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The path of field `name` under `base`: `base.name`, or `base["odd/name"]` when not an identifier. */
export function key(base: string, name: string): string {
  if (IDENTIFIER.test(name)) return base === '' ? name : `${base}.${name}`;
  return `${base}[${JSON.stringify(name)}]`;
}

/** The path of element `i` of the list at `base`. */
export function index(base: string, i: number): string {
  return `${base}[${i}]`;
}

/** `a, b or c`, as the messages list alternatives. */
export function alternatives(fields: readonly string[]): string {
  const head = fields.slice(0, -1);
  const last = fields[fields.length - 1] ?? '';
  return head.length === 0 ? last : `${head.join(', ')} or ${last}`;
}

/** Throws unless exactly one of `fields` is set on `value` (a oneof in the Istio API). */
export function checkExactlyOne(path: string, value: Obj, fields: readonly string[]): void {
  const set = fields.filter((f) => value[f] !== undefined);
  if (set.length !== 1) throw invalid(path, `set exactly one of ${alternatives(fields)}`);
}
