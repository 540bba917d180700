/**
 * A gRPC client over the proxy's own HTTP/2 (core/h2) for the workload
 * side's calls to its zone CP: the MDS stream and the CA's Sign
 * (core/mds/mds-client.ts, core/ca/ca-client.ts), made by the sidecar, the
 * gateway and the VM agent. Those two calls need TLS with a pinned root,
 * metadata, length-prefixed messages, status from trailers, deadlines and
 * keepalive pings; @grpc/grpc-js brings a channel stack, name resolution,
 * load balancing and retries on top, ~4 MiB of resident memory in every
 * sidecar (measured on Node 20), and node:http2 itself 2.3 MiB more (the
 * module and one session), which a sidecar that speaks HTTP/2 on core/h2
 * everywhere else need not load. The zone CP, one process per zone, keeps
 * grpc-js as its server.
 *
 * Failures end a call with a GrpcStatusError whose code follows gRPC's own
 * mapping (an unreachable server is UNAVAILABLE, a reset stream is what its
 * RST_STREAM code means, a non-200 answer is what its HTTP status means).
 */

import { EventEmitter } from 'node:events';
import tls, { type PeerCertificate, type TLSSocket } from 'node:tls';
import { H2ErrorCode } from '../h2/h2-errors.js';
import { H2Session, type H2SessionOptions, type H2SessionOwner } from '../h2/h2-session.js';
import type { H2Stream, H2StreamHandler } from '../h2/h2-stream.js';
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

/** Response metadata: the head's fields by name (repeats joined with ','). */
export type GrpcResponseMetadata = Record<string, string>;

/** A gRPC client's connection: messages are taken as they arrive, so the windows only bound what is in flight. */
const SESSION_OPTIONS: H2SessionOptions = {
  maxConcurrentStreams: 0,
  streamWindow: 1 << 20,
  connectionWindow: 4 << 20,
  maxHeaderListSize: 64 * 1024,
};

/** What an RST_STREAM code means as a gRPC status (as grpc-js maps it). */
function codeOfReset(rstCode: number): number {
  if (rstCode === H2ErrorCode.REFUSED_STREAM) return GrpcCode.UNAVAILABLE;
  if (rstCode === H2ErrorCode.CANCEL) return GrpcCode.CANCELLED;
  if (rstCode === H2ErrorCode.ENHANCE_YOUR_CALM) return GrpcCode.RESOURCE_EXHAUSTED;
  if (rstCode === H2ErrorCode.INADEQUATE_SECURITY) return GrpcCode.PERMISSION_DENIED;
  return GrpcCode.INTERNAL;
}

/** A decoded field list as a record: the few fields a gRPC client reads. */
function fieldRecord(fields: string[]): GrpcResponseMetadata {
  const record: GrpcResponseMetadata = {};
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    const current = record[name];
    record[name] = current === undefined ? value : `${current},${value}`;
  }
  return record;
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
 * server accepted the call), `data` (one message, a Buffer), `drain` (after
 * `write` returned false), then exactly one of `end` (status OK) or
 * `error` (a GrpcStatusError).
 */
export class GrpcCall extends EventEmitter implements H2StreamHandler {
  readonly #stream: H2Stream;
  readonly #decoder: GrpcFrameDecoder;
  #headersSeen = false;
  #status: GrpcStatusError | { code: 0 } | undefined;
  #finished = false;

  constructor(session: H2Session, fields: string[], maxReceiveMessageBytes: number) {
    super();
    this.#decoder = new GrpcFrameDecoder(maxReceiveMessageBytes);
    this.#stream = session.openStream(this);
    this.#stream.sendHeaders(fields, false);
  }

