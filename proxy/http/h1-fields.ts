/**
 * HTTP/1.1 header fields, parsed one strict way for both directions: the
 * upstream client's response heads and the lean server's request heads.
 * Anything it does not understand is an error, never a guess: a proxy that
 * guesses at framing can be made to smuggle requests.
 */

import type { IncomingHttpHeaders } from 'node:http';

/** A malformed or oversized HTTP/1.1 message. */
export class H1ProtocolError extends Error {
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = 'H1ProtocolError';
    this.code = code;
  }
}

export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Control characters other than horizontal tab are not allowed in field values. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
export const BAD_VALUE = /[\0-\x08\x0a-\x1f\x7f]/;

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

/** Where the head ends (the index after its blank line), or -1 if it is not complete yet. */
export function headEnd(buf: Buffer, from: number): number {
  const i = buf.indexOf('\r\n\r\n', Math.max(0, from - 3), 'latin1');
  return i < 0 ? -1 : i + 4;
}

/** The header block of a message head, and what its framing headers said. */
export interface FieldBlock {
  headers: IncomingHttpHeaders;
  /** -1 when there is no content-length. */
  contentLength: number;
  /** How many content-length fields there were (repeats must agree; a request server may refuse any). */
  contentLengthFields: number;
  /** A transfer-encoding header is present. */
  hasTe: boolean;
  /** Its last coding is `chunked` (only the last one decides the framing, RFC 9112 §6.3). */
  chunked: boolean;
  /** The connection header's tokens, lower case, comma-joined ('' when absent). */
  connection: string;
}

/**
 * Parses the header lines of a head from `pos` to `end` (the index of the
 * blank line's CRLF) in `text` (latin1). `side` names the message in errors.
 */
export function parseFieldBlock(
  text: string,
  pos: number,
  end: number,
  side: 'request' | 'response',
): FieldBlock {
  const headers: IncomingHttpHeaders = {};
  let contentLength = -1;
  let contentLengthFields = 0;
  let chunked = false;
  let hasTe = false;
  let connection = '';
  while (pos < end) {
    // Indexes into the head rather than a string per line: a proxy parses one head per request.
    const next = text.indexOf('\r\n', pos);
    const colon = text.indexOf(':', pos);
    if (colon <= pos || colon > next)
      throw new H1ProtocolError('INVALID_HEADER', `malformed ${side} header line`);
    const rawName = text.slice(pos, colon);
    if (!TOKEN.test(rawName)) throw new H1ProtocolError('INVALID_HEADER', `invalid ${side} header name`);
    const value = fieldValue(text, colon + 1, next);
    pos = next + 2;
    if (BAD_VALUE.test(value))
      throw new H1ProtocolError('INVALID_HEADER', `invalid characters in ${side} header ${rawName}`);
    const name = lowerCaseName(rawName);
    if (name === 'content-length') {
      const n = parseLength(value, side);
      if (contentLength >= 0 && n !== contentLength)
        throw new H1ProtocolError('INVALID_CONTENT_LENGTH', 'conflicting content-length headers');
      contentLength = n;
      contentLengthFields++;
    } else if (name === 'transfer-encoding') {
      hasTe = true;
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
  return { headers, contentLength, contentLengthFields, hasTe, chunked, connection };
}

function parseLength(value: string, side: 'request' | 'response'): number {
  if (value === '' || value.length > 15)
    throw new H1ProtocolError('INVALID_CONTENT_LENGTH', `invalid content-length in the ${side}`);
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9)
      throw new H1ProtocolError('INVALID_CONTENT_LENGTH', `invalid content-length in the ${side}`);
    n = n * 10 + d;
  }
  return n;
}

/** The field value between `from` and `to`, without the optional whitespace (space, tab) around it. */
export function fieldValue(text: string, from: number, to: number): string {
  while (from < to && isOws(text.charCodeAt(from))) from++;
  while (to > from && isOws(text.charCodeAt(to - 1))) to--;
  return text.slice(from, to);
}

function isOws(code: number): boolean {
  return code === 32 || code === 9;
}

/**
 * Header names as peers spell them ("Content-Type") mapped to their lower
 * case once, instead of a new string per header per message. A dictionary
 * object rather than a Map: its keys are V8's internalized copies, where a
 * Map would keep the name as sliced from the head and with it the whole
 * head. Bounded: a peer inventing names only stops the cache from growing.
 */
const lowerCaseNames: Record<string, string> = Object.create(null) as Record<string, string>;
let cachedNames = 0;
const MAX_CACHED_NAMES = 512;

export function lowerCaseName(raw: string): string {
  const cached = lowerCaseNames[raw];
  if (cached !== undefined) return cached;
  const lower = raw.toLowerCase();
  if (lower !== raw && cachedNames < MAX_CACHED_NAMES) {
    lowerCaseNames[raw] = lower;
    cachedNames++;
  }
  return lower;
}

/** Whether a comma-separated list (lower case) holds `token`. */
export function hasToken(list: string, token: string): boolean {
  if (list === '') return false;
  for (const t of list.split(',')) if (t.trim() === token) return true;
  return false;
}

/** Node's IncomingMessage rules for repeated headers. */
export function addHeader(headers: IncomingHttpHeaders, name: string, value: string): void {
  // By type, not by presence: a header named after an Object.prototype member ("constructor") finds a
  // function here, which is not a value to join onto.
  const current: unknown = headers[name];
  if (typeof current === 'string') {
    if (!SINGLE.has(name)) headers[name] = `${current}${name === 'cookie' ? '; ' : ', '}${value}`;
  } else if (Array.isArray(current)) {
    (current as string[]).push(value);
  } else {
    headers[name] = name === 'set-cookie' ? [value] : value;
  }
}
