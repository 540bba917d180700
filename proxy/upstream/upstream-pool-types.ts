/**
 * The pool contract shared by the HTTP/1.1 and HTTP/2 pools, and the key
 * that tells when a changed snapshot needs a new pool.
 */

import type { OutgoingHttpHeaders } from 'node:http';
import type { Attempt, AttemptOwner } from './upstream-attempt.js';
import type { ConnectTarget } from './upstream-connect.js';

export interface PoolSettings extends ConnectTarget {
  h2: boolean;
  /** 0 = unlimited. */
  maxRequestsPerConnection: number;
  /** Idle connections close after this long. */
  idleTimeoutMs: number;
  /** Per endpoint; the cluster-wide limit is the circuit breaker's. */
  maxConnections: number;
}

/** Pools with equal keys are interchangeable; a changed key means a new pool. */
export function poolKey(s: PoolSettings): string {
  return [
    s.address,
    s.port,
    s.tls ? 't' : 'p',
    s.sni,
    s.alpn.join('+'),
    s.identities.join('+'),
    s.connectTimeoutMs,
    s.h2 ? 'h2' : 'h1',
    s.maxRequestsPerConnection,
    s.idleTimeoutMs,
    s.maxConnections,
  ].join('|');
}

export interface UpstreamPool {
  readonly key: string;
  readonly h2: boolean;
  /** Starts one request; `headers` is consumed (the pool adds host or pseudo-headers). */
  open(
    owner: AttemptOwner,
    method: string,
    path: string,
    authority: string,
    headers: OutgoingHttpHeaders,
  ): Attempt;
  /** Open connections (HTTP/1.1 sockets, or 1 for a live HTTP/2 session). */
  connections(): number;
  /** Graceful: idle connections close now, busy ones after their request. Idempotent. */
  close(): void;
  /** Hard: every connection is destroyed. Idempotent. */
  destroy(): void;
}
