/**
 * One try of a request against one upstream: an HTTP/1.1 request on the
 * lean client (upstream-h1-conn), or an HTTP/2 stream on a shared session. Both report
 * to their owner (the exchange that decides on retries) through the same
 * three calls, and classify failures the way retry policies need them:
 * connect failure, reset, refused stream.
 *
 * Listeners are module-level functions that find their attempt through a
 * symbol on the emitter, so an attempt costs no closures.
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { Readable } from 'node:stream';
import { kConnected, kPeerId, type TaggedSocket } from './upstream-connect.js';

export const UpstreamFailure = {
  /** TCP or TLS connection could not be established (includes a peer identity mismatch). */
  CONNECT: 1,
  /** The connection or stream was reset before a complete response. */
  RESET: 2,
  /** HTTP/2 REFUSED_STREAM: the request was not processed, always safe to retry. */
  REFUSED_STREAM: 3,
  /** A keep-alive connection the server had closed: the request never reached it. */
  STALE_CONNECTION: 4,
} as const;

export type UpstreamFailureKind = (typeof UpstreamFailure)[keyof typeof UpstreamFailure];

export interface AttemptOwner {
  /** Response headers arrived; `body` streams the response (for HTTP/2 it is the stream itself). */
  onAttemptResponse(attempt: Attempt, status: number, headers: IncomingHttpHeaders, body: Readable): void;
  /** The attempt failed before response headers. Called at most once, never after onAttemptResponse. */
  onAttemptFailure(attempt: Attempt, kind: UpstreamFailureKind, err: Error): void;
  /** The request body can take more data after write() returned false. */
  onAttemptDrain(attempt: Attempt): void;
}

export interface Attempt {
  readonly owner: AttemptOwner;
  write(chunk: Buffer): boolean;
  end(): void;
  /** Abandons the attempt (timeout, retry, downstream gone): the connection is not reused. */
  abort(): void;
  /** Response trailers, once the body has ended. */
  trailers(): IncomingHttpHeaders | undefined;
  /** The upstream peer's verified SPIFFE ID ('' for plaintext). */
  peer(): string;
  /** A response arrived or the attempt failed. */
  readonly settled: boolean;
  /** Failed or aborted: the request body has nowhere to go. */
  readonly broken: boolean;
}

const kAttempt = Symbol('meshfed.attempt');

interface Tagged {
  [kAttempt]?: H2Attempt;
}

const NGHTTP2_REFUSED_STREAM = http2.constants.NGHTTP2_REFUSED_STREAM;

/** A TLS alert from the peer (bad certificate, wrong identity): a connect failure, not a reset. */
export function isTlsAlert(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === 'string' && code.startsWith('ERR_SSL_');
}

export class H2Attempt implements Attempt {
  readonly owner: AttemptOwner;
  readonly stream: ClientHttp2Stream | undefined;
  readonly session: ClientHttp2Session;
  responded = false;
  settled = false;
  broken = false;
  trailerHeaders: IncomingHttpHeaders | undefined;
  sessionError: Error | undefined;

  constructor(owner: AttemptOwner, session: ClientHttp2Session, headers: OutgoingHttpHeaders) {
    this.owner = owner;
    this.session = session;
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(headers as http2.OutgoingHttpHeaders, { endStream: false });
    } catch (err) {
      // A session that went away between lookup and use: report like a reset, asynchronously.
      this.settled = true;
      this.broken = true;
      const failure = err instanceof Error ? err : new Error(String(err));
      const socket = session.socket as TaggedSocket | undefined;
      const kind = socket?.[kConnected] === true ? UpstreamFailure.RESET : UpstreamFailure.CONNECT;
      process.nextTick(() => owner.onAttemptFailure(this, kind, failure));
      this.stream = undefined;
      return;
    }
    (stream as ClientHttp2Stream & Tagged)[kAttempt] = this;
    stream.on('response', onH2Response);
    stream.on('trailers', onH2Trailers);
    stream.on('error', onH2Error);
    stream.on('close', onH2Close);
    stream.on('drain', onH2Drain);
    this.stream = stream;
  }

  write(chunk: Buffer): boolean {
    return this.stream === undefined ? true : this.stream.write(chunk);
  }

  end(): void {
    if (this.stream !== undefined && !this.stream.writableEnded) this.stream.end();
  }

  abort(): void {
    this.settled = true;
    this.broken = true;
    if (this.stream !== undefined && !this.stream.destroyed)
      this.stream.close(http2.constants.NGHTTP2_CANCEL);
  }

  trailers(): IncomingHttpHeaders | undefined {
    return this.trailerHeaders;
  }

  peer(): string {
    const socket = this.session.socket as TaggedSocket | undefined;
    return socket?.[kPeerId] ?? '';
  }
}

function onH2Response(
  this: ClientHttp2Stream & Tagged,
  headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader,
): void {
  const a = this[kAttempt];
  if (a === undefined || !(a instanceof H2Attempt) || a.settled) return;
  const status = headers[':status'] ?? 502;
  // 1xx informational headers are not the response.
  if (status >= 100 && status < 200) return;
  a.settled = true;
  a.responded = true;
  a.owner.onAttemptResponse(a, status, headers as IncomingHttpHeaders, this);
}

function onH2Trailers(this: ClientHttp2Stream & Tagged, trailers: http2.IncomingHttpHeaders): void {
  const a = this[kAttempt];
  if (a instanceof H2Attempt) a.trailerHeaders = trailers as IncomingHttpHeaders;
}

function h2FailureKind(a: H2Attempt, stream: ClientHttp2Stream): UpstreamFailureKind {
  if (stream.rstCode === NGHTTP2_REFUSED_STREAM) return UpstreamFailure.REFUSED_STREAM;
  const socket = a.session.socket as TaggedSocket | undefined;
  return socket?.[kConnected] === true && !(a.sessionError !== undefined && isTlsAlert(a.sessionError))
    ? UpstreamFailure.RESET
    : UpstreamFailure.CONNECT;
}

function onH2Error(this: ClientHttp2Stream & Tagged, err: Error): void {
  const a = this[kAttempt];
  if (!(a instanceof H2Attempt)) return;
  a.broken = true;
  if (a.settled) return;
  a.settled = true;
  a.sessionError = err;
  a.owner.onAttemptFailure(a, h2FailureKind(a, this), err);
}

function onH2Close(this: ClientHttp2Stream & Tagged): void {
  const a = this[kAttempt];
  if (!(a instanceof H2Attempt)) return;
  a.broken = true;
  if (a.settled) return;
  a.settled = true;
  a.owner.onAttemptFailure(
    a,
    h2FailureKind(a, this),
    new Error(`stream closed with code ${this.rstCode} before a response`),
  );
}

function onH2Drain(this: ClientHttp2Stream & Tagged): void {
  const a = this[kAttempt];
  if (a instanceof H2Attempt) a.owner.onAttemptDrain(a);
}
