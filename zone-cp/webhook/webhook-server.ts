/**
 * The HTTPS server the Kubernetes API server calls the injection webhook
 * on (`POST /inject`), with `GET /healthz` for probes. Certificates can be
 * swapped at run time (`reloadCertificate`) without dropping the listener,
 * for when cert-manager or the zone CA rotates them.
 */

import https from 'node:https';
import type { AddressInfo } from 'node:net';

import { ErrorCodes, MeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { createInjectionWebhook } from './webhook-admission.js';
import type { InjectionWebhookOptions } from './webhook-admission.js';

export interface WebhookServerOptions {
  /** Serving certificate (chain allowed) for the Service DNS name the webhook configuration names. */
  certPem: string;
  keyPem: string;
  /** Default 0.0.0.0. */
  host?: string;
  /** Default 15017 (as istiod's injector); 0 picks a free port. */
  port?: number;
  webhook: InjectionWebhookOptions;
}

export interface WebhookServer {
  /** `https://host:port` */
  readonly url: string;
  readonly port: number;
  /** Serve new connections with another certificate. */
  reloadCertificate(certPem: string, keyPem: string): void;
  /** Stops listening and closes connections. Idempotent. */
  close(): Promise<void>;
}

export async function startWebhookServer(options: WebhookServerOptions): Promise<WebhookServer> {
  const logger = options.webhook.logger ?? createLogger('zone-cp.webhook');
  const inject = createInjectionWebhook({ ...options.webhook, logger });
  let server: https.Server;
  try {
    server = https.createServer({ cert: options.certPem, key: options.keyPem }, (req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/inject') {
        inject(req, res);
        return;
      }
      if (path === '/healthz' && req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok');
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: `no such endpoint: ${path ?? ''}` }));
    });
  } catch (err) {
    throw new MeshError(ErrorCodes.PKI, `webhook certificate or key is unusable: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const host = options.host ?? '0.0.0.0';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(
        new MeshError(
          ErrorCodes.CONFIG,
          `webhook cannot listen on ${host}:${options.port ?? 15017}: ${err.message}`,
        ),
      ),
    );
    server.listen(options.port ?? 15017, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host === '0.0.0.0' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  logger.info('injection webhook listening', { port });
  let closed: Promise<void> | undefined;
  return {
    url: `https://${shownHost}:${port}`,
    port,
    reloadCertificate(certPem, keyPem) {
      try {
        server.setSecureContext({ cert: certPem, key: keyPem });
      } catch (err) {
        throw new MeshError(
          ErrorCodes.PKI,
          `webhook certificate or key is unusable: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
