/**
 * Passive outlier detection per cluster, after Envoy: an endpoint that
 * answers `consecutive5xxErrors` 5xx in a row (or `consecutiveGatewayErrors`
 * 502/503/504 in a row) is ejected for baseEjectionTime × its ejection
 * count, so a repeat offender stays out longer; the count decays while it
 * behaves. Local failures (connect failure, reset, timeout) count as both.
 * At most maxEjectionPercent of the endpoints are out at once (but one may
 * always be), and below minHealthPercent healthy the detector stands aside.
 * A sweep every `interval` returns endpoints whose time is up.
 */

import type { OutlierPolicy } from '../config/config-types.js';
import type { EndpointState } from '../cluster/endpoint-state.js';

/** Ejections never last longer than this (Envoy's max_ejection_time default), unless the base is longer. */
const MAX_EJECTION_MS = 300_000;

export interface OutlierOwner {
  readonly endpoints: readonly EndpointState[];
  /** Availability changed: recompute load-balancing levels. */
  onEjectionChange(endpoint: EndpointState, ejected: boolean): void;
}

export class OutlierDetector {
  #policy: OutlierPolicy;
  readonly #owner: OutlierOwner;
  #timer: NodeJS.Timeout | undefined;
  ejectionsTotal = 0;

  constructor(policy: OutlierPolicy, owner: OutlierOwner) {
    this.#policy = policy;
    this.#owner = owner;
    this.#schedule();
  }

  update(policy: OutlierPolicy): void {
    const intervalChanged = policy.intervalMs !== this.#policy.intervalMs;
    this.#policy = policy;
    if (intervalChanged) this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = setInterval(sweep, Math.max(this.#policy.intervalMs, 10), this);
    this.#timer.unref();
  }

  /** Records one response (`status`) or a local failure (`status` 0). */
  onResult(e: EndpointState, status: number): void {
    const local = status === 0;
    if (local || status >= 500) e.consecutive5xx++;
    else e.consecutive5xx = 0;
    if (local || status === 502 || status === 503 || status === 504) e.consecutiveGateway++;
    else e.consecutiveGateway = 0;
    if (e.ejected) return;
    const p = this.#policy;
    const trip =
      (p.consecutive5xx > 0 && e.consecutive5xx >= p.consecutive5xx) ||
      (p.consecutiveGateway > 0 && e.consecutiveGateway >= p.consecutiveGateway);
    if (trip) this.#tryEject(e);
  }

  #tryEject(e: EndpointState): void {
    const all = this.#owner.endpoints;
    const total = all.length;
    let ejected = 0;
    let healthy = 0;
    for (const x of all) {
      if (x.ejected) ejected++;
      else if (x.config.healthy) healthy++;
    }
    if (total === 0) return;
    if ((healthy * 100) / total < this.#policy.minHealthPercent) return;
    // Envoy ejects at least one host whatever the percentage.
    if (ejected > 0 && ((ejected + 1) * 100) / total > this.#policy.maxEjectionPercent) return;
    e.ejections++;
    const base = this.#policy.baseEjectionMs;
    const duration = Math.min(base * e.ejections, Math.max(base, MAX_EJECTION_MS));
    e.ejected = true;
    e.ejectedUntil = Date.now() + duration;
    e.consecutive5xx = 0;
    e.consecutiveGateway = 0;
    this.ejectionsTotal++;
    this.#owner.onEjectionChange(e, true);
  }

  /** Interval sweep: un-eject endpoints whose time is up; decay the count of well-behaved ones. */
  sweep(now = Date.now()): void {
    for (const e of this.#owner.endpoints) {
      if (e.ejected) {
        if (e.ejectedUntil <= now) {
          e.ejected = false;
          this.#owner.onEjectionChange(e, false);
        }
      } else if (
        e.ejections > 0 &&
        e.consecutive5xx === 0 &&
        e.consecutiveGateway === 0 &&
        now - e.ejectedUntil > this.#policy.baseEjectionMs
      ) {
        e.ejections--;
      }
    }
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

function sweep(detector: OutlierDetector): void {
  detector.sweep();
}
