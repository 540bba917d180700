/**
 * HTTP/1.1 message heads for the upstream client, without `node:http`:
 * the request head written as one latin1 string (what Node's parser gave
 * us downstream round-trips byte for byte), and a small, strict parser for
 * response heads and chunked-body size lines, with limits (the header
 * fields are parsed by ../http/h1-fields.ts, shared with the lean server).
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import {
  addHeader,
  BAD_VALUE,
  fieldValue,
  H1ProtocolError,
  hasToken,
  lowerCaseName,
  parseFieldBlock,
  TOKEN,
} from '../http/h1-fields.js';

/** Response heads larger than this are refused (Envoy's default is 60 KiB). */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;
/** A chunk-size line (size and extensions) longer than this is malformed. */
export const MAX_CHUNK_LINE_BYTES = 1024;

// No spaces or control characters in a request target.
const BAD_TARGET = /[\0-\x20\x7f]/;

/** Methods for which Node sends `content-length: 0` when the body turns out empty. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/**
 * The request line, Host and the given headers, without the framing header
 * and the blank line (added once the body's shape is known, by
 * `framingLines`). Throws H1ProtocolError on a character that would break
 * the framing (CR, LF, NUL...) rather than sending it.
 */
export function requestHeadStart(
  method: string,
  path: string,
  authority: string,
  headers: OutgoingHttpHeaders,
): string {
  if (!TOKEN.test(method)) throw new H1ProtocolError('INVALID_METHOD', `invalid request method ${method}`);
  if (path === '' || BAD_TARGET.test(path))
    throw new H1ProtocolError('INVALID_PATH', 'invalid characters in the request path');
  if (BAD_VALUE.test(authority)) throw new H1ProtocolError('INVALID_HEADER', 'invalid characters in host');
  let head = `${method} ${path} HTTP/1.1\r\nhost: ${authority}\r\n`;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (!TOKEN.test(name)) throw new H1ProtocolError('INVALID_HEADER', `invalid header name ${name}`);
    if (Array.isArray(value)) {
      for (const v of value) head += headerLine(name, v);
    } else {
      head += headerLine(name, typeof value === 'number' ? String(value) : value);
    }
  }
  return head;
}

/** How the request body is framed on the wire. */
export type RequestFraming = 'length' | 'chunked' | 'empty';

/**
 * The end of the request head: 'length' (the headers carry content-length),
 * 'chunked' (adds transfer-encoding), 'empty' (no body: `content-length: 0`
 * for methods that normally carry one, as Node does).
 */
export function framingLines(method: string, framing: RequestFraming): string {
  if (framing === 'chunked') return 'transfer-encoding: chunked\r\n\r\n';
  if (framing === 'empty' && BODY_METHODS.has(method)) return 'content-length: 0\r\n\r\n';
  return '\r\n';
}

function headerLine(name: string, value: string): string {
  if (BAD_VALUE.test(value))
    throw new H1ProtocolError('INVALID_HEADER', `invalid characters in the value of header ${name}`);
  return `${name}: ${value}\r\n`;
}

/** A parsed response head. */
export interface ResponseHead {
  status: number;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  headers: IncomingHttpHeaders;
  /** `connection: close` (or HTTP/1.0 without keep-alive): the connection ends with this response. */
  close: boolean;
  /**
   * Body framing: a byte count, -1 for chunked, -2 for "until the
   * connection closes" (no length, no chunking).
   */
  length: number;
}

const CRLF = Buffer.from('\r\n');

/**
 * Parses a complete response head (`text` ends with the blank line's CRLF
 * CRLF, latin1). `bodyless`: the request was HEAD, so no body follows
 * whatever the headers say.
 */
export function parseResponseHead(text: string, bodyless: boolean): ResponseHead {
  const lineEnd = text.indexOf('\r\n');
  const statusLine = text.slice(0, lineEnd);
  // "HTTP/1.1 200 OK": the reason phrase is optional, the space before it is not required by every server.
  if (
    statusLine.length < 12 ||
    !statusLine.startsWith('HTTP/1.') ||
    statusLine.charCodeAt(8) !== 32 ||
    (statusLine.length > 12 && statusLine.charCodeAt(12) !== 32)
  ) {
    throw new H1ProtocolError('INVALID_STATUS_LINE', 'malformed response status line');
  }
  const minorCode = statusLine.charCodeAt(7);
  if (minorCode !== 48 && minorCode !== 49)
    throw new H1ProtocolError('INVALID_VERSION', 'unsupported HTTP version in the response');
  const minor = minorCode - 48;
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const d = statusLine.charCodeAt(i) - 48;
    if (d < 0 || d > 9) throw new H1ProtocolError('INVALID_STATUS', 'malformed response status code');
    status = status * 10 + d;
  }
  if (status < 100) throw new H1ProtocolError('INVALID_STATUS', 'malformed response status code');
  if (BAD_VALUE.test(statusLine)) throw new H1ProtocolError('INVALID_STATUS_LINE', 'malformed status line');

  const { headers, contentLength, hasTe, chunked, connection } = parseFieldBlock(
    text,
    lineEnd + 2,
    text.length - 2,
    'response',
  );
  let length: number;
  if (bodyless || status < 200 || status === 204 || status === 304) length = 0;
  else if (hasTe) length = chunked ? -1 : -2;
  else if (contentLength >= 0) length = contentLength;
  else length = -2;
  const close =
    length === -2 ||
    // Both framings at once: a smuggling attempt or a broken server; answer this one, trust nothing after.
    (hasTe && contentLength >= 0) ||
    hasToken(connection, 'close') ||
    (minor === 0 && !hasToken(connection, 'keep-alive'));
  return { status, minor, headers, close, length };
}

/**
 * Parses trailer fields after the last chunk (`text` is the trailer block
 * without the final CRLF pair, latin1).
 */
export function parseTrailers(text: string): IncomingHttpHeaders {
  const trailers: IncomingHttpHeaders = {};
  for (const line of text.split('\r\n')) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    const rawName = colon > 0 ? line.slice(0, colon) : '';
    if (!TOKEN.test(rawName)) throw new H1ProtocolError('INVALID_TRAILER', 'malformed response trailer');
    const value = fieldValue(line, colon + 1, line.length);
    if (BAD_VALUE.test(value)) throw new H1ProtocolError('INVALID_TRAILER', 'malformed response trailer');
    addHeader(trailers, lowerCaseName(rawName), value);
  }
  return trailers;
}

/** The size on a chunk-size line (extensions ignored); throws when malformed. */
export function parseChunkSize(line: string): number {
  let end = line.indexOf(';');
  if (end < 0) end = line.length;
  // Whitespace before extensions is tolerated (BWS); none inside the number.
  while (end > 0 && (line.charCodeAt(end - 1) === 32 || line.charCodeAt(end - 1) === 9)) end--;
  if (end === 0 || end > 12) throw new H1ProtocolError('INVALID_CHUNK', 'malformed chunk size');
  let n = 0;
  for (let i = 0; i < end; i++) {
    const c = line.charCodeAt(i);
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if (c >= 97 && c <= 102) d = c - 87;
    else if (c >= 65 && c <= 70) d = c - 55;
    else throw new H1ProtocolError('INVALID_CHUNK', 'malformed chunk size');
    n = n * 16 + d;
  }
  return n;
}

/** Index of the CRLF ending a line that starts at `from`, or -1. */
export function lineEnd(buf: Buffer, from: number): number {
  return buf.indexOf(CRLF, from);
}
