/**
 * Prometheus scrape endpoint (15090): `/stats/prometheus` as Envoy serves
 * it, and `/metrics`.
 */

import http from 'node:http';
import type { Registry } from 'prom-client';
import { DatedServerResponse } from '../http/date-header.js';

export function createMetricsServer(registry: Registry): http.Server {
  return http.createServer({ ServerResponse: DatedServerResponse }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/stats/prometheus' && path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: scrape /stats/prometheus\n');
      return;
    }
    registry
      .metrics()
      .then((text) => {
        res.writeHead(200, {
          'content-type': registry.contentType,
          'content-length': Buffer.byteLength(text),
        });
        res.end(text);
      })
      .catch((err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
      });
  });
}
