/**
 * The HTTP/2 client: a pool of lean H2Sessions to one upstream endpoint
 * (usually one connection, more when the peer's MAX_CONCURRENT_STREAMS is
 * reached or maxRequestsPerConnection retires one), and the attempt that
 * runs one request as one stream. Used between proxies (mTLS, ALPN h2) and
 * to h2c apps (gRPC), with the retry classification the exchange needs:
 * connect failure, reset, refused stream.
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { H2Error, H2ErrorCode, h2ErrorName } from '../../core/h2/h2-errors.js';
import { appendFields, MalformedHead, responseHead, trailerFields } from '../http/lean-h2/h2-headers.js';
import { H2Session, type H2SessionOptions, type H2SessionOwner } from '../../core/h2/h2-session.js';
import { IdleSweep } from '../../core/h2/idle-sweep.js';
import type { H2Stream, H2StreamHandler } from '../../core/h2/h2-stream.js';
import { DirectBody } from './direct-body.js';
import {
  isTlsAlert,
  UpstreamFailure,
  type Attempt,
  type AttemptOwner,
  type UpstreamFailureKind,
} from './upstream-attempt.js';
import {
  connectUpstream,
  kConnected,
  kPeerId,
  type TaggedSocket,
  type TlsProvider,
} from './upstream-connect.js';
import { poolKey, type PoolSettings, type UpstreamPool } from './upstream-pool-types.js';

const CLIENT_SESSION: H2SessionOptions = {
  maxConcurrentStreams: 0,
  streamWindow: 1 << 20,
  connectionWindow: 4 << 20,
  maxHeaderListSize: 256 * 1024,
};

/** A response body on one stream: the receive window reopens as the consumer takes chunks. */
class H2Body extends DirectBody {
  readonly attempt: H2Attempt;
  /** Bytes delivered that the consumer has not yet asked to be followed by more. */
  held = 0;

  constructor(attempt: H2Attempt) {
    super();
    this.attempt = attempt;
  }

  resumeSink(): void {
    this.attempt.returnHeld();
  }

  override _read(): void {
    this.attempt.returnHeld();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    // Given up before the end: the stream is cancelled, the connection stays.
    if (!this.attempt.responseComplete) this.attempt.abort();
    callback(err);
  }
}

function sendHeadSoon(attempt: H2Attempt): void {
  attempt.open(false);
}

export class H2Attempt implements Attempt, H2StreamHandler {
  readonly owner: AttemptOwner;
  readonly session: H2Session;
  stream: H2Stream | undefined;
  settled = false;
  broken = false;
  responded = false;
  responseComplete = false;
  trailerHeaders: IncomingHttpHeaders | undefined;
  readonly #headRequest: boolean;
  /** The request head, until it is sent. */
  #fields: string[] | undefined;
  #body: H2Body | undefined;
  #expectedLength = -1;
  #received = 0;

  constructor(owner: AttemptOwner, session: H2Session, fields: string[], method: string) {
    this.owner = owner;
    this.session = session;
    this.#fields = fields;
    this.#headRequest = method === 'HEAD';
    session.reserved++;
    // The head waits for the caller's first write or end in this tick (so a request without a
    // body is one HEADERS frame with END_STREAM), and no longer: a streaming call may wait for
    // the response before it sends anything.
    process.nextTick(sendHeadSoon, this);
  }

