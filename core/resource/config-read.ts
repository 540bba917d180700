/**
 * Guarded readers for config JSON (a proxy's snapshot, a stored policy's
 * fields). Every reader names the field path in its error
 * (`outbound.services[2].http[0].retries.attempts`), so a NACK tells the zone
 * CP exactly what the proxy refused.
 */

import { invalid, isObject, type Obj } from './validate-common.js';
import { parseDuration } from './duration.js';

export { invalid, isObject, type Obj };

export function objectAt(value: unknown, path: string): Obj {
  if (!isObject(value)) throw invalid(path, 'must be an object');
  return value;
}

export function optionalObject(parent: Obj, name: string, path: string): Obj | undefined {
  const value = parent[name];
  if (value === undefined || value === null) return undefined;
  return objectAt(value, `${path}.${name}`);
}

export function arrayAt(parent: Obj, name: string, path: string): unknown[] {
  const value = parent[name];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(`${path}.${name}`, 'must be a list');
  return value;
}

export function stringAt(parent: Obj, name: string, path: string): string {
  const value = parent[name];
  if (typeof value !== 'string') throw invalid(`${path}.${name}`, 'must be a string');
  return value;
}

export function optionalString(parent: Obj, name: string, path: string): string | undefined {
  const value = parent[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalid(`${path}.${name}`, 'must be a string');
  return value;
}

export function stringList(parent: Obj, name: string, path: string): string[] {
  const list = arrayAt(parent, name, path);
  for (let i = 0; i < list.length; i++) {
    if (typeof list[i] !== 'string') throw invalid(`${path}.${name}[${i}]`, 'must be a string');
  }
  return list as string[];
}

export function optionalBoolean(parent: Obj, name: string, path: string): boolean | undefined {
  const value = parent[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw invalid(`${path}.${name}`, 'must be true or false');
  return value;
}

/** A whole number in [min, max]; undefined when absent. */
export function optionalInteger(
  parent: Obj,
  name: string,
  path: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  const value = parent[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${path}.${name}`, `must be a whole number from ${min} to ${max}`);
  }
  return value;
}

export function integerAt(parent: Obj, name: string, path: string, min = 0, max = 65535): number {
  const value = optionalInteger(parent, name, path, min, max);
  if (value === undefined) throw invalid(`${path}.${name}`, 'is required');
  return value;
}

/** An Istio duration in milliseconds; undefined when absent. */
export function optionalDuration(parent: Obj, name: string, path: string): number | undefined {
  const value = parent[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalid(`${path}.${name}`, 'must be a duration string like 1s');
  try {
    return parseDuration(value);
  } catch (err) {
    throw invalid(`${path}.${name}`, err instanceof Error ? err.message : String(err));
  }
}

/** Istio `Percent` ({value: 0..100}) as a fraction 0..1; `fallbackInt` reads the deprecated integer form. */
export function optionalFraction(
  parent: Obj,
  name: string,
  path: string,
  fallbackInt?: string,
): number | undefined {
  const value = parent[name];
  if (value !== undefined && value !== null) {
    const percent = objectAt(value, `${path}.${name}`);
    const number = percent.value ?? 0;
    if (typeof number !== 'number' || !(number >= 0 && number <= 100)) {
      throw invalid(`${path}.${name}.value`, 'must be a number from 0 to 100');
    }
    return number / 100;
  }
  if (fallbackInt !== undefined) {
    const legacy = optionalInteger(parent, fallbackInt, path, 0, 100);
    if (legacy !== undefined) return legacy / 100;
  }
  return undefined;
}

export function stringMap(parent: Obj, name: string, path: string): Record<string, string> {
  const value = parent[name];
  if (value === undefined || value === null) return {};
  const map = objectAt(value, `${path}.${name}`);
  for (const [k, v] of Object.entries(map)) {
    if (typeof v !== 'string') throw invalid(`${path}.${name}[${JSON.stringify(k)}]`, 'must be a string');
  }
  return map as Record<string, string>;
}
