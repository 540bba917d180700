/**
 * Responses of the sidecar's node:http servers that write their own Date
 * header: Node would format it with Date#toUTCString, whose first call
 * initialises ICU's time zone data (about 1 MiB of resident memory,
 * core/utc-format.ts). Servers take this class as their `ServerResponse`,
 * so every head goes through it, the answers Node writes itself (a 417 to
 * an unknown Expect) included. (The lean servers date their heads
 * themselves.) The Date is taken when the head is written, as Node takes it,
 * and a Date the handler gives (an upstream's) wins. A head given as a raw
 * array is written as given; nothing in the proxy writes one.
 */

import http, { type OutgoingHttpHeader, type OutgoingHttpHeaders } from 'node:http';
import { currentHttpDate } from '../../core/utc-format.js';

type HeadHeaders = OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined;

function hasDate(headers: OutgoingHttpHeaders): boolean {
  for (const name in headers) {
    if (name.length === 4 && name.toLowerCase() === 'date' && headers[name] !== undefined) return true;
  }
  return false;
}

/** `headers` with a Date added when neither they nor an earlier setHeader give one. */
function withDate(res: { hasHeader(name: string): boolean }, headers: HeadHeaders): HeadHeaders {
  if (Array.isArray(headers) || res.hasHeader('date')) return headers;
  if (headers === undefined) return { date: currentHttpDate() };
  return hasDate(headers) ? headers : { ...headers, date: currentHttpDate() };
}

export class DatedServerResponse<
  Request extends http.IncomingMessage = http.IncomingMessage,
> extends http.ServerResponse<Request> {
  constructor(req: Request) {
    super(req);
    this.sendDate = false;
  }

  override writeHead(statusCode: number, reason?: string | HeadHeaders, headers?: HeadHeaders): this {
    if (typeof reason === 'string') return super.writeHead(statusCode, reason, withDate(this, headers));
    return super.writeHead(statusCode, withDate(this, reason));
  }
}
