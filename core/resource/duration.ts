/**
 * Durations as Istio accepts them: protobuf's JSON form (`1s`, `0.5s`,
 * `1.000000001s`) and Go's `time.ParseDuration` form (`100ms`, `1h30m`,
 * `10us`). The proxy parses these when it compiles a snapshot, so the parser
 * walks char codes and allocates nothing but the error on failure.
 */

import { ErrorCodes, MeshError } from '../errors.js';

/** protobuf Duration's range: ±10,000 years. */
const MAX_MS = 315_576_000_000 * 1000;

const C_0 = 48;
const C_9 = 57;
const C_DOT = 46;
const C_PLUS = 43;
const C_MINUS = 45;

function fail(text: string, why: string): never {
  throw new MeshError(
    ErrorCodes.VALIDATION,
    `invalid duration "${text}": ${why} (use e.g. 1s, 0.5s, 100ms, 1h30m)`,
  );
}

/**
 * Milliseconds per unit starting at `i`; returns the unit length in the high
 * part via `unitLength`. Split into two tiny functions rather than returning a
 * tuple, to avoid an allocation per component.
 */
function unitLength(text: string, i: number): number {
  const c = text.charCodeAt(i);
  const next = text.charCodeAt(i + 1);
  switch (c) {
    case 104: // h
      return 1;
    case 109: // m or ms
      return next === 115 ? 2 : 1;
    case 115: // s
      return 1;
    case 110: // ns
    case 117: // us
    case 0xb5: // µs (micro sign)
    case 0x3bc: // μs (Greek mu)
      return next === 115 ? 2 : 0;
    default:
      return 0;
  }
}

function unitMs(text: string, i: number, length: number): number {
  const c = text.charCodeAt(i);
  if (c === 104) return 3_600_000;
  if (c === 109) return length === 2 ? 1 : 60_000;
  if (c === 115) return 1000;
  if (c === 110) return 1e-6;
  return 1e-3;
}

/**
 * Parse a duration to milliseconds (fractional below 1 ms: `10us` → 0.01).
 * A negative duration is refused: no Istio field takes one.
 * @throws MeshError VALIDATION when the text is not a duration.
 */
export function parseDuration(text: string): number {
  const n = text.length;
  if (n === 0) fail(text, 'empty');
  let i = 0;
  const first = text.charCodeAt(0);
  if (first === C_MINUS) fail(text, 'negative');
  if (first === C_PLUS) i = 1;
  // Go accepts a bare "0".
  if (i === n - 1 && text.charCodeAt(i) === C_0) return 0;
  if (i >= n) fail(text, 'no number');
  let total = 0;
  while (i < n) {
    let whole = 0;
    let frac = 0;
    let scale = 1;
    let digits = 0;
    let c = text.charCodeAt(i);
    while (c >= C_0 && c <= C_9) {
      whole = whole * 10 + (c - C_0);
      digits++;
      c = text.charCodeAt(++i);
    }
    if (c === C_DOT) {
      c = text.charCodeAt(++i);
      while (c >= C_0 && c <= C_9) {
        // Digits past nanosecond precision of an hour do not change the result.
        if (scale < 1e15) {
          frac = frac * 10 + (c - C_0);
          scale *= 10;
        }
        digits++;
        c = text.charCodeAt(++i);
      }
    }
    if (digits === 0) fail(text, `expected a number at position ${i}`);
    if (i >= n) fail(text, 'missing unit (h, m, s, ms, us, ns)');
    const len = unitLength(text, i);
    if (len === 0) fail(text, `unknown unit at position ${i}`);
    const unit = unitMs(text, i, len);
    i += len;
    total += whole * unit + (frac / scale) * unit;
    if (!(total <= MAX_MS)) fail(text, 'out of range');
  }
  return total;
}

/**
 * Format milliseconds the way Istio documents durations: `500ms`, `1.5s`,
 * `2m`, `1h30m`, `10us`. `parseDuration(formatDuration(x))` is `x` for any
 * whole number of microseconds.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `cannot format duration ${ms}`);
  }
  if (ms === 0) return '0s';
  if (ms < 1) return `${round(ms * 1000)}us`;
  if (ms < 1000) return `${round(ms)}ms`;
  const hours = Math.floor(ms / 3_600_000);
  let rest = ms - hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = round(rest / 1000);
  let out = hours > 0 ? `${hours}h` : '';
  if (minutes > 0) out += `${minutes}m`;
  if (seconds > 0) out += `${seconds}s`;
  return out;
}

/** Drop binary-fraction noise (0.1 + 0.2) while keeping nanosecond precision. */
function round(value: number): number {
  return Math.round(value * 1e9) / 1e9;
}
