/**
 * The admin endpoint (15000, loopback only): /ready, /config_dump, /stats,
 * /certs, /clusters — what an operator reaches for when a request goes
 * wrong, in the spirit of Envoy's admin API.
 */

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { DatedServerResponse } from '../http/date-header.js';

export interface AdminSource {
  /** Undefined when ready, else why not. */
  notReadyReason(): string | undefined;
  configDump(): unknown;
  statsText(): string;
  statsJson(): unknown;
  certs(): unknown;
  clusters(): unknown;
}

function send(res: ServerResponse, status: number, body: string, type: string): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

function json(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, JSON.stringify(value, null, 2) + '\n', 'application/json');
}

export function createAdminServer(source: AdminSource): http.Server {
  return http.createServer(
    { ServerResponse: DatedServerResponse },
    (req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? '/', 'http://admin');
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, 'only GET\n', 'text/plain');
        return;
      }
      switch (url.pathname) {
        case '/ready': {
          const reason = source.notReadyReason();
          if (reason === undefined) send(res, 200, 'LIVE\n', 'text/plain');
          else send(res, 503, `NOT READY: ${reason}\n`, 'text/plain');
          return;
        }
        case '/config_dump':
          json(res, 200, source.configDump());
          return;
        case '/stats':
          if (url.searchParams.get('format') === 'json') json(res, 200, source.statsJson());
          else send(res, 200, source.statsText(), 'text/plain');
          return;
        case '/certs':
          json(res, 200, source.certs());
          return;
        case '/clusters':
          json(res, 200, source.clusters());
          return;
        case '/':
          send(res, 200, 'meshfed proxy admin: /ready /config_dump /stats /certs /clusters\n', 'text/plain');
          return;
        default:
          send(res, 404, 'not found\n', 'text/plain');
      }
    },
  );
}
