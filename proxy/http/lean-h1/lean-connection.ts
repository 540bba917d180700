/**
 * One client connection of the lean HTTP/1.1 server: reads request heads
 * and content-length bodies straight off the socket, one request at a time
 * (pipelined requests wait in the buffer until the response before them
 * has gone out), and hands the socket to `node:http` for good the moment a
 * request is anything but plain — a partial or oversized head, a chunked
 * body, an upgrade, a malformed line. Node then answers as it always did,
 * including the 400, 408 and 431 a bad client gets; the lean path never has
 * to guess.
 *
 * Socket listeners are module functions that find the connection through
 * a symbol: a connection costs no closures.
 */

import type { Socket } from 'node:net';
import { monotonicMs } from '../../../core/clock.js';
import type { HttpServerLimits } from '../http-servers.js';
import { headEnd } from '../h1-fields.js';
import { BODY_QUEUE_LIMIT, LeanRequest, type BodySource } from './lean-request.js';
import { LeanResponse, type ResponseSink } from './lean-response.js';
import { parseSimpleRequestHead } from './request-head.js';

/** What a connection needs from the server that accepted it. */
export interface ConnectionOwner {
  readonly limits: HttpServerLimits;
  /** The response lines of a keep-alive answer under these limits (see keepAliveLines). */
  readonly keepAliveLines: string;
  onRequest(req: LeanRequest, res: LeanResponse): void;
  /** The socket, and the bytes read but not used, go to `node:http` for the rest of the connection. */
  handOver(socket: Socket, unread: Buffer | undefined): void;
  /** The connection closed or was handed over. */
  forget(conn: LeanH1Connection): void;
}

const kConnection = Symbol('meshfed.leanConnection');

type Tagged = Socket & { [kConnection]?: LeanH1Connection };

export class LeanH1Connection implements BodySource, ResponseSink {
  readonly socket: Socket;
  readonly #owner: ConnectionOwner;
  #unread: Buffer | undefined;
  #req: LeanRequest | undefined;
  #res: LeanResponse | undefined;
  /** Body bytes of the current request still to come off the socket. */
  #bodyLeft = 0;
  #pausedForBody = false;
  #pausedForPipeline = false;
  #nextScheduled = false;
  /** No new requests: the connection ends after the current response. */
  #closing = false;
  /** When an idle connection is closed (ms, monotonicMs()); Infinity while a request is in flight. */
  deadline: number;

  constructor(socket: Socket, owner: ConnectionOwner) {
    this.socket = socket;
    this.#owner = owner;
    // The first request head must arrive within the header timeout, later ones within the keep-alive timeout.
    this.deadline = monotonicMs() + owner.limits.headersTimeoutMs;
    (socket as Tagged)[kConnection] = this;
    socket.on('data', onSocketData);
    socket.on('drain', onSocketDrain);
    socket.on('close', onSocketClose);
    socket.on('error', onSocketError);
  }

  /** No request in flight and no bytes waiting. */
  get idle(): boolean {
    return this.#req === undefined && this.#unread === undefined;
  }

