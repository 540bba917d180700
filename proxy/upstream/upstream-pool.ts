/**
 * Connection pools, one per upstream endpoint of a cluster: HTTP/1.1
 * keep-alive connections on the lean client (upstream-h1-pool: LIFO, so
 * warm connections are reused and cold ones time out) or one multiplexed
 * HTTP/2 session. Pools outlive snapshots:
 * a new snapshot that keeps an endpoint keeps its warm connections.
 */

import type { OutgoingHttpHeaders } from 'node:http';
import http2, { type ClientHttp2Session } from 'node:http2';
import { H2Attempt, type Attempt, type AttemptOwner } from './upstream-attempt.js';
import { connectUpstream, type TlsProvider } from './upstream-connect.js';
import { H1Pool } from './upstream-h1-pool.js';
import { poolKey, type PoolSettings, type UpstreamPool } from './upstream-pool-types.js';

export { H1Pool } from './upstream-h1-pool.js';
export { poolKey, type PoolSettings, type UpstreamPool } from './upstream-pool-types.js';

function onSessionError(this: ClientHttp2Session): void {
  // The streams on it report their own failures; the session just goes away.
  this.destroy();
}

function onSessionIdle(this: ClientHttp2Session): void {
  this.close();
}

export class H2Pool implements UpstreamPool {
  readonly key: string;
  readonly h2 = true;
  readonly #settings: PoolSettings;
  readonly #provider: TlsProvider | undefined;
  readonly #origin: string;
  readonly #scheme: string;
  #session: ClientHttp2Session | undefined;
  #streamsOnSession = 0;
  #closed = false;
  readonly #draining = new Set<ClientHttp2Session>();

  constructor(settings: PoolSettings, provider: TlsProvider | undefined) {
    this.key = poolKey(settings);
    this.#settings = settings;
    this.#provider = provider;
    this.#scheme = settings.tls ? 'https' : 'http';
    this.#origin = `${this.#scheme}://${settings.address.includes(':') ? `[${settings.address}]` : settings.address}:${settings.port}`;
  }

  #sessionForRequest(): ClientHttp2Session {
    const max = this.#settings.maxRequestsPerConnection;
    let session = this.#session;
    if (
      session !== undefined &&
      (session.closed || session.destroyed || (max > 0 && this.#streamsOnSession >= max))
    ) {
      if (!session.closed && !session.destroyed) {
        this.#draining.add(session);
        session.close(() => this.#draining.delete(session as ClientHttp2Session));
      }
      session = undefined;
    }
    if (session === undefined) {
      const settings = this.#settings;
      const provider = this.#provider;
      session = http2.connect(this.#origin, {
        createConnection: () => connectUpstream(settings, provider),
        settings: { enablePush: false, initialWindowSize: 1 << 20 },
        maxSessionMemory: 64,
      });
      session.on('error', onSessionError);
      if (settings.idleTimeoutMs > 0) session.setTimeout(settings.idleTimeoutMs, onSessionIdle);
      const created = session;
      session.once('close', () => {
        if (this.#session === created) this.#session = undefined;
      });
      session.once('goaway', () => {
        if (this.#session === created) this.#session = undefined;
      });
      this.#session = session;
      this.#streamsOnSession = 0;
    }
    this.#streamsOnSession++;
    return session;
  }

  open(
    owner: AttemptOwner,
    method: string,
    path: string,
    authority: string,
    headers: OutgoingHttpHeaders,
  ): Attempt {
    headers[':method'] = method;
    headers[':path'] = path;
    headers[':authority'] = authority;
    headers[':scheme'] = this.#scheme;
    return new H2Attempt(owner, this.#sessionForRequest(), headers);
  }

  connections(): number {
    return (this.#session !== undefined && !this.#session.destroyed ? 1 : 0) + this.#draining.size;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#session?.close();
    this.#session = undefined;
  }

  destroy(): void {
    this.#closed = true;
    this.#session?.destroy();
    this.#session = undefined;
    for (const s of this.#draining) s.destroy();
    this.#draining.clear();
  }
}

export function createPool(settings: PoolSettings, provider: TlsProvider | undefined): UpstreamPool {
  return settings.h2 ? new H2Pool(settings, provider) : new H1Pool(settings, provider);
}
