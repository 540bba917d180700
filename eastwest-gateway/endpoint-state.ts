/**
 * Per-endpoint runtime state shared by every route that names the endpoint:
 * the same sidecar serves the `_` cluster and its subset's cluster, so least
 * connections and ejection must count it once. States outlive snapshots (a
 * new snapshot must not forget that an endpoint refused connects a second
 * ago, nor how many connections it carries).
 */

export interface EndpointState {
  /** `address:port`, the pool key. */
  readonly key: string;
  readonly address: string;
  readonly port: number;
  /** Workload name from the snapshot, for logs. */
  workload: string;
  /** Connections assigned to this endpoint now (connecting or piping). */
  active: number;
  /** ms since the epoch until which the endpoint is ejected; 0 when it is not. */
  ejectedUntil: number;
  /** Consecutive ejections; reset by a successful connect. Drives the backoff. */
  ejections: number;
  /** How long the latest ejection lasted (ms); 0 before the first. For /config_dump. */
  lastEjectionMs: number;
}

export interface EjectionPolicy {
  /** First ejection lasts this long; each consecutive one doubles it. */
  baseEjectionMs: number;
  /** Upper bound of one ejection. */
  maxEjectionMs: number;
}

/** The pool of endpoint states, keyed by `address:port`. */
export class EndpointPool {
  private readonly states = new Map<string, EndpointState>();

  /** The state for an endpoint, created on first sight. */
  obtain(address: string, port: number, workload: string): EndpointState {
    const key = `${address}:${port}`;
    let state = this.states.get(key);
    if (state === undefined) {
      state = { key, address, port, workload, active: 0, ejectedUntil: 0, ejections: 0, lastEjectionMs: 0 };
      this.states.set(key, state);
    } else {
      state.workload = workload;
    }
    return state;
  }

  /**
   * Forget endpoints the current snapshot no longer names. Connections still
   * open hold their state object, so their counters stay right.
   */
  retainOnly(keys: ReadonlySet<string>): void {
    for (const key of this.states.keys()) {
      if (!keys.has(key)) this.states.delete(key);
    }
  }

  get size(): number {
    return this.states.size;
  }
}

/** Eject an endpoint that refused a connect, for base × 2^(consecutive ejections), capped. */
export function ejectEndpoint(state: EndpointState, now: number, policy: EjectionPolicy): number {
  const duration = Math.min(policy.maxEjectionMs, policy.baseEjectionMs * 2 ** Math.min(state.ejections, 30));
  state.ejections++;
  state.ejectedUntil = now + duration;
  state.lastEjectionMs = duration;
  return duration;
}

/** A connect succeeded: the endpoint is back in full service and its backoff restarts. */
export function endpointConnected(state: EndpointState): void {
  state.ejections = 0;
  state.ejectedUntil = 0;
}

/** True while the endpoint sits out an ejection. */
export function isEjected(state: EndpointState, now: number): boolean {
  return state.ejectedUntil > now;
}
