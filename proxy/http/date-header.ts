/**
 * The Date header of node:http and node:http2 servers, stamped from
 * core/utc-format instead of by Node: Node formats it with
 * Date#toUTCString, whose first call initialises ICU's time zone data
 * (about 1 MiB of resident memory, core/utc-format.ts). The header is the
 * same, and a Date the handler gives (an upstream's) still wins.
 */

import type http from 'node:http';
import type http2 from 'node:http2';
import { currentHttpDate } from '../../core/utc-format.js';

type DatedResponse = http.ServerResponse | http2.Http2ServerResponse;

function stampDate(_req: unknown, res: DatedResponse): void {
  res.sendDate = false;
  res.setHeader('date', currentHttpDate());
}

/** Every response of `server` gets its Date from core/utc-format, before any other 'request' listener runs. */
export function stampDateHeaders<S extends http.Server | http2.Http2Server>(server: S): S {
  server.prependListener('request', stampDate);
  return server;
}
