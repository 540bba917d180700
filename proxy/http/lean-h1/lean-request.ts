/**
 * A request the lean HTTP/1.1 server parsed (or the HTTP/2 server
 * decoded, with `httpVersionMajor` 2): the fields of Node's
 * IncomingMessage the proxy reads, and just enough of a readable stream for
 * its body — 'data' and 'end', pause() and resume() — without a stream's
 * state per request. Like a Readable, it holds body bytes until a 'data'
 * listener (or resume()) asks for them, and its connection stops reading
 * the socket while it holds more than a little.
 */

import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { SimpleRequestHead } from './request-head.js';

/** What the request needs from its connection. */
export interface BodySource {
  /** `req` holds this many body bytes nobody has read yet. */
  bodyQueued(req: LeanRequest, bytes: number): void;
}

/** Queued body bytes beyond which the connection stops reading. */
export const BODY_QUEUE_LIMIT = 64 * 1024;

export class LeanRequest extends EventEmitter {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly httpVersion: string;
  readonly httpVersionMajor: number;
  readonly httpVersionMinor: number;
  readonly socket: Socket;
  /** The whole body arrived. */
  complete: boolean;
  readonly #source: BodySource;
  /** null until someone reads: bytes wait; then true (flowing) or false (paused). */
  #flowing: boolean | null = null;
  #queue: Buffer[] | undefined;
  #queued = 0;
  #endPending = false;
  #flushScheduled = false;
  #destroyed = false;

  constructor(
    head: Pick<SimpleRequestHead, 'method' | 'url' | 'headers' | 'contentLength'>,
    socket: Socket,
    source: BodySource,
    httpVersionMajor: 1 | 2 = 1,
  ) {
    super();
    this.httpVersionMajor = httpVersionMajor;
    this.httpVersionMinor = httpVersionMajor === 1 ? 1 : 0;
    this.httpVersion = httpVersionMajor === 1 ? '1.1' : '2.0';
    this.method = head.method;
    this.url = head.url;
    this.headers = head.headers;
    this.socket = socket;
    this.complete = head.contentLength === 0;
    // A zero length still ends: a reader that listens (content-length: 00 is a body to some) gets 'end'.
    this.#endPending = this.complete;
    this.#source = source;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  // EventEmitter's own listener type: listeners take whatever their event carries.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    super.on(event, listener);
    // As a Readable: a 'data' listener starts the flow unless the reader paused it.
    if (event === 'data' && this.#flowing !== false) this.resume();
    return this;
  }

  isPaused(): boolean {
    return this.#flowing === false;
  }

  pause(): this {
    this.#flowing = false;
    return this;
  }

  /**
   * Flowing again. What waited is delivered on the next tick, as a Readable
   * does, so that a reader attaching 'data' and then 'end' sees both.
   * Without 'data' listeners the body is read and dropped.
   */
  resume(): this {
    this.#flowing = true;
    if ((this.#queued > 0 || this.#endPending) && !this.#flushScheduled) {
      this.#flushScheduled = true;
      process.nextTick(flushRequest, this);
    }
    this.#source.bodyQueued(this, this.#queued);
    return this;
  }

  /** Delivers what waited, while the reader keeps flowing. */
  flush(): void {
    this.#flushScheduled = false;
    const queue = this.#queue;
    while (queue !== undefined && queue.length > 0 && this.#flowing === true && !this.#destroyed) {
      const chunk = queue.shift() as Buffer;
      this.#queued -= chunk.length;
      this.emit('data', chunk);
    }
    if (this.#flowing === true && this.#queued === 0 && this.#endPending && !this.#destroyed) {
      this.#endPending = false;
      this.emit('end');
    }
    this.#source.bodyQueued(this, this.#queued);
  }

  /** Nobody will read the body: what is held and what is still to come is dropped, as Node's _dump() does. */
  dump(): void {
    if (this.complete && this.#queued === 0) {
      // Nothing held, nothing to come (the usual request without a body): no tick to spend.
      this.#endPending = false;
      return;
    }
    this.removeAllListeners('data');
    this.resume();
  }

  /** Body bytes from the connection. */
  pushBody(chunk: Buffer): void {
    if (this.#destroyed) return;
    if (this.#flowing === true && this.#queued === 0 && !this.#flushScheduled) {
      this.emit('data', chunk);
      return;
    }
    (this.#queue ??= []).push(chunk);
    this.#queued += chunk.length;
    this.#source.bodyQueued(this, this.#queued);
  }

  /** The last body byte arrived. */
  endBody(): void {
    this.complete = true;
    if (this.#destroyed) return;
    if (this.#flowing === true && this.#queued === 0 && !this.#flushScheduled) this.emit('end');
    else {
      this.#endPending = true;
      if (this.#flowing === true) this.resume();
    }
  }

  /** The connection went away (or the reader gave up): nothing more is delivered. */
  destroy(): this {
    if (this.#destroyed) return this;
    this.#destroyed = true;
    this.#queue = undefined;
    this.#queued = 0;
    this.emit('close');
    return this;
  }
}

function flushRequest(req: LeanRequest): void {
  req.flush();
}
