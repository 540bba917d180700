/**
 * The HTTP/1.1 connection pool of one upstream endpoint, on the lean client
 * (upstream-h1-conn): idle connections are reused last-in first-out, so warm
 * ones stay warm and cold ones reach the idle timeout; past the connection
 * limit requests wait in order. One sweep timer per pool (only while it has
 * idle connections) closes those idle for too long — no timer per request.
 */

import type { OutgoingHttpHeaders } from 'node:http';
import type { Attempt, AttemptOwner } from './upstream-attempt.js';
import { connectUpstream, type TlsProvider } from './upstream-connect.js';
import { H1Attempt, H1Conn, type H1AttemptPool, type H1ConnPool } from './upstream-h1-conn.js';
import { UpstreamFailure } from './upstream-attempt.js';
import { poolKey, type PoolSettings, type UpstreamPool } from './upstream-pool-types.js';

/**
 * Idle connections a sweep closes per event-loop turn. When a burst ends, its
 * connections all go idle together and expire together; closing dozens of TLS
 * connections in one turn stalled every request in flight for milliseconds
 * (the proxy benchmark's p99 at 1,000 rps). In batches, requests run between them.
 */
const SWEEP_BATCH = 4;

export class H1Pool implements UpstreamPool, H1ConnPool, H1AttemptPool {
  readonly key: string;
  readonly h2 = false;
  readonly maxRequestsPerConnection: number;
  closing = false;
  readonly #settings: PoolSettings;
  readonly #provider: TlsProvider | undefined;
  readonly #conns = new Set<H1Conn>();
  /** Idle connections, oldest first (reuse takes the newest). */
  readonly #idle: H1Conn[] = [];
  readonly #waiting: H1Attempt[] = [];
  #sweep: NodeJS.Timeout | undefined;
  /** A sweep continues on the next turn (more connections expired than one batch). */
  #sweepContinues = false;
  #destroyed = false;

  constructor(settings: PoolSettings, provider: TlsProvider | undefined) {
    this.key = poolKey(settings);
    this.#settings = settings;
    this.#provider = provider;
    this.maxRequestsPerConnection = settings.maxRequestsPerConnection;
  }

  open(
    owner: AttemptOwner,
    method: string,
    path: string,
    authority: string,
    headers: OutgoingHttpHeaders,
  ): Attempt {
    const attempt = new H1Attempt(owner, this, method, path, authority, headers);
    if (attempt.settled) return attempt; // an invalid head: it reports itself
    if (this.#destroyed) {
      process.nextTick(failDestroyed, attempt);
      return attempt;
    }
    const conn = this.#take();
    if (conn !== undefined) this.#assign(conn, attempt);
    else if (this.#conns.size < this.#settings.maxConnections) this.#assign(this.#connect(), attempt);
    else this.#waiting.push(attempt);
    return attempt;
  }

  #take(): H1Conn | undefined {
    const idle = this.#idle;
    while (idle.length > 0) {
      const conn = idle.pop();
      if (conn !== undefined && conn.usable) return conn;
      conn?.destroy();
    }
    return undefined;
  }

  #connect(): H1Conn {
    const conn = new H1Conn(connectUpstream(this.#settings, this.#provider), this);
    this.#conns.add(conn);
    return conn;
  }

  #assign(conn: H1Conn, attempt: H1Attempt): void {
    conn.bind(attempt);
    attempt.start();
  }

  release(conn: H1Conn): void {
    const next = this.#nextWaiting();
    if (next !== undefined) {
      this.#assign(conn, next);
      return;
    }
    conn.idleSince = Date.now();
    this.#idle.push(conn);
    if (this.#sweep === undefined && this.#settings.idleTimeoutMs > 0) {
      this.#sweep = setInterval(sweepPool, Math.max(50, this.#settings.idleTimeoutMs / 4), this);
      this.#sweep.unref();
    }
  }

  removed(conn: H1Conn): void {
    this.#conns.delete(conn);
    const i = this.#idle.indexOf(conn);
    if (i >= 0) this.#idle.splice(i, 1);
    // A connection slot came free: a waiting request gets a new connection.
    if (!this.#destroyed && this.#waiting.length > 0 && this.#conns.size < this.#settings.maxConnections) {
      const next = this.#nextWaiting();
      if (next !== undefined) this.#assign(this.#connect(), next);
    }
  }

  #nextWaiting(): H1Attempt | undefined {
    const waiting = this.#waiting;
    while (waiting.length > 0) {
      const a = waiting.shift();
      if (a !== undefined && !a.settled) return a;
    }
    return undefined;
  }

  cancel(attempt: H1Attempt): void {
    if (this.#waiting.length === 0) return;
    const i = this.#waiting.indexOf(attempt);
    if (i >= 0) this.#waiting.splice(i, 1);
  }

  /** Closes connections idle for longer than the idle timeout, SWEEP_BATCH per event-loop turn. */
  sweep(): void {
    // A sweep still working through a backlog goes on by itself.
    if (this.#sweepContinues) return;
    this.#sweepBatch();
  }

  readonly #continueSweep = (): void => {
    this.#sweepContinues = false;
    this.#sweepBatch();
  };

  #sweepBatch(): void {
    const limit = Date.now() - this.#settings.idleTimeoutMs;
    const idle = this.#idle;
    let n = 0;
    while (n < idle.length && n < SWEEP_BATCH && (idle[n]?.idleSince ?? 0) <= limit) n++;
    if (n > 0) for (const conn of idle.splice(0, n)) conn.destroy();
    if (idle.length === 0) {
      this.#stopSweep();
    } else if ((idle[0]?.idleSince ?? 0) <= limit) {
      this.#sweepContinues = true;
      setImmediate(this.#continueSweep);
    }
  }

  /** Idle connections, for tests. */
  get idleCount(): number {
    return this.#idle.length;
  }

  #stopSweep(): void {
    if (this.#sweep !== undefined) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }

  connections(): number {
    return this.#conns.size;
  }

  close(): void {
    this.closing = true;
    this.#stopSweep();
    for (const conn of this.#idle.splice(0)) conn.destroy();
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.close();
    for (const conn of [...this.#conns]) conn.destroy();
    for (const a of this.#waiting.splice(0)) failDestroyed(a);
  }
}

function sweepPool(pool: H1Pool): void {
  pool.sweep();
}

function failDestroyed(a: H1Attempt): void {
  a.fail(UpstreamFailure.CONNECT, new Error('the upstream pool was destroyed'));
}
