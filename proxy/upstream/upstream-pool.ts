/**
 * Connection pools, one per upstream endpoint of a cluster: an HTTP/1.1
 * keep-alive agent (LIFO, so warm connections are reused and cold ones
 * time out) or one multiplexed HTTP/2 session. Pools outlive snapshots:
 * a new snapshot that keeps an endpoint keeps its warm connections.
 */

import http, { type OutgoingHttpHeaders } from 'node:http';
import http2, { type ClientHttp2Session } from 'node:http2';
import type { Duplex } from 'node:stream';
import { H1Attempt, H2Attempt, type Attempt, type AttemptOwner } from './upstream-attempt.js';
import { connectUpstream, type ConnectTarget, type TlsProvider } from './upstream-connect.js';

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

const kRequests = Symbol('meshfed.requestsOnSocket');

class MeshAgent extends http.Agent {
  readonly #settings: PoolSettings;
  readonly #provider: TlsProvider | undefined;
  closing = false;

  constructor(settings: PoolSettings, provider: TlsProvider | undefined) {
    super({
      keepAlive: true,
      maxSockets: settings.maxConnections,
      maxFreeSockets: Math.min(settings.maxConnections, 1024),
      scheduling: 'lifo',
      timeout: settings.idleTimeoutMs,
    });
    this.#settings = settings;
    this.#provider = provider;
  }

  override createConnection(): Duplex {
    return connectUpstream(this.#settings, this.#provider);
  }

  /** One endpoint per agent: no need to build a name per request. */
  override getName(): string {
    return 'upstream';
  }

  override keepSocketAlive(socket: Duplex & { [kRequests]?: number }): boolean {
    if (this.closing) return false;
    const max = this.#settings.maxRequestsPerConnection;
    if (max > 0) {
      const count = (socket[kRequests] ?? 0) + 1;
      socket[kRequests] = count;
      if (count >= max) return false;
    }
    return (super.keepSocketAlive(socket) as unknown) !== false;
  }
}

export class H1Pool implements UpstreamPool {
  readonly key: string;
  readonly h2 = false;
  readonly #agent: MeshAgent;
  readonly #settings: PoolSettings;

  constructor(settings: PoolSettings, provider: TlsProvider | undefined) {
    this.key = poolKey(settings);
    this.#settings = settings;
    this.#agent = new MeshAgent(settings, provider);
  }

  open(
    owner: AttemptOwner,
    method: string,
    path: string,
    authority: string,
    headers: OutgoingHttpHeaders,
  ): Attempt {
    headers.host = authority;
    return new H1Attempt(owner, {
      agent: this.#agent,
      host: this.#settings.address,
      port: this.#settings.port,
      method,
      path,
      headers,
    });
  }

  connections(): number {
    let n = 0;
    for (const list of Object.values(this.#agent.sockets)) n += list?.length ?? 0;
    for (const list of Object.values(this.#agent.freeSockets)) n += list?.length ?? 0;
    return n;
  }

  close(): void {
    this.#agent.closing = true;
    for (const list of Object.values(this.#agent.freeSockets)) for (const s of list ?? []) s.destroy();
  }

  destroy(): void {
    this.#agent.closing = true;
    this.#agent.destroy();
  }
}

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
