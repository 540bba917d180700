/**
 * Reconnect delays: exponential with jitter, so a hundred zones cut off by
 * a global restart do not all dial back in the same millisecond.
 */

export interface BackoffOptions {
  /** First delay after a failure. Default 500 ms. */
  initialMs: number;
  /**
   * Ceiling. Default 10 s: a zone finds a restarted global within 5–10 s of
   * its return (the e2e suite measured up to 12 s with a 30 s ceiling after a
   * ~20 s outage), while jitter still spreads the zones' reconnects.
   */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 10_000 };

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
