/**
 * The gateway's admin server: readiness for load balancers and Kubernetes
 * probes, liveness, Prometheus metrics and the compiled routing table.
 * Paths follow Istio's gateway where one exists (`/healthz/ready`,
 * `/stats/prometheus`) so existing probes and scrape configs work.
 */

import http from 'node:http';
import type net from 'node:net';
import type { Registry } from '../core/metrics.js';

export interface AdminSource {
  notReadyReason(): string | undefined;
  describeTable(): unknown;
  readonly registry: Registry;
}

function send(res: http.ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json', JSON.stringify(body));
}

async function handle(
  source: AdminSource,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendJson(res, 405, {
      code: 'MESHFED_ERR_METHOD_NOT_ALLOWED',
      message: `method ${req.method} is not allowed`,
    });
    return;
  }
  switch (path) {
    case '/ready':
    case '/healthz/ready': {
      const reason = source.notReadyReason();
      if (reason === undefined) sendJson(res, 200, { ready: true });
      else sendJson(res, 503, { ready: false, reason });
      return;
    }
    case '/healthz':
      sendJson(res, 200, { alive: true });
      return;
    case '/metrics':
    case '/stats/prometheus':
      send(res, 200, source.registry.contentType, await source.registry.metrics());
      return;
    case '/config_dump':
      sendJson(res, 200, source.describeTable());
      return;
    default:
      sendJson(res, 404, { code: 'MESHFED_ERR_NOT_FOUND', message: `no such endpoint: ${path}` });
  }
}

export interface AdminServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Start the admin server on host:port (0 = free port). */
export async function startAdminServer(
  source: AdminSource,
  host: string,
  port: number,
): Promise<AdminServer> {
  const server = http.createServer((req, res) => {
    handle(source, req, res).catch((err: unknown) => {
      sendJson(res, 500, { code: 'MESHFED_ERR_INTERNAL', message: (err as Error).message });
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as net.AddressInfo).port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
