/**
 * Latency histograms as the telemetry path carries them: per-bucket
 * (non-cumulative) counts over fixed bounds, the last slot being +Inf.
 * Proxies, zones and global add them slot by slot, so a quantile over many
 * proxies and a window of reports is one interpolation at the end.
 */

/** Istio's default request-duration buckets (milliseconds); the proxy's histograms use the same bounds. */
export const LATENCY_BUCKETS_MS: readonly number[] = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
];

/** Slots of a latency histogram: one per bound plus +Inf. */
export const LATENCY_SLOTS = LATENCY_BUCKETS_MS.length + 1;

/** A zeroed histogram. */
export function emptyLatency(): number[] {
  return new Array<number>(LATENCY_SLOTS).fill(0);
}

/** Adds `source` into `target` slot by slot (missing slots count as 0). */
export function addLatency(target: number[], source: readonly number[]): void {
  for (let i = 0; i < LATENCY_SLOTS; i++) target[i] = (target[i] ?? 0) + (source[i] ?? 0);
}

/**
 * The q-quantile (0 < q ≤ 1) in milliseconds, interpolated linearly inside
 * the bucket it falls in, as Prometheus' histogram_quantile does. A quantile
 * in the +Inf slot answers the highest finite bound. Undefined when empty.
 */
export function latencyQuantileMs(counts: readonly number[], q: number): number | undefined {
  let total = 0;
  for (let i = 0; i < LATENCY_SLOTS; i++) total += counts[i] ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < LATENCY_SLOTS; i++) {
    const c = counts[i] ?? 0;
    if (c > 0 && seen + c >= rank) {
      const upper = LATENCY_BUCKETS_MS[i];
      if (upper === undefined) return LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.length - 1];
      const lower = i === 0 ? 0 : (LATENCY_BUCKETS_MS[i - 1] ?? 0);
      return lower + (upper - lower) * ((rank - seen) / c);
    }
    seen += c;
  }
  return LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.length - 1];
}
