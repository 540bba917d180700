/**
 * Global's telemetry: every zone's summaries kept over a sliding window
 * (default 30 s), from which the dashboard reads the golden signals per
 * edge — request rate, success rate, p99 latency — aggregated over every
 * proxy of every zone. Summaries are deltas, so the window is a list of
 * them per zone and old ones simply fall out; totals since global started
 * are kept beside, per edge.
 */

import { Counter, Gauge, type Registry } from '../../core/metrics.js';
import { addLatency, emptyLatency, latencyQuantileMs } from '../../core/telemetry/telemetry-histogram.js';
import {
  CODE_CLASSES,
  emptyCodes,
  failuresOf,
  totalOf,
  type CodeCounts,
  type VmStatus,
  type ZoneTelemetrySink,
  type ZoneTelemetrySummary,
} from '../../core/telemetry/telemetry-report.js';

export const DEFAULT_WINDOW_MS = 30_000;
/** Distinct dashboard edges kept in the totals; beyond, new ones are not totalled (the window still shows them). */
const MAX_TOTAL_EDGES = 20_000;

/** One edge of the service graph: a service in a zone calling a service. */
export interface EdgeSignals {
  /** `<zone>/<namespace>/<service>-><namespace>/<service>`. */
  id: string;
  source: { zone: string; namespace: string; service: string; workloads: string[] };
  /**
   * `zone` is where most of the answered requests went; requests the source
   * proxy answered itself (fault injection, no endpoint) have no zone and
   * count towards the edge as a whole.
   */
  destination: { namespace: string; service: string; zone: string; zones: Record<string, number> };
  /** Requests in the window, by response-code class. */
  codes: CodeCounts;
  requests: number;
  /** Requests per second over the window. */
  rps: number;
  /** Non-5xx answered requests / requests; null without requests. */
  successRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Since global started. */
  totalRequests: number;
  totalFailures: number;
}

export interface ZoneTelemetryView {
  zone: string;
  /** ISO time of the last summary. */
  lastReport: string;
  proxies: number;
  vms: VmStatus[];
}

interface Kept {
  receivedAt: number;
  intervalMs: number;
  summary: ZoneTelemetrySummary;
}

interface Acc {
  source: EdgeSignals['source'];
  destination: { namespace: string; service: string };
  zones: Map<string, number>;
  workloads: Set<string>;
  codes: CodeCounts;
  latency: number[];
}

export interface GlobalTelemetryOptions {
  /** Default 30 s, or MESHFED_DASHBOARD_WINDOW_MS. */
  windowMs?: number;
  registry?: Registry;
  now?: () => number;
}

export class GlobalTelemetry implements ZoneTelemetrySink {
  readonly windowMs: number;
  readonly #zones = new Map<string, Kept[]>();
  readonly #latest = new Map<string, ZoneTelemetryView>();
  readonly #totals = new Map<string, { requests: number; failures: number }>();
  readonly #now: () => number;
  readonly #summaries: Counter | undefined;

