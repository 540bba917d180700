/**
 * One upstream endpoint as the data path sees it: the zone CP's view
 * (address, zone, weight, health) plus what this proxy learned itself
 * (active requests, outlier ejection) and its connection pool. The object
 * survives snapshot swaps while the endpoint stays, so counters and warm
 * connections do too.
 */

import type { EndpointConfig } from '../../core/mesh/snapshot.js';
import type { UpstreamPool } from '../upstream/upstream-pool.js';

export class EndpointState {
  readonly key: string;
  config: EndpointConfig;
  pool: UpstreamPool;
  /** Requests in flight (least-request balancing). */
  active = 0;
  /** Smooth weighted round robin's running weight. */
  rrCurrent = 0;
  // Outlier detection.
  consecutive5xx = 0;
  consecutiveGateway = 0;
  ejected = false;
  ejectedUntil = 0;
  /** Ejections so far; each one lasts baseEjectionTime × this. Decays while the endpoint behaves. */
  ejections = 0;
  /** Per-endpoint metric series cache, owned by telemetry. */
  series: unknown = undefined;

  constructor(config: EndpointConfig, pool: UpstreamPool) {
    this.key = endpointKey(config);
    this.config = config;
    this.pool = pool;
  }

  /** Healthy by the zone CP and not ejected by this proxy. */
  get available(): boolean {
    return this.config.healthy && !this.ejected;
  }

  get weight(): number {
    return this.config.weight;
  }
}

export function endpointKey(config: EndpointConfig): string {
  return `${config.address}:${config.port}`;
}
