/**
 * Kubernetes label selectors: equality-based (`a=b`, `a==b`, `a!=b`) and
 * set-based (`a`, `!a`, `a in (x,y)`, `a notin (x)`), comma-separated and
 * ANDed. Semantics follow apimachinery: `!=` and `notin` also match objects
 * that lack the label.
 */

import { ErrorCodes, MeshError } from '../errors.js';

export type LabelOperator = 'equals' | 'notEquals' | 'exists' | 'doesNotExist' | 'in' | 'notIn';

export interface LabelRequirement {
  key: string;
  operator: LabelOperator;
  /** One value for equals/notEquals, the set for in/notIn, empty otherwise. */
  values: readonly string[];
}

export interface LabelSelector {
  /** The selector text as given (trimmed). */
  readonly source: string;
  readonly requirements: readonly LabelRequirement[];
  /** True when every requirement holds; an empty selector matches everything. */
  matches(labels: Readonly<Record<string, string>> | undefined): boolean;
}

// Kubernetes' qualified name: optional DNS-subdomain prefix and a name of at
// most 63 characters that starts and ends alphanumeric.
const namePart = '[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?';
const keyPattern = new RegExp(`^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?${namePart}$`);
const valuePattern = new RegExp(`^(${namePart})?$`);
const setPattern = /^(\S+)\s+(in|notin)\s*\((.*)\)$/;

function fail(selector: string, why: string): never {
  throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `invalid label selector "${selector}": ${why}`, {
    details: { labelSelector: selector },
  });
}

function checkKey(selector: string, key: string): string {
  if (!keyPattern.test(key)) fail(selector, `"${key}" is not a valid label key`);
  return key;
}

function checkValue(selector: string, value: string): string {
  if (value.length > 63 || !valuePattern.test(value)) fail(selector, `"${value}" is not a valid label value`);
  return value;
}

/** Splits on commas that are not inside a parenthesised value set. */
function splitTerms(selector: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < selector.length; i++) {
    const c = selector[i];
    if (c === '(') depth++;
    else if (c === ')') {
      depth--;
      if (depth < 0) fail(selector, 'unbalanced ")"');
    } else if (c === ',' && depth === 0) {
      terms.push(selector.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) fail(selector, 'unbalanced "("');
  terms.push(selector.slice(start));
  return terms.map((t) => t.trim());
}

function parseTerm(selector: string, term: string): LabelRequirement {
  if (term === '') fail(selector, 'empty requirement');
  const set = setPattern.exec(term);
  if (set) {
    const [, key = '', op, list = ''] = set;
    const values = list.split(',').map((v) => checkValue(selector, v.trim()));
    if (list.trim() === '') fail(selector, `"${term}" has an empty value set`);
    return { key: checkKey(selector, key), operator: op === 'in' ? 'in' : 'notIn', values };
  }
  if (term.startsWith('!')) {
    return { key: checkKey(selector, term.slice(1).trim()), operator: 'doesNotExist', values: [] };
  }
  const neq = term.indexOf('!=');
  if (neq >= 0) {
    return {
      key: checkKey(selector, term.slice(0, neq).trim()),
      operator: 'notEquals',
      values: [checkValue(selector, term.slice(neq + 2).trim())],
    };
  }
  const eq = term.indexOf('=');
  if (eq >= 0) {
    const valueStart = term[eq + 1] === '=' ? eq + 2 : eq + 1;
    return {
      key: checkKey(selector, term.slice(0, eq).trim()),
      operator: 'equals',
      values: [checkValue(selector, term.slice(valueStart).trim())],
    };
  }
  return { key: checkKey(selector, term), operator: 'exists', values: [] };
}

function matchesRequirement(
  req: LabelRequirement,
  labels: Readonly<Record<string, string>> | undefined,
): boolean {
  const has = labels !== undefined && Object.prototype.hasOwnProperty.call(labels, req.key);
  const value = has ? labels[req.key] : undefined;
  switch (req.operator) {
    case 'exists':
      return has;
    case 'doesNotExist':
      return !has;
    case 'equals':
      return has && value === req.values[0];
    case 'notEquals':
      return !has || value !== req.values[0];
    case 'in':
      return has && value !== undefined && req.values.includes(value);
    case 'notIn':
      return !has || value === undefined || !req.values.includes(value);
  }
}

/**
 * Parses a selector. Throws MeshError INVALID_ARGUMENT naming the selector
 * when it is malformed.
 */
export function parseLabelSelector(selector: string): LabelSelector {
  const source = selector.trim();
  const requirements = source === '' ? [] : splitTerms(source).map((term) => parseTerm(source, term));
  return {
    source,
    requirements,
    matches: (labels) => requirements.every((req) => matchesRequirement(req, labels)),
  };
}

/** Parses and matches in one step (for one-off checks; parse once in loops). */
export function matchLabels(selector: string, labels: Readonly<Record<string, string>> | undefined): boolean {
  return parseLabelSelector(selector).matches(labels);
}
