/**
 * Spare upstream connections, opened ahead of demand (Envoy calls this
 * preconnecting). Before a new connection's first byte reaches an endpoint
 * the gateway must open a TCP connection to it: a round trip to the
 * endpoint's node, plus Node's socket setup, on every connection's critical
 * path. With a spare, the ClientHello goes out on a connection that is
 * already established.
 *
 * Bounded by demand: an endpoint gets one spare after it has taken a
 * connection, a new one each time its spare is used, and a spare nobody
 * used within `idleMs` is closed and not replaced. An endpoint without
 * traffic has no spare; a busy one keeps exactly one open. `idleMs` stays
 * below the sidecar's TLS handshake timeout (10 s by default), so the
 * gateway, not the endpoint, closes unused spares.
 */

import type { EndpointState } from './endpoint-state.js';
import type { GatewayMetrics } from './gateway-metrics.js';
import type { ReadBufferPool } from './read-buffer-pool.js';
import { UpstreamLink } from './upstream-link.js';

/** One spare: its link, and the listeners that drop it if it dies or idles out before use. */
class Spare {
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly link: UpstreamLink,
    idleMs: number,
    private readonly onGone: (spare: Spare, outcome: 'expired' | 'lost') => void,
  ) {
    const socket = link.socket;
    socket.on('error', this.onError);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    this.timer = setTimeout(this.onIdle, idleMs);
    this.timer.unref();
  }

  /** Stop watching: the link now belongs to a connection (or is being closed). */
  detach(): void {
    clearTimeout(this.timer);
    const socket = this.link.socket;
    socket.off('error', this.onError);
    socket.off('end', this.onEnd);
    socket.off('close', this.onClose);
  }

  close(): void {
    this.detach();
    this.link.socket.destroy();
    this.link.release();
  }

  // A refused connect or a reset: the close that follows drops the spare.
  private readonly onError = (): void => undefined;

  // The endpoint closed an unused connection (it is shutting down): it must not carry a hello.
  private readonly onEnd = (): void => {
    this.link.socket.destroy();
  };

  private readonly onClose = (): void => {
    this.onGone(this, 'lost');
  };

  private readonly onIdle = (): void => {
    this.onGone(this, 'expired');
  };
}

export class PreconnectPool {
  private readonly spares = new Map<EndpointState, Spare>();
  /** The endpoints of the table in force; a connection routed by an older one must not open spares. */
  private current: ReadonlySet<EndpointState> | undefined;
  private closed = false;

  /**
   * @param idleMs how long an unused spare stays open; 0 turns preconnecting off.
   */
  constructor(
    private readonly idleMs: number,
    private readonly buffers: ReadBufferPool,
    private readonly metrics: GatewayMetrics,
  ) {}

  /** Spares open or connecting now. */
  get size(): number {
    return this.spares.size;
  }

  /**
   * The endpoint's established spare, now the caller's; undefined when it has
   * none ready. The caller counts it used once the endpoint answers on it, or
   * lost if it fails first.
   */
  take(endpoint: EndpointState): UpstreamLink | undefined {
    const spare = this.spares.get(endpoint);
    if (spare === undefined || !spare.link.usable) return undefined;
    this.spares.delete(endpoint);
    spare.detach();
    return spare.link;
  }

  /** Open a spare to the endpoint unless it has one, for the next connection routed there. */
  refill(endpoint: EndpointState): void {
    if (this.idleMs === 0 || this.closed || this.spares.has(endpoint)) return;
    if (this.current !== undefined && !this.current.has(endpoint)) return;
    const spare = new Spare(new UpstreamLink(endpoint, this.buffers), this.idleMs, this.onGone);
    this.spares.set(endpoint, spare);
  }

  /** A new routing table: close the spares of endpoints it no longer names, and open none for them. */
  retainOnly(endpoints: ReadonlySet<EndpointState>): void {
    this.current = endpoints;
    for (const [endpoint, spare] of this.spares) {
      if (endpoints.has(endpoint)) continue;
      this.spares.delete(endpoint);
      spare.close();
      this.metrics.preconnectsDiscarded++;
    }
  }

  /** Close every spare and open no more (drain, shutdown). */
  close(): void {
    this.closed = true;
    for (const spare of this.spares.values()) spare.close();
    this.metrics.preconnectsDiscarded += this.spares.size;
    this.spares.clear();
  }

  private readonly onGone = (spare: Spare, outcome: 'expired' | 'lost'): void => {
    const endpoint = spare.link.endpoint;
    if (this.spares.get(endpoint) === spare) this.spares.delete(endpoint);
    spare.close();
    if (outcome === 'expired') this.metrics.preconnectsExpired++;
    else this.metrics.preconnectsLost++;
  };
}
