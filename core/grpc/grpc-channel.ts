/**
 * A gRPC client over node:http2 for the workload side's calls to its zone
 * CP: the MDS stream and the CA's Sign (core/mds/mds-client.ts,
 * core/ca/ca-client.ts), made by the sidecar, the gateway and the VM agent.
 * Those two calls need TLS with a pinned root, metadata, length-prefixed
 * messages, status from trailers, deadlines and keepalive pings; @grpc/grpc-js
 * brings a channel stack, name resolution, load balancing and retries on
 * top, ~4 MiB of resident memory in every sidecar (measured on Node 20).
 * The zone CP, one process per zone, keeps grpc-js as its server.
 *
 * HTTP/2 itself (flow control, GOAWAY, stream limits) is node:http2's.
 * Failures end a call with a GrpcStatusError whose code follows gRPC's own
 * mapping (an unreachable server is UNAVAILABLE, a reset stream is what its
 * RST_STREAM code means, a non-200 answer is what its HTTP status means).
 */

import { EventEmitter } from 'node:events';
import http2, {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type Http2Session,
  type IncomingHttpHeaders,
} from 'node:http2';
import type { PeerCertificate } from 'node:tls';
import { GrpcCode, grpcCodeForHttpStatus, GrpcStatusError } from './grpc-codes.js';
import { encodeGrpcFrame, GrpcFrameDecoder } from './grpc-frames.js';

export interface GrpcChannelOptions {
  /** host:port, or [v6]:port. */
  address: string;
  tls: {
    /** PEM roots the server's certificate must chain to. */
    ca: string;
    /** A client certificate chain and key, for mTLS. */
    cert?: string;
    key?: string;
    /** SNI, and the name checkServerIdentity is asked about. */
    servername: string;
    checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined;
  };
  /** `:authority` of every call. */
  authority: string;
  /** Ping the server this often while connected (0: never); no answer within `keepaliveTimeoutMs` drops the connection. */
  keepaliveMs?: number;
  keepaliveTimeoutMs?: number;
  /** Give up on a connection not established (TCP, TLS, HTTP/2 settings) within this; default 20 s, as grpc-js. */
  connectTimeoutMs?: number;
  /** Largest message accepted from the server; default 4 MiB, as gRPC's. */
  maxReceiveMessageBytes?: number;
}

/** Request metadata: lower-case names, ASCII values. */
export type GrpcMetadata = Record<string, string>;

/** What an RST_STREAM code means as a gRPC status (as grpc-js maps it). */
function codeOfReset(rstCode: number): number {
  const c = http2.constants;
  if (rstCode === c.NGHTTP2_REFUSED_STREAM) return GrpcCode.UNAVAILABLE;
  if (rstCode === c.NGHTTP2_CANCEL) return GrpcCode.CANCELLED;
  if (rstCode === c.NGHTTP2_ENHANCE_YOUR_CALM) return GrpcCode.RESOURCE_EXHAUSTED;
  if (rstCode === c.NGHTTP2_INADEQUATE_SECURITY) return GrpcCode.PERMISSION_DENIED;
  return GrpcCode.INTERNAL;
}

