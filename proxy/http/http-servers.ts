/**
 * The HTTP servers behind the proxy's listeners (they never listen
 * themselves: sockets are handed to them after protocol sniffing or TLS),
 * with the limits that protect them from bad clients, and the answer to a
 * malformed request.
 */

import http from 'node:http';
import type net from 'node:net';
import type { Socket } from 'node:net';
import type { ProxyContext } from '../proxy-context.js';
import { DatedServerResponse } from './date-header.js';
import { rawHttpError } from './upgrade-tunnel.js';

export interface HttpServerLimits {
  /** Largest request head (request line + headers); beyond it 431. */
  maxHeaderBytes: number;
  /** A client must send its whole request head within this long (slowloris); then 408. */
  headersTimeoutMs: number;
  /** Idle keep-alive connections close after this long. */
  keepAliveTimeoutMs: number;
}

/** HTTP/1.1 errors Node's parser reports, as the status the client gets. */
function clientErrorStatus(err: NodeJS.ErrnoException): { status: number; reason: string } {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, reason: 'headers_too_large' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, reason: 'header_timeout' };
    case 'ECONNRESET':
    case 'EPIPE':
      return { status: 0, reason: 'client_reset' };
    default:
      return { status: 400, reason: 'bad_request' };
  }
}

/** Node's default clientError reply, counted and with Envoy-like bodies. */
export function onClientError(ctx: ProxyContext, err: NodeJS.ErrnoException, socket: Socket): void {
  const { status, reason } = clientErrorStatus(err);
  ctx.stats.downstreamErrors.inc({ reason });
  const pending = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (status === 0 || pending?.headersSent === true) {
    socket.destroy();
    return;
  }
  const text =
    status === 431
      ? 'request headers too large'
      : status === 408
        ? 'request header timeout'
        : 'malformed HTTP request';
  rawHttpError(socket, status, text);
}

export function createHttp1Server(limits: HttpServerLimits): http.Server {
  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    // A streaming request body (gRPC over h1, uploads) may take as long as it likes.
    requestTimeout: 0,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
    noDelay: true,
    ServerResponse: DatedServerResponse,
  });
  // The server never listens itself (sockets are handed to it), but its header timeout and idle-connection
  // tracking only start on 'listening': start them now.
  server.emit('listening');
  return server;
}

/** Listens and resolves the bound port; refusals become MeshError(CONFIG) naming the address. */
export function listenOn(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.removeListener('error', onError);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}
