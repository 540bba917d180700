/**
 * Istio's StringMatch (`exact` | `prefix` | `regex`), compiled once per
 * snapshot. Regexes are RE2 as in Envoy: they must match the whole value,
 * `(?P<name>` groups and a leading `(?i)` flag are translated for JS.
 */

import { checkRe2Regex } from '../../core/resource/regex-re2.js';
import { invalid, isObject } from '../../core/resource/config-read.js';

const EXACT = 0;
const PREFIX = 1;
const REGEX = 2;
const PRESENT = 3;

export class StringMatcher {
  readonly kind: number;
  readonly value: string;
  readonly regex: RegExp | undefined;
  readonly ignoreCase: boolean;

  constructor(kind: number, value: string, regex: RegExp | undefined, ignoreCase: boolean) {
    this.kind = kind;
    this.value = ignoreCase ? value.toLowerCase() : value;
    this.regex = regex;
    this.ignoreCase = ignoreCase;
  }

  /** True when `input` (undefined = absent) matches. */
  matches(input: string | undefined): boolean {
    if (input === undefined) return false;
    switch (this.kind) {
      case EXACT:
        return (this.ignoreCase ? input.toLowerCase() : input) === this.value;
      case PREFIX:
        return (this.ignoreCase ? input.toLowerCase() : input).startsWith(this.value);
      case REGEX:
        return this.regex !== undefined && this.regex.test(input);
      default:
        return true;
    }
  }
}

/** Compiles an RE2 pattern to a whole-string JS RegExp; throws VALIDATION naming `path`. */
export function compileRe2(pattern: string, path: string, ignoreCase = false): RegExp {
  checkRe2Regex(path, pattern);
  let flags = ignoreCase ? 'i' : '';
  let body = pattern.replace(/\(\?P</g, '(?<');
  const leading = /^\(\?([imsU]+)\)/.exec(body);
  if (leading?.[1] !== undefined) {
    if (leading[1].includes('i') && !flags.includes('i')) flags += 'i';
    if (leading[1].includes('s')) flags += 's';
    if (leading[1].includes('m')) flags += 'm';
    body = body.slice(leading[0].length);
  }
  return new RegExp(`^(?:${body})$`, flags);
}

/**
 * Compiles a StringMatch object. `allowEmpty`: `{}` means "present" (header
 * and query parameter matches); elsewhere an empty match is an error.
 */
export function compileStringMatch(
  value: unknown,
  path: string,
  options: { allowEmpty?: boolean; ignoreCase?: boolean } = {},
): StringMatcher {
  if (!isObject(value)) throw invalid(path, 'must be an object with exact, prefix or regex');
  const ignoreCase = options.ignoreCase ?? false;
  const set = ['exact', 'prefix', 'regex'].filter((k) => value[k] !== undefined && value[k] !== null);
  if (set.length > 1) throw invalid(path, 'set only one of exact, prefix or regex');
  const [which] = set;
  if (which === undefined) {
    if (options.allowEmpty) return new StringMatcher(PRESENT, '', undefined, false);
    throw invalid(path, 'set one of exact, prefix or regex');
  }
  const text = value[which];
  if (typeof text !== 'string') throw invalid(`${path}.${which}`, 'must be a string');
  if (which === 'exact') return new StringMatcher(EXACT, text, undefined, ignoreCase);
  if (which === 'prefix') return new StringMatcher(PREFIX, text, undefined, ignoreCase);
  return new StringMatcher(REGEX, text, compileRe2(text, `${path}.regex`, ignoreCase), false);
}
