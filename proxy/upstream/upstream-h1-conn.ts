/**
 * The lean HTTP/1.1 upstream client: one keep-alive connection carrying one
 * request at a time (no pipelining), the attempt that owns it for the
 * length of an exchange, and the response body stream. It replaces
 * `http.Agent` + `ClientRequest` + `IncomingMessage` on the hot path: the
 * request head goes out as one latin1 string (with the body, corked), the
 * response head is parsed by upstream-h1-head, and a body arrives as
 * slices of the socket's own buffers.
 *
 * Socket listeners are installed once per connection and find the
 * connection through a symbol: a request costs no closures.
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { DirectBody } from './direct-body.js';
import { kConnected, kPeerId, type TaggedSocket } from './upstream-connect.js';
import { H1ProtocolError, headEnd } from '../http/h1-fields.js';
import {
  MAX_CHUNK_LINE_BYTES,
  MAX_RESPONSE_HEAD_BYTES,
  framingLines,
  lineEnd,
  parseChunkSize,
  parseResponseHead,
  parseTrailers,
  requestHeadStart,
  type RequestFraming,
} from './upstream-h1-head.js';
import {
  UpstreamFailure,
  isTlsAlert,
  type Attempt,
  type AttemptOwner,
  type UpstreamFailureKind,
} from './upstream-attempt.js';

/** Body bytes an attempt holds while it waits for a connection (a socket's default high-water mark). */
const PENDING_HIGH_WATER_BYTES = 16 * 1024;

/** What a connection needs from its pool. */
export interface H1ConnPool {
  /** The response is complete and the connection may carry another request. */
  release(conn: H1Conn): void;
  /** The connection closed (for whatever reason). */
  removed(conn: H1Conn): void;
  /** Requests per connection before it is retired (0 = unlimited). */
  readonly maxRequestsPerConnection: number;
  /** The pool is closing: connections are not reused. */
  readonly closing: boolean;
}

const kConn = Symbol('meshfed.h1conn');

interface ConnSocket extends TaggedSocket {
  [kConn]?: H1Conn;
}

// Parser states.
const S_IDLE = 0;
const S_HEAD = 1;
const S_LENGTH = 2;
const S_CHUNK_SIZE = 3;
const S_CHUNK_DATA = 4;
const S_CHUNK_CRLF = 5;
const S_TRAILERS = 6;
const S_UNTIL_CLOSE = 7;

const LAST_CHUNK = '0\r\n\r\n';
const CRLF = '\r\n';

export class H1Conn {
  readonly socket: ConnSocket;
  readonly pool: H1ConnPool;
  attempt: H1Attempt | undefined;
  /** Requests started on this connection. */
  requests = 0;
  /** When it went back to the pool (ms, Date.now()). */
  idleSince = 0;
  closed = false;
  #state = S_IDLE;
  /** Bytes still expected in this body part (S_LENGTH, S_CHUNK_DATA) or CRLF bytes (S_CHUNK_CRLF). */
  #remaining = 0;
  /** Unparsed bytes carried over between reads (a head, size line or trailer block cut in two). */
  #carry: Buffer | undefined;
  /** The current response asked for the connection to close (or its framing cannot be trusted after). */
  #closeAfter = false;
  #error: Error | undefined;
  #left = false;

  constructor(socket: TaggedSocket, pool: H1ConnPool) {
    this.socket = socket as ConnSocket;
    this.pool = pool;
    this.socket[kConn] = this;
    socket.on('data', onSocketData);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    socket.on('drain', onSocketDrain);
  }

  /** Usable for a new request. */
  get usable(): boolean {
    return !this.closed && !this.socket.destroyed && this.socket.writable;
  }

  bind(attempt: H1Attempt): void {
    this.attempt = attempt;
    this.requests++;
    this.#state = S_HEAD;
    this.#closeAfter = false;
    attempt.conn = this;
    attempt.reused = this.requests > 1;
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    // Counted as gone now, not when the close event comes round.
    this.#leavePool();
  }

  #leavePool(): void {
    if (this.#left) return;
    this.#left = true;
    this.pool.removed(this);
  }

  write(data: string | Buffer): boolean {
    const s = this.socket;
    // A socket that never started connecting (no certificate yet) is about to fail with the reason why.
    if (s.destroyed || (s.pending && !s.connecting)) return true;
    return typeof data === 'string' ? s.write(data, 'latin1') : s.write(data);
  }

  onError(err: Error): void {
    this.#error ??= err;
  }

  onDrain(): void {
    const a = this.attempt;
    if (a !== undefined && !a.broken) a.owner.onAttemptDrain(a);
  }