  /** Sends one message; false when HTTP/2 flow control asks the caller to wait for `drain`. */
  write(message: Buffer): boolean {
    if (this.#finished) return false;
    return this.#stream.write(encodeGrpcFrame(message));
  }

  /** No more messages from this side. */
  end(): void {
    if (!this.#finished) this.#stream.end();
  }

  /** Abandons the call: the server sees a CANCEL, this side an `error` with `code`. */
  cancel(code: number = GrpcCode.CANCELLED, details = 'cancelled by the client'): void {
    if (this.#finished) return;
    this.#finish(new GrpcStatusError(code, details));
    this.#stream.cancel(H2ErrorCode.CANCEL);
  }

  onStreamHeaders(_stream: H2Stream, fields: string[], endStream: boolean): void {
    const headers = fieldRecord(fields);
    if (this.#headersSeen) this.#onStatus(headers);
    else {
      this.#headersSeen = true;
      this.#onHeaders(headers);
    }
    if (endStream) this.#onServerDone();
  }

  #onHeaders(headers: GrpcResponseMetadata): void {
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

  #onStatus(headers: GrpcResponseMetadata): void {
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

  onStreamData(stream: H2Stream, chunk: Buffer): void {
    // Messages are handed on as they are decoded: the window reopens at once.
    stream.consumed(chunk.length);
    // After a refusing status (HTTP error, not gRPC) the body is not gRPC messages.
    if (this.#finished || this.#status instanceof GrpcStatusError) return;
    let messages: Buffer[];
    try {
      messages = this.#decoder.push(chunk);
    } catch (err) {
      this.#finish(err as GrpcStatusError);
      stream.cancel(H2ErrorCode.CANCEL);
      return;
    }
    for (const message of messages) {
      // A listener may have cancelled the call.
      if (this.#finished) break;
      this.emit('data', message);
    }
  }

  onStreamEnd(): void {
    this.#onServerDone();
  }

  /** The server's side is done: with a status the call is over, even while this side could still write. */
  #onServerDone(): void {
    if (this.#finished) return;
    // Our side may still be open (a stream the server ended first): it is closed for the call.
    if (!this.#stream.localEnded) this.#stream.cancel(H2ErrorCode.NO_ERROR);
    if (this.#status !== undefined) {
      this.#finishWithStatus(this.#status);
      return;
    }
    this.#finish(new GrpcStatusError(GrpcCode.INTERNAL, 'the server ended the call without a gRPC status'));
  }

  onStreamReset(_stream: H2Stream, code: number, err: Error | undefined): void {
    if (this.#finished) return;
    if (this.#status !== undefined) return this.#finishWithStatus(this.#status);
    // A connection that failed or dropped under the call comes with its error; a reset, with its code.
    if (err !== undefined) this.#finish(new GrpcStatusError(GrpcCode.UNAVAILABLE, err.message));
    else
      this.#finish(
        new GrpcStatusError(codeOfReset(code), `the server reset the stream (HTTP/2 error ${code})`),
      );
  }

  onStreamDrain(): void {
    this.emit('drain');
  }

  onStreamClose(): void {
    if (!this.#finished) this.#onServerDone();
  }

  #finishWithStatus(status: GrpcStatusError | { code: 0 }): void {
    if (status instanceof GrpcStatusError) this.#finish(status);
    else if (this.#decoder.partialBytes > 0)
      this.#finish(new GrpcStatusError(GrpcCode.INTERNAL, 'the call ended inside a message'));
    else this.#finish(undefined);
  }

  #finish(error: GrpcStatusError | undefined): void {
    if (this.#finished) return;
    this.#finished = true;
    if (error === undefined) this.emit('end');
    else this.emit('error', error);
  }
}

/** host:port or [v6]:port; throws an Error naming the address for anything else. */
function hostAndPort(address: string): { host: string; port: number } {
  let url: URL;
  try {
    url = new URL(`https://${address}`);
  } catch {
    throw new Error(`not an address (host:port or [v6]:port): ${JSON.stringify(address)}`);
  }
  const port = Number(url.port || 443);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port };
}

/** One HTTP/2 connection of a channel, with its connect deadline and keepalive. */
class ChannelConnection implements H2SessionOwner {
  readonly session: H2Session;
  /** The server's SETTINGS arrived: connected (a TLS endpoint that never speaks HTTP/2 is not). */
  connected = false;
  readonly #onGone: (connection: ChannelConnection) => void;
  #connecting: NodeJS.Timeout | undefined;
  #keepalive: NodeJS.Timeout | undefined;
  #lastCall: NodeJS.Timeout | undefined;
  readonly #keepaliveMs: number;
  readonly #keepaliveTimeoutMs: number;

  constructor(options: GrpcChannelOptions, onGone: (connection: ChannelConnection) => void) {
    this.#onGone = onGone;
    const { host, port } = hostAndPort(options.address);
    const { tls: t } = options;
    const socket = tls.connect({
      host,
      port,
      ca: t.ca,
      ...(t.cert === undefined || t.key === undefined ? {} : { cert: t.cert, key: t.key }),
      servername: t.servername,
      checkServerIdentity: t.checkServerIdentity,
      ALPNProtocols: ['h2'],
    });
    socket.setNoDelay(true);
    socket.once('secureConnect', function (this: TLSSocket) {
      if (this.alpnProtocol !== 'h2') this.destroy(new Error('the server did not agree to HTTP/2 (ALPN)'));
    });
    this.session = new H2Session(socket, true, SESSION_OPTIONS, this);
    // A blackholed address would otherwise hold a call for the kernel's SYN retries (~2 min).
    const connectTimeout = options.connectTimeoutMs ?? 20_000;
    this.#connecting = setTimeout(() => {
      this.session.destroy(new Error(`no connection to ${options.address} within ${connectTimeout} ms`));
    }, connectTimeout);
    this.#connecting.unref();
    this.#keepaliveMs = options.keepaliveMs ?? 0;
    this.#keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? 20_000;
  }

  onPeerSettings(): void {
    if (this.connected) return;
    this.connected = true;
    clearTimeout(this.#connecting);
    if (this.#keepaliveMs > 0) {
      this.#keepalive = setInterval(() => this.#ping(), this.#keepaliveMs);
      this.#keepalive.unref();
    }
  }

  #awaitingPing = false;

  #ping(): void {
    if (this.#awaitingPing || this.session.destroyed) return;
    this.#awaitingPing = true;
    const timeout = this.#keepaliveTimeoutMs;
    const overdue = setTimeout(() => {
      this.session.destroy(new Error(`the server did not answer a keepalive ping within ${timeout} ms`));
    }, timeout);
    overdue.unref();
    this.session.ping((err) => {
      this.#awaitingPing = false;
      clearTimeout(overdue);
      if (err !== undefined && !this.session.destroyed) this.session.destroy(err);
    });
  }

  onGoingAway(): void {
    // New calls take a new connection; the calls still open here get one keepalive period (and its
    // timeout) to end, or a server that died before ending them could hold them for good.
    this.#onGone(this);
    if (this.#keepaliveMs > 0 && this.#lastCall === undefined) {
      this.#lastCall = setTimeout(() => {
        this.session.destroy(new Error('the server went away (GOAWAY) and did not end its calls'));
      }, this.#keepaliveMs + this.#keepaliveTimeoutMs);
      this.#lastCall.unref();
    }
  }

  onSessionClose(): void {
    clearTimeout(this.#connecting);
    clearInterval(this.#keepalive);
    clearTimeout(this.#lastCall);
    this.#onGone(this);
  }
}

/** A connection to one server, opened on the first call and again after it drops. */
export class GrpcChannel {
  readonly #options: GrpcChannelOptions;
  #connection: ChannelConnection | undefined;
  #closed = false;

  constructor(options: GrpcChannelOptions) {
    this.#options = options;
  }

  /**
   * A call that streams both ways (`write` messages, `end` when done).
   * Throws when the call cannot even start: the channel is closed, or the
   * address is not one.
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
    const connection = this.#connection;
    this.#connection = undefined;
    if (connection === undefined) return;
    // A connection still connecting would only be ended once connected: drop it now.
    if (connection.connected) connection.session.close();
    else connection.session.destroy();
  }

  #call(method: string, metadata: GrpcMetadata, extra: Record<string, string>): GrpcCall {
    if (this.#closed) throw new GrpcStatusError(GrpcCode.UNAVAILABLE, 'the channel is closed');
    const session = this.#connect();
    const fields = [
      ':method',
      'POST',
      ':scheme',
      'https',
      ':path',
      method,
      ':authority',
      this.#options.authority,
      'content-type',
      'application/grpc',
      'te',
      'trailers',
      'user-agent',
      'meshfed-grpc',
    ];
    for (const [name, value] of Object.entries({ ...metadata, ...extra })) fields.push(name, value);
    return new GrpcCall(session, fields, this.#options.maxReceiveMessageBytes ?? 4 * 1024 * 1024);
  }

  #connect(): H2Session {
    const current = this.#connection;
    if (current !== undefined && !current.session.goingAway) return current.session;
    const connection = new ChannelConnection(this.#options, (gone) => {
      if (this.#connection === gone) this.#connection = undefined;
    });
    this.#connection = connection;
    return connection.session;
  }
}
