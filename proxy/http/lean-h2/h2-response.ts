/**
 * The server side of one HTTP/2 stream: the response the proxy writes (the
 * calls of Node's ServerResponse the proxy makes) and the handler that feeds
 * the stream's request body into its LeanRequest. Receive flow control
 * follows the reader: the peer may send more only as the request's reader
 * takes what came.
 */

import { EventEmitter } from 'node:events';
import type { OutgoingHttpHeaders } from 'node:http';
import type { DownstreamResponse } from '../downstream.js';
import type { BodySource, LeanRequest } from '../lean-h1/lean-request.js';
import { currentHttpDate } from '../../../core/utc-format.js';
import { H2ErrorCode } from '../../../core/h2/h2-errors.js';
import { appendFields } from './h2-headers.js';
import type { H2Stream, H2StreamHandler } from '../../../core/h2/h2-stream.js';

export class H2Response extends EventEmitter implements DownstreamResponse, H2StreamHandler, BodySource {
  readonly stream: H2Stream;
  req: LeanRequest | undefined;
  readonly #headRequest: boolean;
  /** The request's declared content-length, or -1: DATA must add up to it. */
  readonly #expectedLength: number;
  headersSent = false;
  destroyed = false;
  writableFinished = false;
  /** The head, held until the first body bytes or the end so that both leave together. */
  #head: string[] | undefined;
  #trailers: string[] | undefined;
  #ended = false;
  // Request body bytes: received, and of those still queued unread in the request.
  #received = 0;
  #queued = 0;
  #returned = 0;

  constructor(stream: H2Stream, headRequest: boolean, expectedLength: number) {
    super();
    this.stream = stream;
    this.#headRequest = headRequest;
    this.#expectedLength = expectedLength;
  }

  writeHead(status: number, headers?: OutgoingHttpHeaders): this {
    if (this.headersSent) throw new Error('response headers were already written');
    const fields = [':status', String(status)];
    if (headers !== undefined) appendFields(fields, headers);
    if (!hasField(fields, 'date')) fields.push('date', currentHttpDate());
    this.headersSent = true;
    this.#head = fields;
    return this;
  }

  addTrailers(trailers: OutgoingHttpHeaders): void {
    this.#trailers = appendFields(this.#trailers ?? [], trailers);
  }

  write(chunk: Buffer | string): boolean {
    if (this.destroyed || this.#ended) return false;
    if (!this.headersSent) this.writeHead(200);
    this.#sendHead(false);
    if (this.#headRequest) return true;
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    return buf.length === 0 ? true : this.stream.write(buf);
  }

  end(chunk?: Buffer | string): this {
    if (this.destroyed || this.#ended) return this;
    this.#ended = true;
    if (!this.headersSent) this.writeHead(200);
    const buf =
      chunk === undefined || this.#headRequest
        ? undefined
        : typeof chunk === 'string'
          ? Buffer.from(chunk)
          : chunk;
    const trailers = this.#trailers !== undefined && this.#trailers.length > 0 ? this.#trailers : undefined;
    if (this.#head !== undefined && (buf === undefined || buf.length === 0) && trailers === undefined) {
      // The usual local reply or empty answer: one HEADERS frame with END_STREAM.
      this.stream.sendHeaders(this.#takeHead(), true);
      return this;
    }
    this.#sendHead(false);
    this.stream.end(buf, trailers);
    return this;
  }

  #takeHead(): string[] {
    const head = this.#head as string[];
    this.#head = undefined;
    return head;
  }

  #sendHead(endStream: boolean): void {
    if (this.#head !== undefined) this.stream.sendHeaders(this.#takeHead(), endStream);
  }

  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    if (!this.writableFinished) this.stream.cancel(H2ErrorCode.INTERNAL_ERROR);
    this.#gone();
    return this;
  }

  #gone(): void {
    this.req?.destroy();
    this.emit('close');
  }

  // ---- The request body (BodySource): reopen the window as the reader takes bytes. ----

  bodyQueued(_req: LeanRequest, bytes: number): void {
    this.#queued = bytes;
    this.#returnTaken();
  }

  #returnTaken(): void {
    const taken = this.#received - this.#queued - this.#returned;
    if (taken > 0) {
      this.#returned += taken;
      this.stream.consumed(taken);
    }
  }

  // ---- Stream events ----

  onStreamHeaders(_stream: H2Stream, _fields: string[], endStream: boolean): void {
    // A second head is trailers, and trailers end the request (RFC 9113 8.1).
    if (!endStream) {
      this.#malformed();
      return;
    }
    // HTTP/1.1 apps would need chunked trailers for them; only the end matters here.
    this.onStreamEnd();
  }

  onStreamData(_stream: H2Stream, chunk: Buffer): void {
    this.#received += chunk.length;
    if (this.#expectedLength >= 0 && this.#received > this.#expectedLength) {
      // Passed on, the extra bytes would be a second request on the app's HTTP/1.1 connection.
      this.#malformed();
      return;
    }
    this.req?.pushBody(chunk);
    this.#returnTaken();
  }

  onStreamEnd(): void {
    if (this.#expectedLength >= 0 && this.#received !== this.#expectedLength) {
      this.#malformed();
      return;
    }
    this.req?.endBody();
  }

  /** A body that disagrees with its content-length (RFC 9113 section 8.1.1): a stream error. */
  #malformed(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.stream.cancel(H2ErrorCode.PROTOCOL_ERROR);
    this.#gone();
  }

  onStreamReset(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.#gone();
  }

  onStreamDrain(): void {
    this.emit('drain');
  }

  onStreamClose(): void {
    this.writableFinished = true;
    // Answered before the request was whole: the rest will not come (we asked the client to stop).
    if (this.req !== undefined && !this.req.complete) this.req.destroy();
    this.emit('close');
  }
}

function hasField(fields: string[], name: string): boolean {
  for (let i = 2; i < fields.length; i += 2) if (fields[i] === name) return true;
  return false;
}
