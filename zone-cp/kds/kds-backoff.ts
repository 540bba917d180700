/**
 * Reconnect delays: exponential with jitter, so a hundred zones cut off by
 * a global restart do not all dial back in the same millisecond.
 */

export interface BackoffOptions {
  /** First delay after a failure. Default 500 ms. */
  initialMs: number;
  /** Ceiling. Default 30 s. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000 };

/**
 * Delay before attempt `failures` (1 = first retry): base·2^(failures-1)
 * capped at max, then "equal jitter" — uniformly in [half, whole] — so the
 * delay never collapses to zero yet spreads the herd.
 */
export function backoffDelay(
  failures: number,
  options: BackoffOptions,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 30);
  const base = Math.min(options.maxMs, options.initialMs * 2 ** exponent);
  return Math.round(base / 2 + random() * (base / 2));
}