  /** The response body can take more: read again. */
  resumeReading(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  onData(chunk: Buffer): void {
    const a = this.attempt;
    if (a === undefined || this.#state === S_IDLE) {
      // Bytes nobody asked for (the server spoke out of turn): nothing after them can be trusted.
      this.destroy();
      return;
    }
    a.responseBytes += chunk.length;
    let buf = chunk;
    if (this.#carry !== undefined) {
      buf = Buffer.concat([this.#carry, chunk]);
      this.#carry = undefined;
    }
    try {
      this.#parse(a, buf);
    } catch (err) {
      this.#protocolError(a, err instanceof Error ? err : new Error(String(err)));
    }
  }

  #parse(a: H1Attempt, buf: Buffer): void {
    let pos = 0;
    const len = buf.length;
    while (pos < len) {
      // The owner may have given up on the attempt during a callback.
      if (this.attempt !== a) return;
      switch (this.#state) {
        case S_HEAD: {
          const end = headEnd(buf, pos);
          if (end < 0) {
            if (len - pos > MAX_RESPONSE_HEAD_BYTES)
              throw new H1ProtocolError('HEADERS_TOO_LARGE', 'upstream response headers too large');
            this.#carry = buf.subarray(pos);
            return;
          }
          if (end - pos > MAX_RESPONSE_HEAD_BYTES)
            throw new H1ProtocolError('HEADERS_TOO_LARGE', 'upstream response headers too large');
          const head = parseResponseHead(buf.toString('latin1', pos, end), a.method === 'HEAD');
          pos = end;
          if (head.status < 200) {
            // 100 Continue, 103 Early Hints: informational, the response follows. 101 was never asked for.
            if (head.status === 101)
              throw new H1ProtocolError('UNEXPECTED_UPGRADE', 'upstream switched protocols unasked');
            continue;
          }
          this.#closeAfter = head.close;
          if (head.length === 0) this.#state = S_IDLE;
          else if (head.length > 0) {
            this.#state = S_LENGTH;
            this.#remaining = head.length;
          } else if (head.length === -1) this.#state = S_CHUNK_SIZE;
          else this.#state = S_UNTIL_CLOSE;
          a.onHead(head.status, head.headers);
          if (this.#state === S_IDLE) this.#complete(a, pos < len);
          break;
        }
        case S_LENGTH: {
          const take = Math.min(this.#remaining, len - pos);
          a.pushBody(pos === 0 && take === len ? buf : buf.subarray(pos, pos + take));
          pos += take;
          this.#remaining -= take;
          if (this.#remaining === 0) {
            this.#state = S_IDLE;
            this.#complete(a, pos < len);
          }
          break;
        }
        case S_UNTIL_CLOSE:
          a.pushBody(pos === 0 ? buf : buf.subarray(pos));
          pos = len;
          break;
        case S_CHUNK_SIZE: {
          const eol = lineEnd(buf, pos);
          if (eol < 0) {
            if (len - pos > MAX_CHUNK_LINE_BYTES)
              throw new H1ProtocolError('INVALID_CHUNK', 'chunk size line too long');
            this.#carry = buf.subarray(pos);
            return;
          }
          if (eol - pos > MAX_CHUNK_LINE_BYTES)
            throw new H1ProtocolError('INVALID_CHUNK', 'chunk size line too long');
          const size = parseChunkSize(buf.toString('latin1', pos, eol));
          pos = eol + 2;
          if (size === 0) this.#state = S_TRAILERS;
          else {
            this.#state = S_CHUNK_DATA;
            this.#remaining = size;
          }
          break;
        }
        case S_CHUNK_DATA: {
          const take = Math.min(this.#remaining, len - pos);
          a.pushBody(buf.subarray(pos, pos + take));
          pos += take;
          this.#remaining -= take;
          if (this.#remaining === 0) {
            this.#state = S_CHUNK_CRLF;
            this.#remaining = 2;
          }
          break;
        }
        case S_CHUNK_CRLF: {
          const expected = this.#remaining === 2 ? 13 : 10;
          if (buf[pos] !== expected)
            throw new H1ProtocolError('INVALID_CHUNK', 'chunk data not followed by CRLF');
          pos++;
          if (--this.#remaining === 0) this.#state = S_CHUNK_SIZE;
          break;
        }
        case S_TRAILERS: {
          // Either the blank line at once, or trailer fields ending with one.
          if (len - pos >= 2 && buf[pos] === 13 && buf[pos + 1] === 10) {
            pos += 2;
          } else {
            const end = headEnd(buf, pos);
            if (end < 0) {
              if (len - pos > MAX_RESPONSE_HEAD_BYTES)
                throw new H1ProtocolError('INVALID_TRAILER', 'upstream response trailers too large');
              this.#carry = buf.subarray(pos);
              return;
            }
            a.trailerHeaders = parseTrailers(buf.toString('latin1', pos, end - 4));
            pos = end;
          }
          this.#state = S_IDLE;
          this.#complete(a, pos < len);
          break;
        }
        default:
          // S_IDLE with bytes left: handled by #complete (extra bytes close the connection).
          return;
      }
    }
  }

  /** The response is complete. `extra`: bytes followed it that no request asked for. */
  #complete(a: H1Attempt, extra: boolean): void {
    this.attempt = undefined;
    a.conn = undefined;
    a.peerId = this.socket[kPeerId] ?? '';
    a.responseComplete = true;
    const max = this.pool.maxRequestsPerConnection;
    const reuse =
      !extra &&
      !this.#closeAfter &&
      a.ended &&
      !a.broken &&
      !this.pool.closing &&
      !(max > 0 && this.requests >= max);
    a.endBody();
    if (reuse) {
      // A body the consumer had not drained yet left the socket paused: the next response must flow.
      this.resumeReading();
      this.pool.release(this);
    } else this.destroy();
  }

  #protocolError(a: H1Attempt, err: Error): void {
    this.#error = err;
    this.destroy();
    // The close handler reports it (a failure before the head, a broken body after).
    this.#fail(a);
  }

  onClose(): void {
    this.closed = true;
    const a = this.attempt;
    this.attempt = undefined;
    this.#leavePool();
    if (a === undefined) return;
    if (this.#state === S_UNTIL_CLOSE && this.#error === undefined && a.responded) {
      // The body ran until the connection closed: that was its framing.
      a.conn = undefined;
      a.peerId = this.socket[kPeerId] ?? '';
      a.responseComplete = true;
      a.endBody();
      return;
    }
    this.#fail(a);
  }

  #fail(a: H1Attempt): void {
    if (this.attempt === a) this.attempt = undefined;
    a.peerId = this.socket[kPeerId] ?? '';
    a.conn = undefined;
    const err = this.#error ?? Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    if (a.responded) {
      a.breakBody(err);
      return;
    }
    let kind: UpstreamFailureKind = UpstreamFailure.CONNECT;
    // With TLS 1.3 the server judges our certificate after our handshake completed: its alert is still a connect failure.
    if (this.socket[kConnected] === true && !isTlsAlert(err)) {
      kind =
        a.reused && a.responseBytes === 0 && !(err instanceof H1ProtocolError)
          ? UpstreamFailure.STALE_CONNECTION
          : UpstreamFailure.RESET;
    }
    a.fail(kind, err);
  }
}

function onSocketData(this: ConnSocket, chunk: Buffer): void {
  this[kConn]?.onData(chunk);
}

function onSocketError(this: ConnSocket, err: Error): void {
  this[kConn]?.onError(err);
}

function onSocketClose(this: ConnSocket): void {
  this[kConn]?.onClose();
}

function onSocketDrain(this: ConnSocket): void {
  this[kConn]?.onDrain();
}

function uncork(socket: TaggedSocket): void {
  socket.uncork();
}

/** A response body: slices of the socket's reads, with backpressure to the socket. */
export class H1Body extends DirectBody {
  readonly attempt: H1Attempt;

  constructor(attempt: H1Attempt) {
    super();
    this.attempt = attempt;
  }

  /** The sink can take more after refusing a chunk. */
  resumeSink(): void {
    this.attempt.conn?.resumeReading();
  }

  override _read(): void {
    this.attempt.conn?.resumeReading();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    // Given up before the end: the rest of it would arrive on a connection no one reads.
    if (!this.attempt.responseComplete) this.attempt.dropConnection();
    callback(err);
  }
}

/** What an attempt needs from its pool. */
export interface H1AttemptPool {
  /** Removes a waiting attempt that gave up. */
  cancel(attempt: H1Attempt): void;
}

/** One try of a request on the lean client. */
export class H1Attempt implements Attempt {
  readonly owner: AttemptOwner;
  readonly pool: H1AttemptPool;
  readonly method: string;
  /** Request line, Host and headers; the framing and blank line follow when the body's shape is known. */
  readonly #head: string;
  readonly #hasLength: boolean;
  conn: H1Conn | undefined;
  reused = false;
  settled = false;
  broken = false;
  responded = false;
  responseComplete = false;
  ended = false;
  responseBytes = 0;
  peerId = '';
  trailerHeaders: IncomingHttpHeaders | undefined;
  #headSent = false;
  #chunked = false;
  /** Body chunks written before a connection was free. */
  #pending: Buffer[] | undefined;
  #pendingBytes = 0;
  #body: H1Body | undefined;

  constructor(
    owner: AttemptOwner,
    pool: H1AttemptPool,
    method: string,
    path: string,
    authority: string,
    headers: OutgoingHttpHeaders,
  ) {
    this.owner = owner;
    this.pool = pool;
    this.method = method;
    let head = '';
    try {
      head = requestHeadStart(method, path, authority, headers);
    } catch (err) {
      this.settled = true;
      this.broken = true;
      // Reported like any failure: asynchronously, after the caller has stored the attempt.
      process.nextTick(reportInvalid, this, err);
    }
    this.#head = head;
    this.#hasLength = headers['content-length'] !== undefined;
  }

  /** A connection is ours: send what was written while waiting. */
  start(): void {
    const pending = this.#pending;
    const heldBack = this.#pendingBytes >= PENDING_HIGH_WATER_BYTES;
    this.#pending = undefined;
    this.#pendingBytes = 0;
    let flowing = true;
    if (pending !== undefined) for (const chunk of pending) flowing = this.write(chunk);
    if (this.ended) this.#finishRequest();
    // The caller stopped reading when the wait buffer filled: let it go on now,
    // unless the socket is full too (then its 'drain' does it).
    else if (heldBack && flowing && !this.broken) this.owner.onAttemptDrain(this);
  }

  #sendHead(framing: RequestFraming): void {
    this.#headSent = true;
    this.#chunked = framing === 'chunked';
    this.conn?.write(this.#head + framingLines(this.method, framing));
  }

  write(chunk: Buffer): boolean {
    if (this.broken || chunk.length === 0) return true;
    const conn = this.conn;
    if (conn === undefined) {
      if (this.settled) return true;
      // Waiting for a connection: hold at most a socket buffer's worth, as a
      // socket would, so a large upload is read only as fast as it can leave.
      (this.#pending ??= []).push(chunk);
      this.#pendingBytes += chunk.length;
      return this.#pendingBytes < PENDING_HIGH_WATER_BYTES;
    }
    if (!this.#headSent) {
      // The head and the first bytes of the body leave in one write.
      conn.socket.cork();
      process.nextTick(uncork, conn.socket);
      this.#sendHead(this.#hasLength ? 'length' : 'chunked');
    }
    if (this.#chunked) {
      // Size line, data and CRLF leave in one write.
      conn.socket.cork();
      conn.write(chunk.length.toString(16) + CRLF);
      conn.write(chunk);
      const flowing = conn.write(CRLF);
      conn.socket.uncork();
      return flowing;
    }
    return conn.write(chunk);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.broken || this.conn === undefined) return;
    this.#finishRequest();
  }

  #finishRequest(): void {
    if (!this.#headSent) this.#sendHead(this.#hasLength ? 'length' : 'empty');
    else if (this.#chunked) this.conn?.write(LAST_CHUNK);
  }

  abort(): void {
    this.settled = true;
    this.broken = true;
    this.#pending = undefined;
    this.pool.cancel(this);
    this.dropConnection();
    const body = this.#body;
    if (body !== undefined && !this.responseComplete && !body.destroyed) body.destroy();
  }

  /** Closes the connection under a request that will not complete (it cannot carry another). */
  dropConnection(): void {
    const conn = this.conn;
    if (conn === undefined) return;
    this.peerId = conn.socket[kPeerId] ?? '';
    this.conn = undefined;
    if (conn.attempt === this) conn.attempt = undefined;
    conn.destroy();
  }

  trailers(): IncomingHttpHeaders | undefined {
    return this.trailerHeaders;
  }

  peer(): string {
    return this.conn?.socket[kPeerId] ?? this.peerId;
  }

  onHead(status: number, headers: IncomingHttpHeaders): void {
    if (this.settled) return;
    this.settled = true;
    this.responded = true;
    const body = new H1Body(this);
    this.#body = body;
    this.owner.onAttemptResponse(this, status, headers, body);
  }

  pushBody(chunk: Buffer): void {
    if (this.#body?.deliver(chunk) === false) this.conn?.socket.pause();
  }

  endBody(): void {
    this.#body?.finishBody();
  }

  /** The connection failed after the head: the consumer sees 'aborted' (and 'error' if it listens). */
  breakBody(err: Error): void {
    this.broken = true;
    this.#body?.breakBody(err);
  }

  fail(kind: UpstreamFailureKind, err: Error): void {
    this.broken = true;
    if (this.settled) return;
    this.settled = true;
    this.owner.onAttemptFailure(this, kind, err);
  }
}

function reportInvalid(a: H1Attempt, err: unknown): void {
  a.pool.cancel(a);
  a.owner.onAttemptFailure(a, UpstreamFailure.RESET, err instanceof Error ? err : new Error(String(err)));
}
