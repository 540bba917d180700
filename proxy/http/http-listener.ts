/**
 * What the inbound and outbound listeners share: an accepting TCP server
 * whose sockets are sniffed and handed to an HTTP/1.1 or HTTP/2 server
 * (they never listen themselves; HTTP/1.1 goes to the lean server first,
 * which passes what it does not serve on to `node:http`; HTTP/2, h2c or
 * over TLS, to the lean HTTP/2 server), the connections they hold, and one
 * way to shut down. Subclasses decide what an accepted socket is and
 * answer upgrades.
 */

import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net, { type Socket } from 'node:net';
import type { ProxyContext } from '../proxy-context.js';
import { LeanH1Server } from './lean-h1/lean-server.js';
import type { LeanRequest } from './lean-h1/lean-request.js';
import type { LeanResponse } from './lean-h1/lean-response.js';
import { LeanH2Server } from './lean-h2/h2-server.js';
import type { H2Response } from './lean-h2/h2-response.js';
import { handOverToHttp1 } from './protocol-sniff.js';
import { createHttp1Server, listenOn, onClientError, type HttpServerLimits } from './http-servers.js';

/** Where request handlers find the proxy context (handlers are shared functions, not per-listener closures). */
export const kContext = Symbol('meshfed.context');
export type ContextHolder<T> = T & { [kContext]?: ProxyContext };

/**
 * Called for the requests of every server: the lean HTTP/1.1 one, `node:http`
 * for what it hands over, and the lean HTTP/2 one (its requests are
 * LeanRequests with `httpVersionMajor` 2).
 */
export type RequestHandler = (
  this: ContextHolder<http.Server>,
  req: IncomingMessage | LeanRequest,
  res: ServerResponse | LeanResponse | H2Response,
) => void;

export abstract class HttpListener {
  protected readonly ctx: ProxyContext;
  protected readonly limits: HttpServerLimits;
  /** Plain HTTP/1.1 requests; it hands everything else to `h1`. */
  protected readonly lean: LeanH1Server;
  protected readonly h1: http.Server;
  /** HTTP/2: h2c, and TLS connections that chose h2 by ALPN. */
  protected readonly h2: LeanH2Server;
  protected readonly server: net.Server;
  protected readonly sockets = new Set<Socket>();

  constructor(ctx: ProxyContext, limits: HttpServerLimits, onRequest: RequestHandler) {
    this.ctx = ctx;
    this.limits = limits;
    this.h1 = createHttp1Server(limits);
    (this.h1 as ContextHolder<http.Server>)[kContext] = ctx;
    this.h1.on('request', onRequest);
    this.h1.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) =>
      onClientError(ctx, err, socket),
    );
    this.h1.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.upgrade(req, socket, head),
    );
    this.lean = new LeanH1Server(limits, {
      onRequest: (req, res) => onRequest.call(this.h1, req, res),
      handOver: (socket, unread) => handOverToHttp1(socket, unread, this.h1),
    });
    this.h2 = new LeanH2Server(limits, (req, res) => onRequest.call(this.h1, req, res));
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  /** A socket the TCP server accepted. */
  protected abstract accept(socket: Socket): void;

  /** An HTTP/1.1 `Upgrade` request (WebSocket and the like). */
  protected abstract upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void;

  /** Tracks a socket until it closes, so destroy() reaches it. */
  protected track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  listen(port: number, host: string): Promise<number> {
    return listenOn(this.server, port, host);
  }

  /** Stops accepting; idle keep-alive connections close now, busy ones after their response. */
  close(): void {
    this.server.close();
    this.lean.close();
    this.h1.closeIdleConnections();
    this.h2.close();
  }

  closeIdle(): void {
    this.lean.closeIdle();
    this.h1.closeIdleConnections();
    this.h2.closeIdle();
  }

  /** Stops accepting and drops every connection, busy or not. */
  destroy(): void {
    this.server.close();
    this.h1.close(() => undefined);
    this.h2.destroy();
    for (const s of this.sockets) s.destroy();
  }
}