/** `grpc-message` is percent-encoded UTF-8. */
function decodeGrpcMessage(value: string | string[] | undefined): string {
  const raw = Array.isArray(value) ? value.join(',') : (value ?? '');
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * One call on a channel. Events: `metadata` (the response headers: the
 * server accepted the call), `data` (one message, a Buffer), then exactly
 * one of `end` (status OK) or `error` (a GrpcStatusError).
 */
export class GrpcCall extends EventEmitter {
  readonly #stream: ClientHttp2Stream;
  readonly #decoder: GrpcFrameDecoder;
  readonly #session: () => Error | undefined;
  /** The connection the call runs on: gone under it means the connection dropped. */
  readonly #connection: Http2Session | undefined;
  #status: GrpcStatusError | { code: 0 } | undefined;
  #transportError: Error | undefined;
  #finished = false;

  constructor(
    stream: ClientHttp2Stream,
    maxReceiveMessageBytes: number,
    sessionError: () => Error | undefined,
  ) {
    super();
    this.#stream = stream;
    this.#decoder = new GrpcFrameDecoder(maxReceiveMessageBytes);
    this.#session = sessionError;
    this.#connection = stream.session;
    stream.on('response', (headers) => this.#onHeaders(headers));
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    stream.on('trailers', (trailers) => this.#onStatus(trailers));
    // The server's side is done: with a status the call is over, even while this side still
    // could write (HTTP/2 would keep the stream half-open); the stream is closed for it.
    stream.on('end', () => this.#onServerDone());
    stream.on('error', (err: Error) => (this.#transportError ??= err));
    stream.on('close', () => this.#onClose());
  }

  /** Sends one message; false when HTTP/2 flow control asks the caller to wait for `drain`. */
  write(message: Buffer): boolean {
    if (this.#finished || this.#stream.destroyed) return false;
    return this.#stream.write(encodeGrpcFrame(message));
  }

  /** No more messages from this side. */
  end(): void {
    if (!this.#stream.destroyed) this.#stream.end();
  }

  /** Abandons the call: the server sees a CANCEL, this side an `error` with `code`. */
  cancel(code: number = GrpcCode.CANCELLED, details = 'cancelled by the client'): void {
    if (this.#finished) return;
    this.#finish(new GrpcStatusError(code, details));
    this.#stream.close(http2.constants.NGHTTP2_CANCEL);
  }

  #onHeaders(headers: IncomingHttpHeaders): void {
    const status = Number(headers[':status']);
    if (status !== 200) {
      this.#status = new GrpcStatusError(grpcCodeForHttpStatus(status), `the server answered HTTP ${status}`);
      return;
    }
    const type = headers['content-type'] ?? '';
    if (!type.startsWith('application/grpc')) {
      this.#status = new GrpcStatusError(
        GrpcCode.UNKNOWN,
        `the server answered with content-type ${type || '(none)'}, not gRPC`,
      );
      return;
    }
    // A trailers-only answer carries its status in the headers.
    if (headers['grpc-status'] !== undefined) this.#onStatus(headers);
    else this.emit('metadata', headers);
  }

  #onStatus(headers: IncomingHttpHeaders): void {
    if (this.#status instanceof GrpcStatusError) return;
    const raw = headers['grpc-status'];
    const code = Number(raw);
    if (!Number.isInteger(code) || code < GrpcCode.OK || code > GrpcCode.UNAUTHENTICATED) {
      // A code this side does not know is UNKNOWN (grpc/doc/statuscodes.md).
      const why = decodeGrpcMessage(headers['grpc-message']);
      this.#status = new GrpcStatusError(
        GrpcCode.UNKNOWN,
        `the server sent grpc-status ${String(raw)}: ${why}`,
      );
    } else {
      this.#status =
        code === GrpcCode.OK
          ? { code: 0 }
          : new GrpcStatusError(code, decodeGrpcMessage(headers['grpc-message']));
    }
  }

  #onData(chunk: Buffer): void {
    // After a refusing status (HTTP error, not gRPC) the body is not gRPC messages.
    if (this.#finished || this.#status instanceof GrpcStatusError) return;
    let messages: Buffer[];
    try {
      messages = this.#decoder.push(chunk);
    } catch (err) {
      this.#finish(err as GrpcStatusError);
      this.#stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    for (const message of messages) {
      // A listener may have cancelled the call.
      if (this.#finished) break;
      this.emit('data', message);
    }
  }

  #onServerDone(): void {
    if (this.#finished) return;
    if (this.#status !== undefined) {
      this.#finishWithStatus(this.#status);
      if (!this.#stream.closed) this.#stream.close(http2.constants.NGHTTP2_NO_ERROR);
      return;
    }
    // No status: a dropped connection also ends the stream this way, and Node marks the
    // connection destroyed just after. Decide once that has happened (#onClose, or here).
    setImmediate(() => {
      if (this.#finished) return;
      if (this.#connection?.destroyed === true) {
        this.#finish(new GrpcStatusError(GrpcCode.UNAVAILABLE, 'the connection dropped'));
        return;
      }
      this.#finish(new GrpcStatusError(GrpcCode.INTERNAL, 'the server ended the call without a gRPC status'));
      if (!this.#stream.closed) this.#stream.close(http2.constants.NGHTTP2_NO_ERROR);
    });
  }

  #finishWithStatus(status: GrpcStatusError | { code: 0 }): void {
    if (status instanceof GrpcStatusError) this.#finish(status);
    else if (this.#decoder.partialBytes > 0)
      this.#finish(new GrpcStatusError(GrpcCode.INTERNAL, 'the call ended inside a message'));
    else this.#finish(undefined);
  }

  #onClose(): void {
    if (this.#finished) return;
    if (this.#status !== undefined) return this.#finishWithStatus(this.#status);
    // No status: the stream was reset, or the connection failed or dropped.
    const lost = this.#session() ?? this.#transportError;
    const rst = this.#stream.rstCode;
    if (lost !== undefined && (lost as NodeJS.ErrnoException).code !== 'ERR_HTTP2_STREAM_ERROR') {
      this.#finish(new GrpcStatusError(GrpcCode.UNAVAILABLE, lost.message));
    } else if (this.#connection?.destroyed === true) {
      // The connection went away under the call (Node resets its streams with CANCEL then).
      this.#finish(new GrpcStatusError(GrpcCode.UNAVAILABLE, 'the connection dropped'));
    } else if (rst !== undefined && rst !== http2.constants.NGHTTP2_NO_ERROR) {
      this.#finish(
        new GrpcStatusError(codeOfReset(rst), `the server reset the stream (HTTP/2 error ${rst})`),
      );
    } else {
      this.#finish(new GrpcStatusError(GrpcCode.INTERNAL, 'the server ended the call without a gRPC status'));
    }
  }

  #finish(error: GrpcStatusError | undefined): void {
    if (this.#finished) return;
    this.#finished = true;
    if (error === undefined) this.emit('end');
    else this.emit('error', error);
  }
}

/** A connection to one server, opened on the first call and again after it drops. */
export class GrpcChannel {
  readonly #options: GrpcChannelOptions;
  #session: ClientHttp2Session | undefined;
  /** Why the current session failed, for the calls on it (each session has its own). */
  #sessionFailure: { error?: Error } = {};
  #closed = false;

  constructor(options: GrpcChannelOptions) {
    this.#options = options;
  }

  /**
   * A call that streams both ways (`write` messages, `end` when done).
   * Throws when the call cannot even start: the channel is closed, or
   * node:http2 refuses the address as it stands.
   */
  stream(method: string, metadata: GrpcMetadata = {}): GrpcCall {
    return this.#call(method, metadata, {});
  }

  /**
   * One request, one response; rejects with a GrpcStatusError
   * (DEADLINE_EXCEEDED after `deadlineMs`, UNAVAILABLE when the call cannot
   * start). Never throws.
   */
  unary(method: string, request: Buffer, metadata: GrpcMetadata, deadlineMs: number): Promise<Buffer> {
    let call: GrpcCall;
    try {
      call = this.#call(method, metadata, { 'grpc-timeout': `${Math.max(1, Math.ceil(deadlineMs))}m` });
    } catch (err) {
      return Promise.reject(
        err instanceof GrpcStatusError
          ? err
          : new GrpcStatusError(GrpcCode.UNAVAILABLE, (err as Error).message),
      );
    }
    return new Promise<Buffer>((resolve, reject) => {
      let response: Buffer | undefined;
      const timer = setTimeout(
        () => call.cancel(GrpcCode.DEADLINE_EXCEEDED, 'deadline exceeded'),
        deadlineMs,
      );
      call.on('data', (message: Buffer) => {
        if (response === undefined) response = message;
        else call.cancel(GrpcCode.INTERNAL, 'the server sent more than one response');
      });
      call.on('error', (err: GrpcStatusError) => {
        clearTimeout(timer);
        reject(err);
      });
      call.on('end', () => {
        clearTimeout(timer);
        if (response === undefined)
          reject(new GrpcStatusError(GrpcCode.INTERNAL, 'the server sent no response'));
        else resolve(response);
      });
      call.write(request);
      call.end();
    });
  }

  /** Closes the connection once its calls are done; no new calls. */
  close(): void {
    this.#closed = true;
    const session = this.#session;
    // A session still connecting would only be ended once connected: drop it now.
    if (session?.connecting === true) session.destroy();
    else session?.close();
  }

  #call(method: string, metadata: GrpcMetadata, extra: Record<string, string>): GrpcCall {
    if (this.#closed) throw new GrpcStatusError(GrpcCode.UNAVAILABLE, 'the channel is closed');
    const session = this.#connect();
    const failure = this.#sessionFailure;
    const stream = session.request({
      ...metadata,
      ...extra,
      ':method': 'POST',
      ':path': method,
      ':authority': this.#options.authority,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'meshfed-grpc',
    });
    return new GrpcCall(stream, this.#options.maxReceiveMessageBytes ?? 4 * 1024 * 1024, () => failure.error);
  }

  #connect(): ClientHttp2Session {
    const current = this.#session;
    if (current !== undefined && !current.closed && !current.destroyed) return current;
    const { tls } = this.#options;
    const failure: { error?: Error } = {};
    const session = http2.connect(`https://${this.#options.address}`, {
      ca: tls.ca,
      ...(tls.cert === undefined || tls.key === undefined ? {} : { cert: tls.cert, key: tls.key }),
      servername: tls.servername,
      checkServerIdentity: tls.checkServerIdentity,
    });
    // The calls on it report the failure; the session only remembers it for them.
    session.on('error', (err: Error) => (failure.error ??= err));
    // A blackholed address would otherwise hold a call for the kernel's SYN retries (~2 min).
    const connectTimeout = this.#options.connectTimeoutMs ?? 20_000;
    const connecting = setTimeout(
      () =>
        session.destroy(new Error(`no connection to ${this.#options.address} within ${connectTimeout} ms`)),
      connectTimeout,
    );
    connecting.unref();
    // Connected is when the server's SETTINGS arrive: a TLS endpoint that never speaks HTTP/2 is not.
    session.once('remoteSettings', () => clearTimeout(connecting));
    const keepalive = this.#startKeepalive(session);
    session.once('close', () => {
      clearTimeout(connecting);
      if (keepalive !== undefined) clearInterval(keepalive);
      if (this.#session === session) this.#session = undefined;
    });
    this.#session = session;
    this.#sessionFailure = failure;
    return session;
  }

  #startKeepalive(session: ClientHttp2Session): NodeJS.Timeout | undefined {
    const every = this.#options.keepaliveMs ?? 0;
    if (every <= 0) return undefined;
    const timeout = this.#options.keepaliveTimeoutMs ?? 20_000;
    let awaiting = false;
    const timer = setInterval(() => {
      if (session.destroyed || session.closed) {
        clearInterval(timer);
        return;
      }
      if (awaiting || session.connecting) return;
      awaiting = true;
      const overdue = setTimeout(
        () => session.destroy(new Error(`the server did not answer a keepalive ping within ${timeout} ms`)),
        timeout,
      );
      overdue.unref();
      session.ping((err) => {
        awaiting = false;
        clearTimeout(overdue);
        if (err && !session.destroyed) session.destroy(err);
      });
    }, every);
    timer.unref();
    // After a GOAWAY Node no longer pings; the calls still open could then hang on a server that
    // died before ending them. They get one keepalive period (and its timeout) to end.
    session.once('goaway', () => {
      const last = setTimeout(
        () => session.destroy(new Error('the server went away (GOAWAY) and did not end its calls')),
        every + timeout,
      );
      last.unref();
      session.once('close', () => clearTimeout(last));
    });
    return timer;
  }
}
