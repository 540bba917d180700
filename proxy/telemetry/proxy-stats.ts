/**
 * meshfed's own proxy metrics (beyond Istio's standard set): refusals,
 * RBAC denials, config updates, circuit-breaker overflows, retries,
 * ejections, certificate expiry. Labels are bounded by the config (policy
 * and cluster names) or by a fixed list of reasons.
 */

import { Counter, Gauge, type Registry } from '../../core/prom-modules.js';

export class ProxyStats {
  readonly rbacDenied: Counter<'policy'>;
  readonly inboundRefused: Counter<'reason'>;
  readonly downstreamErrors: Counter<'reason'>;
  readonly configUpdates: Counter<'result'>;
  readonly overflows: Counter<'cluster'>;
  readonly retries: Counter<'cluster'>;
  readonly activeRequests: Gauge<'direction'>;
  readonly certExpiry: Gauge;
  readonly upstreamConnectFailures: Counter<'reason'>;
  readonly inboundHandshakes: Counter<'resumed'>;
  /** Cheap in-process counters for /stats (no label hashing on the hot path). */
  active = { inbound: 0, outbound: 0 };

  constructor(
    registry: Registry,
    ejections: () => Array<{ cluster: string; active: number; total: number }>,
  ) {
    const registers = [registry];
    this.rbacDenied = new Counter({
      name: 'meshfed_proxy_rbac_denied_total',
      help: 'Inbound requests refused by AuthorizationPolicy (403 RBAC: access denied), by deciding policy.',
      labelNames: ['policy'],
      registers,
    });
    this.inboundRefused = new Counter({
      name: 'meshfed_proxy_inbound_refused_total',
      help: 'Inbound connections refused before any request: TLS handshake failures, plaintext on a STRICT port, wrong trust domain, unknown port.',
      labelNames: ['reason'],
      registers,
    });
    this.downstreamErrors = new Counter({
      name: 'meshfed_proxy_downstream_errors_total',
      help: 'Malformed or abandoned downstream requests: bad request, headers too large, header timeout, client reset.',
      labelNames: ['reason'],
      registers,
    });
    this.configUpdates = new Counter({
      name: 'meshfed_proxy_config_updates_total',
      help: 'Snapshots applied (ACK) or rejected (NACK).',
      labelNames: ['result'],
      registers,
    });
    this.overflows = new Counter({
      name: 'meshfed_proxy_upstream_overflow_total',
      help: 'Requests refused by a cluster circuit breaker (503 UO).',
      labelNames: ['cluster'],
      registers,
    });
    this.retries = new Counter({
      name: 'meshfed_proxy_upstream_retries_total',
      help: 'Retries started, by cluster.',
      labelNames: ['cluster'],
      registers,
    });
    this.upstreamConnectFailures = new Counter({
      name: 'meshfed_proxy_upstream_connect_failures_total',
      help: 'Upstream connections that failed to open, by reason (refused, timeout, tls, identity).',
      labelNames: ['reason'],
      registers,
    });
    this.inboundHandshakes = new Counter({
      name: 'meshfed_proxy_inbound_tls_handshakes_total',
      help: 'Accepted inbound mTLS handshakes, by whether the TLS session was resumed.',
      labelNames: ['resumed'],
      registers,
    });
    const active = this.active;
    this.activeRequests = new Gauge({
      name: 'meshfed_proxy_active_requests',
      help: 'Requests in flight, by direction.',
      labelNames: ['direction'],
      registers,
      collect() {
        this.set({ direction: 'inbound' }, active.inbound);
        this.set({ direction: 'outbound' }, active.outbound);
      },
    });
    this.certExpiry = new Gauge({
      name: 'meshfed_proxy_cert_expiry_timestamp_seconds',
      help: 'When the workload certificate in use expires (seconds since the epoch).',
      registers,
    });
    new Gauge({
      name: 'meshfed_proxy_outlier_ejected_endpoints',
      help: 'Endpoints currently ejected by outlier detection, by cluster.',
      labelNames: ['cluster'],
      registers,
      collect() {
        this.reset();
        for (const e of ejections()) this.set({ cluster: e.cluster }, e.active);
      },
    });
    new Gauge({
      name: 'meshfed_proxy_outlier_ejections_total',
      help: 'Ejections so far, by cluster (a gauge: clusters come and go with the config).',
      labelNames: ['cluster'],
      registers,
      collect() {
        this.reset();
        for (const e of ejections()) this.set({ cluster: e.cluster }, e.total);
      },
    });
  }
}
