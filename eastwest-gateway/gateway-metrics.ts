/**
 * The gateway's Prometheus metrics, on its own registry. Labels are bounded:
 * refusal reasons are a fixed set, services are the ones this zone exports.
 *
 * The hot path only bumps plain numbers (a per-service stats object is
 * resolved once per snapshot and held by each route); prom-client reads
 * them at scrape time through `collect`, so a connection costs no label
 * hashing. Bytes are taken from the sockets' own counters when a connection
 * closes, and at scrape time for the connections still open, so long-lived
 * connections show up without waiting for them to end.
 */

import { Counter, Gauge, Registry, createRegistry } from '../core/metrics.js';

/** Every reason the gateway closes a connection without forwarding a byte. */
export const REFUSAL_REASONS = [
  'not-tls',
  'malformed',
  'too-large',
  'no-sni',
  'hello-timeout',
  'hello-incomplete',
  'non-mesh-sni',
  'not-exported',
  'unknown-service',
  'unknown-port',
  'unknown-subset',
  'no-healthy-endpoint',
  'upstream-unavailable',
  'limit-total',
  'limit-source',
  'not-ready',
] as const;

export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** An open connection whose byte counts are added at scrape time. */
export interface ByteSource {
  /** Add the bytes moved since the last flush to `metrics.bytesIn/bytesOut`. */
  flushBytes(metrics: GatewayMetrics): void;
}

/** Counters of one destination service (`name.namespace`). */
export interface ServiceStats {
  forwarded: number;
  active: number;
  connectFailures: number;
}

export class GatewayMetrics {
  readonly registry: Registry;
  accepted = 0;
  active = 0;
  bytesIn = 0;
  bytesOut = 0;
  ejections = 0;
  routes = 0;
  snapshotsApplied = 0;
  snapshotsRejected = 0;
  /** Spare upstream connections (preconnect-pool.ts) by what became of them. */
  preconnectsUsed = 0;
  preconnectsExpired = 0;
  preconnectsLost = 0;
  preconnectsDiscarded = 0;
  private readonly refused = new Map<RefusalReason, number>(REFUSAL_REASONS.map((r) => [r, 0]));
  private readonly services = new Map<string, ServiceStats>();

  constructor(openConnections: () => Iterable<ByteSource>, withProcessMetrics = true) {
    this.registry = createRegistry('eastwest-gateway', withProcessMetrics ? 'full' : 'off');
    const registers = [this.registry];
    const connectionsMetric: Counter = new Counter({
      name: 'meshfed_gateway_connections_total',
      help: 'TCP connections accepted on the gateway listener.',
      registers,
      collect: () => {
        connectionsMetric.reset();
        connectionsMetric.inc(this.accepted);
      },
    });
    const activeMetric: Gauge = new Gauge({
      name: 'meshfed_gateway_active_connections',
      help: 'Connections open now, from accept to close (reading the hello, connecting or piping).',
      registers,
      collect: () => {
        activeMetric.set(this.active);
      },
    });
    const refusedMetric: Counter<'reason'> = new Counter({
      name: 'meshfed_gateway_refused_connections_total',
      help: 'Connections closed before a byte was forwarded, by reason.',
      labelNames: ['reason'],
      registers,
      collect: () => {
        refusedMetric.reset();
        for (const [reason, n] of this.refused) refusedMetric.inc({ reason }, n);
      },
    });
    const bytesMetric: Counter<'direction'> = new Counter({
      name: 'meshfed_gateway_bytes_total',
      help: 'Bytes piped through the gateway, by direction (in = from the remote client, out = to it).',
      labelNames: ['direction'],
      registers,
      collect: () => {
        for (const connection of openConnections()) connection.flushBytes(this);
        bytesMetric.reset();
        bytesMetric.inc({ direction: 'in' }, this.bytesIn);
        bytesMetric.inc({ direction: 'out' }, this.bytesOut);
      },
    });
    const forwardedMetric: Counter<'service'> = new Counter({
      name: 'meshfed_gateway_forwarded_connections_total',
      help: 'Connections routed and piped to a local endpoint, by service (name.namespace).',
      labelNames: ['service'],
      registers,
      collect: () => {
        forwardedMetric.reset();
        for (const [service, s] of this.services)
          if (s.forwarded > 0) forwardedMetric.inc({ service }, s.forwarded);
      },
    });
    const serviceActiveMetric: Gauge<'service'> = new Gauge({
      name: 'meshfed_gateway_service_active_connections',
      help: 'Piping connections now, by destination service (name.namespace).',
      labelNames: ['service'],
      registers,
      collect: () => {
        serviceActiveMetric.reset();
        for (const [service, s] of this.services) serviceActiveMetric.set({ service }, s.active);
      },
    });
    const connectFailuresMetric: Counter<'service'> = new Counter({
      name: 'meshfed_gateway_upstream_connect_failures_total',
      help: 'Connects to a local endpoint that failed (refused, unreachable, timed out); each ejects the endpoint.',
      labelNames: ['service'],
      registers,
      collect: () => {
        connectFailuresMetric.reset();
        for (const [service, s] of this.services) {
          if (s.connectFailures > 0) connectFailuresMetric.inc({ service }, s.connectFailures);
        }
      },
    });
    const ejectionsMetric: Counter = new Counter({
      name: 'meshfed_gateway_endpoint_ejections_total',
      help: 'Endpoints ejected after a failed connect (passive outlier detection).',
      registers,
      collect: () => {
        ejectionsMetric.reset();
        ejectionsMetric.inc(this.ejections);
      },
    });
    const preconnectsMetric: Counter<'outcome'> = new Counter({
      name: 'meshfed_gateway_upstream_preconnects_total',
      help: 'Spare upstream connections opened ahead of demand, by outcome: used (the endpoint answered a client on it), expired (closed unused after the idle time), lost (failed or closed by the endpoint before answering), discarded (closed by the gateway: the endpoint left the table, or drain).',
      labelNames: ['outcome'],
      registers,
      collect: () => {
        preconnectsMetric.reset();
        preconnectsMetric.inc({ outcome: 'used' }, this.preconnectsUsed);
        preconnectsMetric.inc({ outcome: 'expired' }, this.preconnectsExpired);
        preconnectsMetric.inc({ outcome: 'lost' }, this.preconnectsLost);
        preconnectsMetric.inc({ outcome: 'discarded' }, this.preconnectsDiscarded);
      },
    });
    const snapshotsMetric: Counter<'result'> = new Counter({
      name: 'meshfed_gateway_snapshots_total',
      help: 'Routing snapshots received, by result (applied or rejected).',
      labelNames: ['result'],
      registers,
      collect: () => {
        snapshotsMetric.reset();
        snapshotsMetric.inc({ result: 'applied' }, this.snapshotsApplied);
        snapshotsMetric.inc({ result: 'rejected' }, this.snapshotsRejected);
      },
    });
    const routesMetric: Gauge = new Gauge({
      name: 'meshfed_gateway_routes',
      help: 'Routable SNIs (service port × subset) in the current table.',
      registers,
      collect: () => {
        routesMetric.set(this.routes);
      },
    });
  }

  refusal(reason: RefusalReason): void {
    this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1);
  }

  /** The stats object of a service, created on first use; routes hold it so connections skip the lookup. */
  service(name: string): ServiceStats {
    let stats = this.services.get(name);
    if (stats === undefined) {
      stats = { forwarded: 0, active: 0, connectFailures: 0 };
      this.services.set(name, stats);
    }
    return stats;
  }
}