  constructor(options: GlobalTelemetryOptions = {}) {
    const fromEnv = Number(process.env.MESHFED_DASHBOARD_WINDOW_MS);
    this.windowMs = Math.max(
      1000,
      options.windowMs ?? (Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : DEFAULT_WINDOW_MS),
    );
    this.#now = options.now ?? Date.now;
    if (options.registry !== undefined) {
      this.#summaries = new Counter({
        name: 'meshfed_global_telemetry_summaries_total',
        help: 'Zone telemetry summaries received over KDS, by zone.',
        labelNames: ['zone'],
        registers: [options.registry],
      });
      const edges = (): number => this.#totals.size;
      new Gauge({
        name: 'meshfed_global_telemetry_edges',
        help: 'Service-graph edges global has seen traffic on.',
        registers: [options.registry],
        collect() {
          this.set(edges());
        },
      });
    }
  }

  report(zone: string, summary: ZoneTelemetrySummary): void {
    const now = this.#now();
    this.#summaries?.inc({ zone });
    let kept = this.#zones.get(zone);
    if (kept === undefined) {
      kept = [];
      this.#zones.set(zone, kept);
    }
    kept.push({ receivedAt: now, intervalMs: summary.intervalMs, summary });
    this.#prune(zone, now);
    this.#latest.set(zone, {
      zone,
      lastReport: new Date(now).toISOString(),
      proxies: summary.proxies,
      vms: summary.vms,
    });
    for (const e of summary.edges) {
      const id = edgeId(zone, e.source.namespace, e.source.service, e.destination);
      let total = this.#totals.get(id);
      if (total === undefined) {
        if (this.#totals.size >= MAX_TOTAL_EDGES) continue;
        total = { requests: 0, failures: 0 };
        this.#totals.set(id, total);
      }
      total.requests += totalOf(e.codes);
      total.failures += failuresOf(e.codes);
    }
  }

  /** What each zone said last (proxies, VMs). */
  zones(): ZoneTelemetryView[] {
    return [...this.#latest.values()].sort((a, b) => a.zone.localeCompare(b.zone));
  }

  /** The golden signals of every edge with traffic in the window. */
  edges(): EdgeSignals[] {
    const now = this.#now();
    const accs = new Map<string, Acc>();
    const coveredMs = new Map<string, number>();
    for (const zone of this.#zones.keys()) {
      const kept = this.#prune(zone, now);
      // The window a rate is over: what the zone's summaries cover, at most the window.
      let covered = 0;
      for (const k of kept) covered += k.intervalMs;
      coveredMs.set(zone, Math.min(this.windowMs, Math.max(covered, 1000)));
      for (const k of kept) {
        for (const e of k.summary.edges) {
          // The calling side is the reporting zone's: its KDS stream authenticated it, whatever the edge claims.
          const sourceZone = zone;
          const id = edgeId(sourceZone, e.source.namespace, e.source.service, e.destination);
          let acc = accs.get(id);
          if (acc === undefined) {
            acc = {
              source: {
                zone: sourceZone,
                namespace: e.source.namespace,
                service: e.source.service,
                workloads: [],
              },
              destination: { namespace: e.destination.namespace, service: e.destination.service },
              zones: new Map(),
              workloads: new Set(),
              codes: emptyCodes(),
              latency: emptyLatency(),
            };
            accs.set(id, acc);
          }
          acc.workloads.add(e.source.workload);
          for (const c of CODE_CLASSES) acc.codes[c] += e.codes[c];
          addLatency(acc.latency, e.latency);
          if (e.destination.zone !== '' && e.destination.zone !== 'unknown') {
            acc.zones.set(e.destination.zone, (acc.zones.get(e.destination.zone) ?? 0) + totalOf(e.codes));
          }
        }
      }
    }
    const out: EdgeSignals[] = [];
    for (const [id, acc] of accs) {
      const requests = totalOf(acc.codes);
      if (requests === 0) continue;
      let zone = '';
      let most = -1;
      for (const [z, n] of acc.zones) {
        if (n > most || (n === most && z === acc.source.zone)) {
          zone = z;
          most = n;
        }
      }
      const total = this.#totals.get(id);
      const p50 = latencyQuantileMs(acc.latency, 0.5);
      const p99 = latencyQuantileMs(acc.latency, 0.99);
      out.push({
        id,
        source: { ...acc.source, workloads: [...acc.workloads].sort() },
        destination: {
          ...acc.destination,
          zone: zone || 'unknown',
          zones: Object.fromEntries([...acc.zones].sort()),
        },
        codes: acc.codes,
        requests,
        rps: round(requests / ((coveredMs.get(acc.source.zone) ?? this.windowMs) / 1000), 3),
        successRate: round((requests - failuresOf(acc.codes)) / requests, 4),
        p50Ms: p50 === undefined ? null : round(p50, 2),
        p99Ms: p99 === undefined ? null : round(p99, 2),
        totalRequests: total?.requests ?? requests,
        totalFailures: total?.failures ?? failuresOf(acc.codes),
      });
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Drops summaries older than the window; returns what is left. */
  #prune(zone: string, now: number): Kept[] {
    const kept = this.#zones.get(zone) ?? [];
    const from = now - this.windowMs;
    let drop = 0;
    while (drop < kept.length && (kept[drop]?.receivedAt ?? 0) <= from) drop++;
    if (drop > 0) kept.splice(0, drop);
    return kept;
  }
}

function edgeId(
  zone: string,
  namespace: string,
  service: string,
  destination: { namespace: string; service: string },
): string {
  return `${zone}/${namespace}/${service}->${destination.namespace}/${destination.service}`;
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
