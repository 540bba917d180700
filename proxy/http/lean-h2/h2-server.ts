/**
 * The sidecar's HTTP/2 server: it takes sockets a listener accepted (mTLS
 * with ALPN h2 from a peer proxy, or h2c), runs an H2Session on each, and
 * hands every request stream to the listener as a LeanRequest and an
 * H2Response, the same request kind the HTTP/1.1 server makes.
 */

import type { Socket } from 'node:net';
import type { HttpServerLimits } from '../http-servers.js';
import { LeanRequest } from '../lean-h1/lean-request.js';
import { H2ErrorCode } from '../../../core/h2/h2-errors.js';
import { MalformedHead, requestHead } from './h2-headers.js';
import { H2Response } from './h2-response.js';
import { H2Session, type H2SessionOptions, type H2SessionOwner } from '../../../core/h2/h2-session.js';
import { IdleSweep } from '../../../core/h2/idle-sweep.js';
import type { H2Stream } from '../../../core/h2/h2-stream.js';

export type H2RequestListener = (req: LeanRequest, res: H2Response) => void;

/** Streams one client may have open at once (nghttp2's default is 100; Envoy's far more). */
export const SERVER_MAX_CONCURRENT_STREAMS = 1000;
/** Body bytes one request stream may have in flight to us: the lean HTTP/1.1 server's queue limit, times 16. */
export const SERVER_STREAM_WINDOW = 1 << 20;
export const SERVER_CONNECTION_WINDOW = 4 << 20;
/** After GOAWAY and the last stream, how long a client has to close its side (at most the idle deadline). */
const CLOSE_GRACE_MS = 5000;

export class LeanH2Server implements H2SessionOwner {
  readonly #onRequest: H2RequestListener;
  readonly #options: H2SessionOptions;
  readonly sessions = new Set<H2Session>();
  readonly #idle: IdleSweep;
  #closing = false;

  constructor(limits: HttpServerLimits, onRequest: H2RequestListener) {
    this.#onRequest = onRequest;
    this.#idle = new IdleSweep(limits.keepAliveTimeoutMs, () => this.sessions);
    this.#options = {
      maxConcurrentStreams: SERVER_MAX_CONCURRENT_STREAMS,
      streamWindow: SERVER_STREAM_WINDOW,
      connectionWindow: SERVER_CONNECTION_WINDOW,
      // HPACK counts 32 bytes per field on top of its text (RFC 7541 4.1), where an HTTP/1.1 head
      // counts 4: twice the HTTP/1.1 limit lets through what that limit lets through, and no more than that.
      maxHeaderListSize: 2 * limits.maxHeaderBytes,
      closeGraceMs: Math.min(CLOSE_GRACE_MS, limits.keepAliveTimeoutMs),
    };
  }

  /** Serves `socket`; `first` is what a protocol sniffer already read of it. */
  accept(socket: Socket, first: Buffer | undefined): void {
    const session = new H2Session(socket, false, this.#options, this);
    this.sessions.add(session);
    // A connection without open streams has the deadline of an idle keep-alive connection.
    this.#idle.start();
    if (this.#closing) session.close();
    if (first !== undefined && first.length > 0) session.receive(first);
  }

  onPeerStream(session: H2Session, stream: H2Stream, fields: string[], endStream: boolean): void {
    let head;
    try {
      head = requestHead(fields);
    } catch (err) {
      if (!(err instanceof MalformedHead)) throw err;
      stream.cancel(H2ErrorCode.PROTOCOL_ERROR);
      return;
    }
    if (head.method === 'CONNECT') {
      // Tunnels over HTTP/2 streams are not something the sidecar offers.
      stream.sendHeaders([':status', '501'], true);
      return;
    }
    if (endStream && head.contentLength > 0) {
      stream.cancel(H2ErrorCode.PROTOCOL_ERROR);
      return;
    }
    const res = new H2Response(stream, head.method === 'HEAD', head.contentLength);
    const req = new LeanRequest(
      { method: head.method, url: head.path, headers: head.headers, contentLength: endStream ? 0 : -1 },
      session.socket,
      res,
      2,
    );
    res.req = req;
    stream.handler = res;
    this.#onRequest(req, res);
  }

  onHeadersTooLarge(session: H2Session, streamId: number): void {
    session.streams.get(streamId)?.sendHeaders([':status', '431'], true);
  }

  onSessionClose(session: H2Session): void {
    this.sessions.delete(session);
  }

  /** GOAWAY to every connection: open streams finish, no new ones start. */
  close(): void {
    this.#closing = true;
    for (const s of this.sessions) s.close();
  }

  /** Connections with no open stream close now. */
  closeIdle(): void {
    for (const s of this.sessions) if (s.active === 0) s.close();
  }

  destroy(): void {
    this.#idle.stop();
    for (const s of this.sessions) s.destroy();
    this.sessions.clear();
  }
}
