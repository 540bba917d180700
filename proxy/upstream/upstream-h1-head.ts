/**
 * HTTP/1.1 message heads for the upstream client, without `node:http`:
 * the request head written as one latin1 string (what Node's parser gave
 * us downstream round-trips byte for byte), and a small, strict parser for
 * response heads and chunked-body size lines, with limits. Anything it does
 * not understand is an error, never a guess: a proxy that guesses at
 * framing can be made to smuggle requests.
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** Response heads larger than this are refused (Envoy's default is 60 KiB). */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;
/** A chunk-size line (size and extensions) longer than this is malformed. */
export const MAX_CHUNK_LINE_BYTES = 1024;

/** A malformed or oversized message from the upstream. */
export class H1ProtocolError extends Error {
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = 'H1ProtocolError';
    this.code = code;
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Control characters other than horizontal tab are not allowed in field values. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const BAD_VALUE = /[\0-\x08\x0a-\x1f\x7f]/;
// No spaces or control characters in a request target.
const BAD_TARGET = /[\0-\x20\x7f]/;

/** Names Node keeps only the first of (its IncomingMessage rules, so relayed heads look the same as before). */
const SINGLE = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

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

/** Where the head ends (the index after its blank line), or -1 if it is not complete yet. */
export function headEnd(buf: Buffer, from: number): number {
  const i = buf.indexOf('\r\n\r\n', Math.max(0, from - 3), 'latin1');
  return i < 0 ? -1 : i + 4;
}

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

  const headers: IncomingHttpHeaders = {};
  let contentLength = -1;
  let chunked = false;
  let hasTe = false;
  let connection = '';
  let pos = lineEnd + 2;
  const end = text.length - 2;
  while (pos < end) {
    // Indexes into the head rather than a string per line: a proxy parses one head per request.
    const next = text.indexOf('\r\n', pos);
    const colon = text.indexOf(':', pos);
    if (colon <= pos || colon > next)
      throw new H1ProtocolError('INVALID_HEADER', 'malformed response header line');
    const rawName = text.slice(pos, colon);
    if (!TOKEN.test(rawName)) throw new H1ProtocolError('INVALID_HEADER', 'invalid response header name');
    const value = fieldValue(text, colon + 1, next);
    pos = next + 2;
    if (BAD_VALUE.test(value))
      throw new H1ProtocolError('INVALID_HEADER', `invalid characters in response header ${rawName}`);
    const name = lowerCaseName(rawName);
    if (name === 'content-length') {
      const n = parseLength(value);
      if (contentLength >= 0 && n !== contentLength)
        throw new H1ProtocolError('INVALID_CONTENT_LENGTH', 'conflicting content-length headers');
      contentLength = n;
    } else if (name === 'transfer-encoding') {
      hasTe = true;
      // Only the last coding decides the framing (RFC 9112 §6.3).
      const last = value
        .slice(value.lastIndexOf(',') + 1)
        .trim()
        .toLowerCase();
      chunked = last === 'chunked';
    } else if (name === 'connection') {
      connection = connection === '' ? value.toLowerCase() : `${connection},${value.toLowerCase()}`;
    }
    addHeader(headers, name, value);
  }
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

function parseLength(value: string): number {
  if (value === '' || value.length > 15)
    throw new H1ProtocolError('INVALID_CONTENT_LENGTH', 'invalid content-length in the response');
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9)
      throw new H1ProtocolError('INVALID_CONTENT_LENGTH', 'invalid content-length in the response');
    n = n * 10 + d;
  }
  return n;
}

/** The field value between `from` and `to`, without the optional whitespace (space, tab) around it. */
function fieldValue(text: string, from: number, to: number): string {
  while (from < to && isOws(text.charCodeAt(from))) from++;
  while (to > from && isOws(text.charCodeAt(to - 1))) to--;
  return text.slice(from, to);
}

function isOws(code: number): boolean {
  return code === 32 || code === 9;
}

/**
 * Header names as upstreams spell them ("Content-Type") mapped to their
 * lower case once, instead of a new string per header per response. A
 * dictionary object rather than a Map: its keys are V8's internalized
 * copies, where a Map would keep the name as sliced from the head and with
 * it the whole head. Bounded: an upstream inventing names only stops the
 * cache from growing.
 */
const lowerCaseNames: Record<string, string> = Object.create(null) as Record<string, string>;
let cachedNames = 0;
const MAX_CACHED_NAMES = 512;

function lowerCaseName(raw: string): string {
  const cached = lowerCaseNames[raw];
  if (cached !== undefined) return cached;
  const lower = raw.toLowerCase();
  if (lower !== raw && cachedNames < MAX_CACHED_NAMES) {
    lowerCaseNames[raw] = lower;
    cachedNames++;
  }
  return lower;
}

function hasToken(list: string, token: string): boolean {
  if (list === '') return false;
  for (const t of list.split(',')) if (t.trim() === token) return true;
  return false;
}

/** Node's IncomingMessage rules for repeated headers. */
export function addHeader(headers: IncomingHttpHeaders, name: string, value: string): void {
  const current = headers[name];
  if (current === undefined) {
    headers[name] = name === 'set-cookie' ? [value] : value;
    return;
  }
  if (name === 'set-cookie') {
    (current as string[]).push(value);
    return;
  }
  if (SINGLE.has(name)) return;
  headers[name] = `${current as string}${name === 'cookie' ? '; ' : ', '}${value}`;
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