  /** Sends the head: the stream gets its id now, so ids go out in order. */
  open(endStream: boolean): void {
    const fields = this.#fields;
    if (fields === undefined) return;
    this.#fields = undefined;
    const session = this.session;
    session.reserved--;
    if (this.broken) return;
    if (session.goingAway) {
      // The connection went away before this request left: nothing reached the upstream.
      this.#fail(
        session.destroyed ? this.#kindOfLoss(session.error) : UpstreamFailure.REFUSED_STREAM,
        session.error ?? new Error('the HTTP/2 connection is going away'),
      );
      return;
    }
    const stream = session.openStream(this);
    this.stream = stream;
    stream.sendHeaders(fields, endStream);
  }

  write(chunk: Buffer): boolean {
    if (this.broken || chunk.length === 0) return true;
    if (this.stream === undefined) this.open(false);
    return this.stream === undefined ? true : this.stream.write(chunk);
  }

  end(): void {
    if (this.broken) return;
    if (this.stream === undefined) this.open(true);
    else this.stream.end();
  }

  abort(): void {
    this.settled = true;
    this.broken = true;
    if (this.#fields !== undefined) {
      this.#fields = undefined;
      this.session.reserved--;
    }
    this.stream?.cancel(H2ErrorCode.CANCEL);
  }

  trailers(): IncomingHttpHeaders | undefined {
    return this.trailerHeaders;
  }

  peer(): string {
    return (this.session.socket as TaggedSocket)[kPeerId] ?? '';
  }

  /** The consumer took what it held back: the upstream may send that much more. */
  returnHeld(): void {
    const body = this.#body;
    if (body === undefined || body.held === 0) return;
    const held = body.held;
    body.held = 0;
    this.stream?.consumed(held);
  }

  // ---- Stream events ----

  onStreamHeaders(stream: H2Stream, fields: string[], endStream: boolean): void {
    try {
      if (this.responded) {
        this.trailerHeaders = trailerFields(fields);
        if (!endStream) throw new MalformedHead('trailers without END_STREAM');
        this.onStreamEnd();
        return;
      }
      const head = responseHead(fields);
      if (head.status < 200) {
        if (endStream) throw new MalformedHead('an informational response that ends the stream');
        return;
      }
      this.settled = true;
      this.responded = true;
      const noBody = this.#headRequest || head.status === 204 || head.status === 304;
      this.#expectedLength = noBody ? -1 : head.contentLength;
      const body = new H2Body(this);
      this.#body = body;
      this.owner.onAttemptResponse(this, head.status, head.headers, body);
      if (endStream) this.onStreamEnd();
    } catch (err) {
      if (!(err instanceof MalformedHead)) throw err;
      stream.cancel(H2ErrorCode.PROTOCOL_ERROR);
      this.onStreamReset(stream, H2ErrorCode.PROTOCOL_ERROR, new Error(`malformed response: ${err.message}`));
    }
  }

  onStreamData(stream: H2Stream, chunk: Buffer): void {
    this.#received += chunk.length;
    const body = this.#body;
    if (body === undefined || (this.#expectedLength >= 0 && this.#received > this.#expectedLength)) {
      stream.cancel(H2ErrorCode.PROTOCOL_ERROR);
      this.onStreamReset(
        stream,
        H2ErrorCode.PROTOCOL_ERROR,
        new Error('response body longer than its content-length'),
      );
      return;
    }
    if (body.deliver(chunk)) stream.consumed(chunk.length);
    else body.held += chunk.length;
  }

  onStreamEnd(): void {
    const stream = this.stream as H2Stream;
    if (this.#expectedLength >= 0 && this.#received !== this.#expectedLength) {
      stream.cancel(H2ErrorCode.PROTOCOL_ERROR);
      this.onStreamReset(
        stream,
        H2ErrorCode.PROTOCOL_ERROR,
        new Error('response body shorter than its content-length'),
      );
      return;
    }
    this.responseComplete = true;
    // The whole response is in and the request is not: the rest of it has nowhere to go (RFC 9113 8.1).
    if (!stream.localEnded && !stream.pendingEnd) stream.cancel(H2ErrorCode.CANCEL);
    this.#body?.finishBody();
  }

  onStreamReset(_stream: H2Stream, code: number, err: Error | undefined): void {
    // A complete response stays complete: a server may reset the stream after it (RFC 9113 8.1).
    if (this.responseComplete) return;
    this.broken = true;
    const error = err ?? new Error(`the upstream reset the stream (${h2ErrorName(code)})`);
    if (!this.settled) {
      this.#fail(
        code === H2ErrorCode.REFUSED_STREAM
          ? UpstreamFailure.REFUSED_STREAM
          : err === undefined
            ? UpstreamFailure.RESET
            : this.#kindOfLoss(err),
        error,
      );
      return;
    }
    this.#body?.breakBody(error);
  }

  onStreamDrain(): void {
    if (!this.broken) this.owner.onAttemptDrain(this);
  }

  onStreamClose(): void {}

  /**
   * A stream lost with its connection: a connect failure if the connection
   * never came up (or refused HTTP/2); on a connection that had carried
   * other streams and closed with no GOAWAY, a stale connection, as a
   * reused HTTP/1.1 connection that closes with no answer is (the request
   * may not have arrived: it goes again at once when that is safe); else a
   * reset.
   */
  #kindOfLoss(err: Error | undefined): UpstreamFailureKind {
    const connected = (this.session.socket as TaggedSocket)[kConnected] === true;
    const refusedByPeer =
      err !== undefined && (isTlsAlert(err) || (err as NodeJS.ErrnoException).code === NO_H2);
    if (!connected || refusedByPeer) return UpstreamFailure.CONNECT;
    // A protocol error is the peer's misbehaviour, not a connection that went stale under us.
    if (err instanceof H2Error) return UpstreamFailure.RESET;
    // Reused: the connection carried streams before this one (or, for one never opened, at all).
    const reused = this.stream === undefined ? this.session.streamsOpened > 0 : this.stream.id > 1;
    return reused ? UpstreamFailure.STALE_CONNECTION : UpstreamFailure.RESET;
  }

  #fail(kind: UpstreamFailureKind, err: Error): void {
    this.broken = true;
    if (this.settled) return;
    this.settled = true;
    // Asynchronously, as from a socket event: the caller may still be inside open().
    process.nextTick(reportFailure, this, kind, err);
  }
}

