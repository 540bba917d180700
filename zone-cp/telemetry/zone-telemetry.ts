/**
 * The zone's side of the dashboard's telemetry path: sums the Reports its
 * proxies send on their MDS streams, per edge, until the KDS client cuts a
 * summary for global (every few seconds while global is connected). While
 * global is away the sums keep growing (bounded by the number of edges) and
 * the next summary covers the whole gap, so no request goes uncounted.
 */

import type { Logger } from '../../core/log.js';
import { Counter, Gauge, type Registry } from '../../core/metrics.js';
import {
  CODE_CLASSES,
  MAX_EDGES_PER_MESSAGE,
  TELEMETRY_FORMAT_VERSION,
  edgeKeyOf,
  mergeEdge,
  type EdgeSample,
  type ProxyTelemetryReport,
  type VmStatus,
  type ZoneTelemetrySummary,
} from '../../core/telemetry/telemetry-report.js';

/**
 * A proxy reports the requests it made (reporter=source), so the calling side
 * of every edge is the proxy itself: workload and namespace come from its MDS
 * session, which the zone authenticated, whatever the report claims. (Global
 * likewise takes the zone from the KDS stream that carries the summary.) The
 * calling service stays as reported: it is a label, not an identity.
 */
export function asReportedBy(
  report: ProxyTelemetryReport,
  proxy: { workload: string; namespace: string },
): ProxyTelemetryReport {
  return {
    ...report,
    edges: report.edges.map((e) => ({
      ...e,
      source: { ...e.source, workload: proxy.workload, namespace: proxy.namespace },
    })),
  };
}

export interface ZoneTelemetryOptions {
  registry?: Registry;
  logger?: Logger;
}

export class ZoneTelemetryCollector {
  #edges = new Map<string, EdgeSample>();
  #since = Date.now();
  #dropped = 0;
  readonly #reports: Counter | undefined;
  readonly #requests: Counter | undefined;

  constructor(options: ZoneTelemetryOptions = {}) {
    const { registry } = options;
    if (registry !== undefined) {
      this.#reports = new Counter({
        name: 'meshfed_zone_telemetry_reports_total',
        help: 'Telemetry reports received from proxies, by outcome (accepted, invalid).',
        labelNames: ['outcome'],
        registers: [registry],
      });
      this.#requests = new Counter({
        name: 'meshfed_zone_telemetry_requests_total',
        help: 'Requests the zone’s proxies reported, by response-code class.',
        labelNames: ['code_class'],
        registers: [registry],
      });
      const edges = (): number => this.#edges.size;
      new Gauge({
        name: 'meshfed_zone_telemetry_pending_edges',
        help: 'Edges summed since the last summary sent to global.',
        registers: [registry],
        collect() {
          this.set(edges());
        },
      });
    }
  }

  /** Adds one proxy's report. */
  receive(report: ProxyTelemetryReport): void {
    this.#reports?.inc({ outcome: 'accepted' });
    for (const edge of report.edges) {
      if (this.#edges.size >= MAX_EDGES_PER_MESSAGE && !this.#edges.has(edgeKeyOf(edge))) {
        this.#dropped++;
        continue;
      }
      mergeEdge(this.#edges, edge);
      if (this.#requests !== undefined) {
        for (const c of CODE_CLASSES)
          if (edge.codes[c] > 0) this.#requests.inc({ code_class: c }, edge.codes[c]);
      }
    }
  }

  /** Counts a report that failed its checks (the stream stays up: telemetry is best effort). */
  rejected(): void {
    this.#reports?.inc({ outcome: 'invalid' });
  }

  /** Edges summed since the last cut. */
  get pendingEdges(): number {
    return this.#edges.size;
  }

  /** The summary since the previous cut, and a fresh start. */
  cut(zone: string, proxies: number, vms: VmStatus[]): ZoneTelemetrySummary {
    const now = Date.now();
    const summary: ZoneTelemetrySummary = {
      version: TELEMETRY_FORMAT_VERSION,
      zone,
      at: new Date(now).toISOString(),
      intervalMs: Math.max(0, now - this.#since),
      proxies,
      edges: [...this.#edges.values()],
      vms,
      ...(this.#dropped > 0 ? { dropped: this.#dropped } : {}),
    };
    this.#edges = new Map();
    this.#dropped = 0;
    this.#since = now;
    return summary;
  }
}
