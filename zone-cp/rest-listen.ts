/**
 * The zone REST API's HTTP(S) server: plain HTTP only on loopback, TLS
 * from PEM files otherwise, bounded header and request times, and a listen
 * that turns "port in use" into a clear configuration error.
 */

import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFile } from 'node:fs/promises';
import { isIP, type AddressInfo } from 'node:net';
import { ErrorCodes, MeshError } from '../core/errors.js';

export interface RestServer {
  server: Server;
  url: string;
  port: number;
}

export async function startRestServer(
  options: { host: string; port: number; tlsCertFile?: string; tlsKeyFile?: string },
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<RestServer> {
  const tls = await loadTls(options.tlsCertFile, options.tlsKeyFile);
  if (tls === undefined && !isLoopback(options.host)) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `refusing to serve plain HTTP on ${options.host}: give --tls-cert and --tls-key, or bind a loopback address`,
    );
  }
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    throw new MeshError(ErrorCodes.CONFIG, `port must be an integer 0-65535, got ${options.port}`);
  }
  const server: Server = tls === undefined ? createHttpServer(handler) : createHttpsServer(tls, handler);
  // Bounded header and request times: a slowloris client cannot hold the API.
  server.headersTimeout = 10_000;
  server.requestTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(
        new MeshError(
          ErrorCodes.CONFIG,
          err.code === 'EADDRINUSE'
            ? `port ${options.port} on ${options.host} is already in use`
            : `cannot listen on ${options.host}:${options.port}: ${err.message}`,
        ),
      );
    };
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `${tls === undefined ? 'http' : 'https'}://${formatHost(options.host)}:${port}`,
  };
}

async function loadTls(
  certFile?: string,
  keyFile?: string,
): Promise<{ cert: string; key: string } | undefined> {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) {
    throw new MeshError(ErrorCodes.CONFIG, 'give both --tls-cert and --tls-key, or neither');
  }
  const read = (path: string, flag: string) =>
    readFile(path, 'utf8').catch((err: Error) => {
      throw new MeshError(ErrorCodes.CONFIG, `cannot read ${flag} file ${path}: ${err.message}`);
    });
  return { cert: await read(certFile, '--tls-cert'), key: await read(keyFile, '--tls-key') };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

export function formatHost(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}
