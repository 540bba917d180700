/**
 * Between HPACK's flat field lists and the header objects the proxy works
 * with: the checks RFC 9113 section 8.2 and 8.3 make of a request or
 * response head (lower-case names, pseudo-headers first and only the known
 * ones, no connection-specific fields), and the same rules when we send.
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { addHeader } from '../h1-fields.js';

/** Fields that describe one HTTP/1.1 connection and have no place in HTTP/2. */
const CONNECTION_SPECIFIC = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
]);

export interface RequestHead {
  method: string;
  path: string;
  /** The fields as Node's HTTP/2 API gives them: pseudo-headers included, repeats joined. */
  headers: IncomingHttpHeaders;
  /** The declared content-length, or -1. */
  contentLength: number;
}

export interface ResponseHead {
  status: number;
  headers: IncomingHttpHeaders;
  contentLength: number;
}

/** Why a head is malformed, for the log: the stream is reset with PROTOCOL_ERROR. */
export class MalformedHead extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedHead';
  }
}

// Token characters of RFC 9110 section 5.6.2, minus upper case (HTTP/2 names are lower case).
const NAME_CHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") NAME_CHAR[c.charCodeAt(0)] = 1;

function validName(name: string, from: number): boolean {
  if (name.length <= from) return false;
  for (let i = from; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c > 127 || NAME_CHAR[c] === 0) return false;
  }
  return true;
}

/** No NUL, CR or LF (RFC 9113 section 8.2.1), and no surrounding whitespace. */
function validValue(value: string): boolean {
  const n = value.length;
  if (n === 0) return true;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(n - 1);
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return false;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return false;
  }
  return true;
}

/** The value of a content-length field, or -1 when there is none; throws MalformedHead for anything but digits. */
function parseContentLength(value: string | string[] | undefined): number {
  if (value === undefined) return -1;
  const text = Array.isArray(value) ? (value[0] ?? '') : value;
  if (text === '' || text.length > 15) throw new MalformedHead(`content-length ${JSON.stringify(text)}`);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) throw new MalformedHead(`content-length ${JSON.stringify(text)}`);
    n = n * 10 + d;
  }
  return n;
}

/** Regular fields from `at` on; throws MalformedHead. */
function regularFields(fields: string[], at: number, headers: IncomingHttpHeaders): void {
  for (let i = at; i + 1 < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    if (name.charCodeAt(0) === 58 /* : */)
      throw new MalformedHead(`pseudo-header ${name} after a regular field`);
    if (!validName(name, 0)) throw new MalformedHead(`field name ${JSON.stringify(name)}`);
    if (!validValue(value)) throw new MalformedHead(`the value of ${name}`);
    if (CONNECTION_SPECIFIC.has(name)) throw new MalformedHead(`connection-specific field ${name}`);
    if (name === 'te' && value !== 'trailers') throw new MalformedHead(`te: ${value}`);
    const length = name === 'content-length' ? headers['content-length'] : undefined;
    // Repeats must agree (RFC 9110 8.6); Node's rules would keep the first and drop the rest unseen.
    if (length !== undefined && length !== value)
      throw new MalformedHead('conflicting content-length fields');
    addHeader(headers, name, value);
  }
}

/** A request head from a decoded field list (RFC 9113 section 8.3.1); throws MalformedHead. */
export function requestHead(fields: string[]): RequestHead {
  const headers: IncomingHttpHeaders = {};
  let method: string | undefined;
  let scheme: string | undefined;
  let path: string | undefined;
  let authority: string | undefined;
  let i = 0;
  for (; i + 1 < fields.length && (fields[i] as string).charCodeAt(0) === 58; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    if (!validValue(value)) throw new MalformedHead(`the value of ${name}`);
    if (name === ':method' && method === undefined) method = value;
    else if (name === ':scheme' && scheme === undefined) scheme = value;
    else if (name === ':path' && path === undefined) path = value;
    else if (name === ':authority' && authority === undefined) authority = value;
    else throw new MalformedHead(`pseudo-header ${name} (unknown or repeated)`);
    headers[name] = value;
  }
  if (method === undefined || !validName(method.toLowerCase(), 0))
    throw new MalformedHead('no valid :method');
  if (method === 'CONNECT') {
    if (authority === undefined || scheme !== undefined || path !== undefined) {
      throw new MalformedHead('CONNECT takes :authority only');
    }
  } else if (scheme === undefined || path === undefined || path === '') {
    throw new MalformedHead('a request without :scheme or :path');
  } else if (path.charCodeAt(0) !== 47 /* / */ && !(path === '*' && method === 'OPTIONS')) {
    // Origin form only (RFC 9113 8.3.1): the authority travels in :authority, never in the path.
    throw new MalformedHead(`:path ${JSON.stringify(path.slice(0, 64))} is not a path`);
  }
  regularFields(fields, i, headers);
  return { method, path: path ?? '', headers, contentLength: parseContentLength(headers['content-length']) };
}

/** A response head, or an informational one (1xx), from a decoded field list; throws MalformedHead. */
export function responseHead(fields: string[]): ResponseHead {
  if (fields[0] !== ':status' || !/^[1-5]\d\d$/.test(fields[1] ?? '')) {
    throw new MalformedHead('a response without a valid :status first');
  }
  const headers: IncomingHttpHeaders = {};
  headers[':status'] = fields[1];
  regularFields(fields, 2, headers);
  return { status: Number(fields[1]), headers, contentLength: parseContentLength(headers['content-length']) };
}

/** Trailers: regular fields only; throws MalformedHead. */
export function trailerFields(fields: string[]): IncomingHttpHeaders {
  const headers: IncomingHttpHeaders = {};
  regularFields(fields, 0, headers);
  return headers;
}

/**
 * Appends `headers` to `out` as fields to send: names lower-cased,
 * repeats as separate fields, connection-specific fields and Host left
 * out (Host travels as :authority), `te` only as `trailers`. Throws an
 * Error naming the field for a name or value HTTP/2 cannot carry, as
 * Node's writeHead does.
 */
export function appendFields(out: string[], headers: OutgoingHttpHeaders): string[] {
  for (const key in headers) {
    const value = headers[key];
    if (value === undefined) continue;
    const name = isLowerCase(key) ? key : key.toLowerCase();
    if (CONNECTION_SPECIFIC.has(name) || name === 'host' || name.charCodeAt(0) === 58) continue;
    if (!validName(name, 0)) throw new Error(`invalid header name ${JSON.stringify(key)}`);
    if (Array.isArray(value)) {
      for (const v of value) pushField(out, name, String(v));
    } else {
      const text = typeof value === 'string' ? value : String(value);
      if (name === 'te' && text !== 'trailers') continue;
      pushField(out, name, text);
    }
  }
  return out;
}

function pushField(out: string[], name: string, value: string): void {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d || c > 0xff) {
      throw new Error(`invalid character in the value of header ${JSON.stringify(name)}`);
    }
  }
  out.push(name, value);
}

function isLowerCase(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) return false;
  }
  return true;
}
