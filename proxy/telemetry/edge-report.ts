/**
 * The proxy's telemetry Report for the dashboard: every few seconds, the
 * requests this proxy made as a client (reporter=source series of the
 * Istio metrics) since the previous report, per edge — calling workload →
 * destination service and the zone that answered — by response-code class,
 * with a latency histogram. Read from the series the data path already
 * bumps, on a timer: the hot path does nothing more for it.
 */

import type { Logger } from '../../core/log.js';
import { LATENCY_BUCKETS_MS, LATENCY_SLOTS, emptyLatency } from '../../core/telemetry/telemetry-histogram.js';
import {
  MAX_EDGES_PER_MESSAGE,
  TELEMETRY_FORMAT_VERSION,
  codeClassOf,
  edgeKeyOf,
  emptyCodes,
  encodeTelemetry,
  mergeEdge,
  type EdgeSample,
} from '../../core/telemetry/telemetry-report.js';
import { DURATION_BUCKETS_MS, type HttpSeries, type IstioMetrics } from './istio-metrics.js';

/** Default report period; `MESHFED_TELEMETRY_INTERVAL_MS` overrides it. */
export const DEFAULT_REPORT_INTERVAL_MS = 5000;

export interface EdgeReporterOptions {
  metrics: IstioMetrics;
  /** Sends one encoded report; false when it could not (the counts wait for the next one). */
  send: (json: Buffer) => boolean;
  intervalMs?: number;
  logger?: Logger;
}

interface Seen {
  requests: number;
  counts: Float64Array;
  sum: number;
}

/** The report period from the options, else the environment, else 5 s (at least 100 ms). */
export function reportIntervalMs(intervalMs?: number): number {
  const fromEnv = Number(process.env.MESHFED_TELEMETRY_INTERVAL_MS);
  const chosen =
    intervalMs ?? (Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : DEFAULT_REPORT_INTERVAL_MS);
  return Math.max(100, Math.floor(chosen));
}

export class EdgeReporter {
  readonly intervalMs: number;
  readonly #options: EdgeReporterOptions;
  /** What each series held at the previous collect. Series live as long as the proxy, so this map is bounded by them. */
  readonly #seen = new Map<HttpSeries, Seen>();
  /** Collected and not sent yet (the stream was down). */
  #pending = new Map<string, EdgeSample>();
  #pendingSince = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: EdgeReporterOptions) {
    if (LATENCY_BUCKETS_MS.length !== DURATION_BUCKETS_MS.length) {
      // The report reuses the proxy's histogram slots as they are.
      throw new Error('the proxy duration buckets and the telemetry latency buckets differ');
    }
    this.#options = options;
    this.intervalMs = reportIntervalMs(options.intervalMs);
  }

  /** Reports every `intervalMs` until close(). Idempotent. */
  start(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setInterval(() => this.flush(), this.intervalMs);
    this.#timer.unref();
  }

  /** Stops reporting. Idempotent. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Adds what changed since the previous collect to the pending edges; returns how many edges are pending. */
  collect(): number {
    for (const series of this.#options.metrics.httpSeries()) {
      const labels = series.labels;
      if (labels.reporter !== 'source' || labels.response_code === 'overflow') continue;
      const seen = this.#seen.get(series);
      const requests = series.requests - (seen?.requests ?? 0);
      if (requests <= 0) continue;
      const latency = emptyLatency();
      const counts = series.duration.counts;
      for (let i = 0; i < LATENCY_SLOTS; i++) latency[i] = (counts[i] ?? 0) - (seen?.counts[i] ?? 0);
      const codes = emptyCodes();
      codes[codeClassOf(Number(labels.response_code))] = requests;
      const sample: EdgeSample = {
        source: {
          workload: labels.source_workload ?? 'unknown',
          namespace: labels.source_workload_namespace ?? 'unknown',
          service: labels.source_canonical_service ?? 'unknown',
          zone: labels.source_cluster ?? 'unknown',
        },
        destination: {
          service: labels.destination_service_name ?? 'unknown',
          namespace: labels.destination_service_namespace ?? 'unknown',
          zone: labels.destination_cluster ?? 'unknown',
        },
        codes,
        latency,
        latencySumMs: series.duration.sum - (seen?.sum ?? 0),
      };
      if (this.#pending.size < MAX_EDGES_PER_MESSAGE || this.#pending.has(edgeKeyOf(sample))) {
        mergeEdge(this.#pending, sample);
      } else {
        // The report is full: leave this series' baseline alone so its counts go in the next one.
        continue;
      }
      if (seen === undefined) {
        this.#seen.set(series, {
          requests: series.requests,
          counts: counts.slice(),
          sum: series.duration.sum,
        });
      } else {
        seen.requests = series.requests;
        seen.counts.set(counts);
        seen.sum = series.duration.sum;
      }
    }
    return this.#pending.size;
  }

  /** Collects and sends one report when there was traffic; true when something was sent. */
  flush(): boolean {
    if (this.#closed) return false;
    let json: Buffer;
    try {
      if (this.collect() === 0) {
        this.#pendingSince = Date.now();
        return false;
      }
      const now = Date.now();
      json = encodeTelemetry({
        version: TELEMETRY_FORMAT_VERSION,
        intervalMs: Math.max(0, now - this.#pendingSince),
        edges: [...this.#pending.values()],
      });
    } catch (err) {
      this.#options.logger?.warn('building the telemetry report failed', { err });
      return false;
    }
    if (!this.#options.send(json)) return false;
    this.#pending = new Map();
    this.#pendingSince = Date.now();
    return true;
  }
}