  onData(chunk: Buffer): void {
    if (this.#bodyLeft > 0) {
      const rest = this.#takeBody(chunk);
      if (rest === undefined) return;
      chunk = rest;
    }
    this.#unread = this.#unread === undefined ? chunk : Buffer.concat([this.#unread, chunk]);
    if (this.#req === undefined) this.#next();
    else if (this.#unread.length > this.#owner.limits.maxHeaderBytes) {
      // Pipelined requests pile up behind a slow one: stop reading until it is answered.
      this.#pausedForPipeline = true;
      this.socket.pause();
    }
  }

  /** Delivers the part of `chunk` that belongs to the current body; returns what follows it. */
  #takeBody(chunk: Buffer): Buffer | undefined {
    const n = Math.min(chunk.length, this.#bodyLeft);
    this.#bodyLeft -= n;
    const req = this.#req as LeanRequest;
    req.pushBody(n === chunk.length ? chunk : chunk.subarray(0, n));
    if (this.#bodyLeft === 0) this.#bodyEnded(req);
    return n === chunk.length ? undefined : chunk.subarray(n);
  }

  #bodyEnded(req: LeanRequest): void {
    req.endBody();
    // The response went out before the body had all arrived: now the connection is free.
    if (this.#res === undefined && !this.#closing) this.#becomeIdle();
  }

  /** Starts the next request in the buffer, or hands the connection over when it is not one to take. */
  #next(): void {
    const buf = this.#unread;
    if (this.#req !== undefined || buf === undefined || this.#closing) return;
    const end = headEnd(buf, 0);
    const head =
      end < 0 || end > this.#owner.limits.maxHeaderBytes
        ? undefined
        : parseSimpleRequestHead(buf.toString('latin1', 0, end));
    if (head === undefined) {
      this.#handOver();
      return;
    }
    this.#unread = end === buf.length ? undefined : buf.subarray(end);
    const req = new LeanRequest(head, this.socket, this);
    const res = new LeanResponse(this, head.method === 'HEAD', !head.close, this.#owner.keepAliveLines);
    this.#req = req;
    this.#res = res;
    this.deadline = Infinity;
    this.#bodyLeft = head.contentLength;
    const unread = this.#unread;
    if (this.#bodyLeft > 0 && unread !== undefined) {
      this.#unread = undefined;
      const rest = this.#takeBody(unread);
      if (rest !== undefined) this.#unread = rest;
    }
    this.#owner.onRequest(req, res);
  }

  responseDone(res: LeanResponse): void {
    if (res !== this.#res) return;
    this.#res = undefined;
    const req = this.#req;
    // As Node does: a body nobody reads is read and dropped (a reader still listening drops it itself).
    if (req !== undefined && req.listenerCount('data') === 0) req.dump();
    if (!res.shouldKeepAlive || this.#closing) {
      this.#closing = true;
      endThenDestroy(this.socket);
      return;
    }
    // The next request waits for the end of this one's body.
    if (this.#bodyLeft === 0) this.#becomeIdle();
  }

  #becomeIdle(): void {
    this.#req = undefined;
    if (this.#closing) {
      this.socket.destroy();
      return;
    }
    this.deadline = monotonicMs() + this.#owner.limits.keepAliveTimeoutMs;
    if (this.#pausedForBody || this.#pausedForPipeline) {
      this.#pausedForBody = this.#pausedForPipeline = false;
      this.socket.resume();
    }
    if (this.#unread !== undefined && !this.#nextScheduled) {
      // Not from inside the previous exchange's end(): its bookkeeping finishes first.
      this.#nextScheduled = true;
      queueMicrotask(() => {
        this.#nextScheduled = false;
        this.#next();
      });
    }
  }

  bodyQueued(req: LeanRequest, bytes: number): void {
    // A request that is no longer the current one has no say over the socket.
    if (req !== this.#req) return;
    if (bytes > BODY_QUEUE_LIMIT) {
      if (!this.#pausedForBody) {
        this.#pausedForBody = true;
        this.socket.pause();
      }
    } else if (this.#pausedForBody) {
      this.#pausedForBody = false;
      this.#resumeIfFree();
    }
  }

  #resumeIfFree(): void {
    if (!this.#pausedForBody && !this.#pausedForPipeline) this.socket.resume();
  }

  /** Ends the connection after the response in flight, now if there is none. */
  close(): void {
    this.#closing = true;
    if (this.#req === undefined) this.socket.destroy();
  }

  #handOver(): void {
    const socket = this.socket;
    const unread = this.#unread;
    this.#unread = undefined;
    this.#detach();
    this.#pausedForBody = this.#pausedForPipeline = false;
    socket.resume();
    this.#owner.handOver(socket, unread);
  }

  #detach(): void {
    const socket = this.socket as Tagged;
    socket.removeListener('data', onSocketData);
    socket.removeListener('drain', onSocketDrain);
    socket.removeListener('close', onSocketClose);
    socket.removeListener('error', onSocketError);
    delete socket[kConnection];
    this.#owner.forget(this);
  }

  onDrain(): void {
    this.#res?.emit('drain');
  }

  onClose(): void {
    this.#owner.forget(this);
    this.#res?.connectionClosed();
    const req = this.#req;
    if (req !== undefined && !req.complete) req.destroy();
  }
}

function onSocketData(this: Tagged, chunk: Buffer): void {
  this[kConnection]?.onData(chunk);
}

function onSocketDrain(this: Tagged): void {
  this[kConnection]?.onDrain();
}

function onSocketClose(this: Tagged): void {
  this[kConnection]?.onClose();
}

/** Node's destroySoon: the response is flushed, then the connection goes, whatever the client still sends. */
function endThenDestroy(socket: Socket): void {
  socket.end();
  if (socket.writableFinished) socket.destroy();
  else socket.once('finish', destroyAfterFinish);
}

function destroyAfterFinish(this: Socket): void {
  this.destroy();
}

/** A reset or a write after the peer left: 'close' follows, which is where the connection is cleaned up. */
function onSocketError(this: Tagged): void {
  this.destroy();
}