function reportFailure(a: H2Attempt, kind: UpstreamFailureKind, err: Error): void {
  a.owner.onAttemptFailure(a, kind, err);
}

/** The code of the error a connection fails with when the peer did not choose h2 by ALPN. */
const NO_H2 = 'MESHFED_NO_H2';

function onSecureConnect(this: TLSSocket): void {
  if (this.alpnProtocol !== 'h2') {
    this.destroy(Object.assign(new Error('the upstream did not agree to HTTP/2 (ALPN)'), { code: NO_H2 }));
  }
}

export class H2Pool implements UpstreamPool, H2SessionOwner {
  readonly key: string;
  readonly h2 = true;
  readonly #settings: PoolSettings;
  readonly #provider: TlsProvider | undefined;
  readonly #scheme: string;
  /** Sessions that take new streams. */
  readonly #sessions: H2Session[] = [];
  /** Sessions finishing their streams after GOAWAY (ours or the peer's). */
  readonly #draining = new Set<H2Session>();
  /**
   * The peer's MAX_CONCURRENT_STREAMS as its last SETTINGS said: a new
   * connection assumes it until its own SETTINGS arrive, so that a burst
   * is not refused on it. Before any SETTINGS, nghttp2's assumption of 100.
   */
  #peerStreamLimit = 100;
  #closed = false;
  readonly #idle: IdleSweep;

  constructor(settings: PoolSettings, provider: TlsProvider | undefined) {
    this.key = poolKey(settings);
    this.#settings = settings;
    this.#idle = new IdleSweep(settings.idleTimeoutMs, () => [...this.#sessions, ...this.#draining]);
    this.#provider = provider;
    this.#scheme = settings.tls ? 'https' : 'http';
  }

  open(
    owner: AttemptOwner,
    method: string,
    path: string,
    authority: string,
    headers: OutgoingHttpHeaders,
  ): Attempt {
    const fields = [':method', method, ':scheme', this.#scheme, ':path', path, ':authority', authority];
    let invalid: Error | undefined;
    try {
      appendFields(fields, headers);
    } catch (err) {
      invalid = err instanceof Error ? err : new Error(String(err));
    }
    const session = this.#sessionForRequest();
    const attempt = new H2Attempt(owner, session, fields, method);
    if (invalid !== undefined) {
      attempt.abort();
      process.nextTick(reportFailure, attempt, UpstreamFailure.RESET, invalid);
    }
    return attempt;
  }

  #sessionForRequest(): H2Session {
    const max = this.#settings.maxRequestsPerConnection;
    let chosen: H2Session | undefined;
    let retired = false;
    for (const session of this.#sessions) {
      const opened = session.streamsOpened + session.reserved;
      if (max > 0 && opened >= max) retired = true;
      else if (session.hasCapacity) {
        chosen = session;
        break;
      }
    }
    // Retired sessions finish what they have (once their last stream has left); new requests go elsewhere.
    if (retired) {
      for (const session of [...this.#sessions]) {
        if (session.streamsOpened >= max && session.reserved === 0) session.close();
      }
    }
    chosen ??= this.#connect();
    return chosen;
  }

  #connect(): H2Session {
    const settings = this.#settings;
    const socket = connectUpstream(settings, this.#provider);
    if (settings.tls) socket.once('secureConnect', onSecureConnect);
    const session = new H2Session(socket, true, CLIENT_SESSION, this);
    session.peerMaxConcurrentStreams = this.#peerStreamLimit;
    this.#sessions.push(session);
    this.#idle.start();
    if (this.#closed) session.close();
    return session;
  }

  onPeerSettings(session: H2Session): void {
    this.#peerStreamLimit = session.peerMaxConcurrentStreams;
  }

  onGoingAway(session: H2Session): void {
    const i = this.#sessions.indexOf(session);
    if (i >= 0) this.#sessions.splice(i, 1);
    if (!session.destroyed) this.#draining.add(session);
  }

  onSessionClose(session: H2Session): void {
    const i = this.#sessions.indexOf(session);
    if (i >= 0) this.#sessions.splice(i, 1);
    this.#draining.delete(session);
  }

  connections(): number {
    return this.#sessions.length + this.#draining.size;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of [...this.#sessions]) s.close();
  }

  destroy(): void {
    this.#closed = true;
    this.#idle.stop();
    for (const s of [...this.#sessions, ...this.#draining]) s.destroy();
    this.#sessions.length = 0;
    this.#draining.clear();
  }
}
