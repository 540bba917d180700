/**
 * The response half of the lean HTTP/1.1 server: the part of Node's
 * ServerResponse the proxy uses (writeHead, write with backpressure, end,
 * trailers, destroy, 'drain' and 'close'), written straight to the socket.
 * The head waits for the first body bytes so that a small response leaves
 * in one write; framing is content-length when the headers give one,
 * chunked otherwise, nothing for HEAD, 1xx, 204 and 304 — Node's rules,
 * and Node's Date, Connection and Keep-Alive headers.
 */

import { EventEmitter } from 'node:events';
import { STATUS_CODES, type OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { currentHttpDate } from '../../../core/utc-format.js';
import { H1ProtocolError, TOKEN } from '../h1-fields.js';

/** What the response needs from its connection. */
export interface ResponseSink {
  readonly socket: Socket;
  /** The response went out whole (or was given up): the connection may read the next request. */
  responseDone(res: LeanResponse): void;
}

/** Bodies up to this size are copied behind the head into one buffer; larger ones go out as a second chunk of one writev. */
const COALESCE_LIMIT = 16 * 1024;
/** Node's rule for header values: no control characters but tab, nothing beyond latin1 (the head is written as latin1). */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/** Node's keep-alive lines for a server with this idle timeout (made once per server, not per response). */
export function keepAliveLines(keepAliveTimeoutMs: number): string {
  return `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveTimeoutMs / 1000)}\r\n`;
}

export class LeanResponse extends EventEmitter {
  statusCode = 200;
  headersSent = false;
  writableEnded = false;
  writableFinished = false;
  destroyed = false;
  /** False: `Connection: close`, and the connection ends after this response. */
  shouldKeepAlive: boolean;
  readonly #sink: ResponseSink;
  readonly #keepAliveHeader: string;
  /** HEAD request: the head describes a body that is not sent. */
  readonly #headRequest: boolean;
  #bodyless = false;
  #chunked = false;
  /** The serialized head, until the first body bytes (or end) take it out. */
  #pendingHead: string | undefined;
  #trailers: OutgoingHttpHeaders | undefined;

  /** `keepAliveHeader`: the server's keepAliveLines(). */
  constructor(sink: ResponseSink, headRequest: boolean, keepAlive: boolean, keepAliveHeader: string) {
    super();
    this.#sink = sink;
    this.#headRequest = headRequest;
    this.shouldKeepAlive = keepAlive;
    this.#keepAliveHeader = keepAliveHeader;
  }

  /**
   * Serializes the head (sent with the first body bytes). Throws
   * H1ProtocolError on a header name or value that would break the framing,
   * as Node's writeHead throws.
   */
  writeHead(status: number, headers?: OutgoingHttpHeaders): this {
    if (this.headersSent) throw new H1ProtocolError('HEADERS_SENT', 'the response head was already written');
    this.statusCode = status;
    // Decided afresh: a writeHead that threw (bad header) may be followed by another for a local reply.
    this.#chunked = false;
    let givenCoding = false;
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n`;
    let length = false;
    let date = false;
    let connectionGiven = false;
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      if (!TOKEN.test(name)) throw new H1ProtocolError('INVALID_HEADER', `invalid header name ${name}`);
      const lower =
        name.length === 4 || name.length === 10 || name.length === 14 || name.length === 17
          ? name.toLowerCase()
          : '';
      if (lower === 'content-length') length = true;
      else if (lower === 'date') date = true;
      else if (lower === 'transfer-encoding') {
        // Only the last coding frames the body (RFC 9112 §6.1); any other coding runs until the close.
        givenCoding = true;
        const codings = String(value).toLowerCase();
        this.#chunked = codings.slice(codings.lastIndexOf(',') + 1).trim() === 'chunked';
      } else if (lower === 'connection') {
        connectionGiven = true;
        if (String(value).toLowerCase().includes('close')) this.shouldKeepAlive = false;
      }
      if (Array.isArray(value)) for (const v of value) head += headerLine(name, v);
      else head += headerLine(name, typeof value === 'number' ? String(value) : value);
    }
    this.#bodyless = this.#headRequest || status < 200 || status === 204 || status === 304;
    if (!date) head += `Date: ${currentHttpDate()}\r\n`;
    let addChunked = false;
    if (!this.#bodyless && !length && !this.#chunked) {
      if (givenCoding) this.shouldKeepAlive = false;
      else addChunked = this.#chunked = true;
    }
    // Node's order: Date, Connection (and Keep-Alive), Transfer-Encoding.
    if (!connectionGiven) head += this.shouldKeepAlive ? this.#keepAliveHeader : 'Connection: close\r\n';
    if (addChunked) head += 'Transfer-Encoding: chunked\r\n';
    this.#pendingHead = head + '\r\n';
    this.headersSent = true;
    return this;
  }

  addTrailers(trailers: OutgoingHttpHeaders): void {
    for (const name in trailers) {
      if (!TOKEN.test(name)) throw new H1ProtocolError('INVALID_TRAILER', `invalid trailer name ${name}`);
      const value = trailers[name];
      const values = Array.isArray(value) ? value : [String(value)];
      if (values.some((v) => INVALID_VALUE.test(v)))
        throw new H1ProtocolError('INVALID_TRAILER', `invalid characters in trailer ${name}`);
    }
    this.#trailers = { ...this.#trailers, ...trailers };
  }

  /** Writes body bytes; false when the socket's buffer is full ('drain' follows). */
  write(chunk: Buffer | string): boolean {
    if (this.writableEnded || this.destroyed) return false;
    if (!this.headersSent) this.writeHead(this.statusCode);
    const body = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (this.#bodyless || body.length === 0) return this.#flushHead();
    return this.#send(body, false);
  }

  end(chunk?: Buffer | string): this {
    if (this.writableEnded || this.destroyed) return this;
    if (!this.headersSent) this.writeHead(this.statusCode);
    const body = chunk === undefined ? undefined : typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.writableEnded = true;
    if (this.#bodyless || body === undefined || body.length === 0) {
      if (this.#chunked && !this.#bodyless) this.#send(undefined, true);
      else this.#flushHead();
    } else {
      this.#send(body, true);
    }
    this.writableFinished = true;
    this.emit('finish');
    this.emit('close');
    this.#sink.responseDone(this);
    return this;
  }

  /** Gives the response up: the connection is cut, the client sees a reset or a short body. */
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.#sink.socket.destroy();
    return this;
  }

  /** The connection closed under an unfinished response. */
  connectionClosed(): void {
    if (this.writableFinished) return;
    this.destroyed = true;
    this.emit('close');
  }

  #flushHead(): boolean {
    const head = this.#pendingHead;
    if (head === undefined) return true;
    this.#pendingHead = undefined;
    return this.#sink.socket.write(head, 'latin1');
  }

  /** One write (or one writev) per call: the head if still pending, the framed bytes, and the end of a chunked body when `last`. */
  #send(body: Buffer | undefined, last: boolean): boolean {
    const socket = this.#sink.socket;
    let prefix = this.#pendingHead ?? '';
    this.#pendingHead = undefined;
    // Framing around the body, all latin1 text like the head.
    let suffix = '';
    if (this.#chunked) {
      if (body !== undefined) prefix += `${body.length.toString(16)}\r\n`;
      suffix = last ? this.#lastChunk(body !== undefined) : body === undefined ? '' : '\r\n';
    }
    if (body === undefined) return socket.write(prefix + suffix, 'latin1');
    if (body.length <= COALESCE_LIMIT) {
      const out = Buffer.allocUnsafe(prefix.length + body.length + suffix.length);
      out.write(prefix, 0, 'latin1');
      body.copy(out, prefix.length);
      if (suffix !== '') out.write(suffix, prefix.length + body.length, 'latin1');
      return socket.write(out);
    }
    // The last write's answer is the one that matters: 'drain' follows only a write that returned false.
    socket.cork();
    if (prefix !== '') socket.write(prefix, 'latin1');
    let ok = socket.write(body);
    if (suffix !== '') ok = socket.write(suffix, 'latin1');
    socket.uncork();
    return ok;
  }

  /** The end of a chunked body: the CRLF after the last data chunk, the zero chunk, trailers. */
  #lastChunk(afterData: boolean): string {
    let text = afterData ? '\r\n0\r\n' : '0\r\n';
    const trailers = this.#trailers;
    for (const name in trailers) {
      const value = trailers[name];
      if (value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) text += `${name}: ${v}\r\n`;
      else text += `${name}: ${String(value)}\r\n`;
    }
    return text + '\r\n';
  }
}

function headerLine(name: string, value: string): string {
  if (INVALID_VALUE.test(value))
    throw new H1ProtocolError('INVALID_HEADER', `invalid characters in the value of header ${name}`);
  return `${name}: ${value}\r\n`;
}
