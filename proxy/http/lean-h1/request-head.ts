/**
 * The request heads the lean HTTP/1.1 server takes itself: an HTTP/1.1
 * request line with a common method, a Host, and a body that is absent or
 * framed by content-length. Everything else (chunked or other transfer
 * codings, Expect, upgrades, CONNECT, HTTP/1.0, anything malformed) is
 * left to `node:http`, which answers it exactly as it did before the lean
 * server existed — including the 400 and 431 a bad client gets.
 */

import type { IncomingHttpHeaders } from 'node:http';
import { hasToken, parseFieldBlock } from '../h1-fields.js';

export interface SimpleRequestHead {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** Body bytes that follow the head (0: none). */
  contentLength: number;
  /** The client asked to close the connection after this request. */
  close: boolean;
}

/** The methods taken here, keyed by themselves so that a method sliced from a head is replaced by a constant. */
const METHODS: Record<string, string> = Object.assign(Object.create(null) as Record<string, string>, {
  GET: 'GET',
  HEAD: 'HEAD',
  POST: 'POST',
  PUT: 'PUT',
  DELETE: 'DELETE',
  PATCH: 'PATCH',
  OPTIONS: 'OPTIONS',
});

const VERSION = ' HTTP/1.1';
/** No spaces or control characters in a request target. */
const BAD_TARGET = /[\0-\x20\x7f]/;

/**
 * Parses a complete head (`text` ends with the blank line, latin1), or
 * returns undefined when the request is not one this server takes.
 */
export function parseSimpleRequestHead(text: string): SimpleRequestHead | undefined {
  const lineEnd = text.indexOf('\r\n');
  const space = text.indexOf(' ');
  if (space <= 0 || lineEnd - space <= VERSION.length + 1) return undefined;
  const method = METHODS[text.slice(0, space)];
  if (method === undefined || !text.startsWith(VERSION, lineEnd - VERSION.length)) return undefined;
  const url = text.slice(space + 1, lineEnd - VERSION.length);
  if (BAD_TARGET.test(url)) return undefined;
  let fields;
  try {
    fields = parseFieldBlock(text, lineEnd + 2, text.length - 2, 'request');
  } catch {
    return undefined;
  }
  const { headers, connection } = fields;
  if (
    fields.hasTe ||
    // Node refuses a repeated content-length even when the values agree: so does it here, by handing it over.
    fields.contentLengthFields > 1 ||
    headers.host === undefined ||
    headers.expect !== undefined ||
    headers.upgrade !== undefined ||
    hasToken(connection, 'upgrade')
  ) {
    return undefined;
  }
  return {
    method,
    url,
    headers,
    contentLength: Math.max(0, fields.contentLength),
    close: hasToken(connection, 'close'),
  };
}
