/**
 * The lean HTTP/1.1 server of the proxy's listeners. `node:http` costs a
 * proxy a large share of its CPU per request — a Readable and a Writable
 * per request, header objects built twice, events on both — for requests
 * that are, almost always, a plain request line, a few headers and a
 * content-length body. This server takes exactly those and hands
 * everything else, socket and unread bytes, to the listener's `node:http`
 * server (see lean-connection.ts). Idle connections are closed by one
 * sweep per server rather than a timer per socket.
 */

import type { Socket } from 'node:net';
import { monotonicMs } from '../../../core/clock.js';
import type { HttpServerLimits } from '../http-servers.js';
import { LeanH1Connection, type ConnectionOwner } from './lean-connection.js';
import type { LeanRequest } from './lean-request.js';
import { keepAliveLines, type LeanResponse } from './lean-response.js';

export interface LeanH1Handlers {
  onRequest(req: LeanRequest, res: LeanResponse): void;
  /** Takes over a connection the lean server does not serve (with the bytes already read from it). */
  handOver(socket: Socket, unread: Buffer | undefined): void;
}

export class LeanH1Server implements ConnectionOwner {
  readonly limits: HttpServerLimits;
  readonly keepAliveLines: string;
  readonly #handlers: LeanH1Handlers;
  readonly #connections = new Set<LeanH1Connection>();
  #sweep: NodeJS.Timeout | undefined;

  constructor(limits: HttpServerLimits, handlers: LeanH1Handlers) {
    this.limits = limits;
    this.keepAliveLines = keepAliveLines(limits.keepAliveTimeoutMs);
    this.#handlers = handlers;
  }

  /** Serves a connection; `first` are bytes already read from it (by protocol sniffing). */
  accept(socket: Socket, first: Buffer | undefined): void {
    const conn = new LeanH1Connection(socket, this);
    this.#connections.add(conn);
    this.#startSweep();
    if (first !== undefined && first.length > 0) conn.onData(first);
  }

  onRequest(req: LeanRequest, res: LeanResponse): void {
    this.#handlers.onRequest(req, res);
  }

  handOver(socket: Socket, unread: Buffer | undefined): void {
    this.#handlers.handOver(socket, unread);
  }

  forget(conn: LeanH1Connection): void {
    this.#connections.delete(conn);
    if (this.#connections.size === 0 && this.#sweep !== undefined) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }

  /** Connections being served (not counting those handed to `node:http`). */
  get size(): number {
    return this.#connections.size;
  }

  /** Closes the connections with no request in flight. */
  closeIdle(): void {
    for (const conn of [...this.#connections]) if (conn.idle) conn.socket.destroy();
  }

  /** No new requests: idle connections close now, busy ones after their response. */
  close(): void {
    for (const conn of [...this.#connections]) conn.close();
  }

  /** Runs while there are connections, so an idle proxy has no timer waking it. */
  #startSweep(): void {
    if (this.#sweep !== undefined) return;
    const { keepAliveTimeoutMs, headersTimeoutMs } = this.limits;
    // A quarter of the shorter timeout: a connection closes at most 25 % late. Capped at 5 s, so that an
    // idle proxy holding a pooled connection (the usual case between proxies) wakes rarely for it.
    const every = Math.max(
      50,
      Math.min(5000, Math.floor(Math.min(keepAliveTimeoutMs, headersTimeoutMs) / 4)),
    );
    this.#sweep = setInterval(() => {
      const now = monotonicMs();
      for (const conn of [...this.#connections]) if (conn.deadline <= now) conn.socket.destroy();
    }, every);
    this.#sweep.unref();
  }
}
