/**
 * What the inbound and outbound listeners share: an accepting TCP server
 * whose sockets are sniffed and handed to an HTTP/1.1 or h2c server (they
 * never listen themselves; HTTP/1.1 goes to the lean server first, which
 * passes what it does not serve on to `node:http`), the connections they hold, and one way to shut
 * down. Subclasses decide what an accepted socket is and answer upgrades.
 */

import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type http2 from 'node:http2';
import type { Http2ServerRequest, Http2ServerResponse, Http2Session } from 'node:http2';
import net, { type Socket } from 'node:net';
import type { ProxyContext } from '../proxy-context.js';
import { LeanH1Server } from './lean-h1/lean-server.js';
import type { LeanRequest } from './lean-h1/lean-request.js';
import type { LeanResponse } from './lean-h1/lean-response.js';
import { handOverToHttp1 } from './protocol-sniff.js';
import {
  createH2cServer,
  createHttp1Server,
  listenOn,
  onClientError,
  type HttpServerLimits,
} from './http-servers.js';

/** Where request handlers find the proxy context (handlers are shared functions, not per-listener closures). */
export const kContext = Symbol('meshfed.context');
export type ContextHolder<T> = T & { [kContext]?: ProxyContext };

/** Called for requests of both HTTP/1.1 servers: the lean one and, for what it hands over, `node:http`'s. */
export type H1RequestHandler = (
  this: ContextHolder<http.Server>,
  req: IncomingMessage | LeanRequest,
  res: ServerResponse | LeanResponse,
) => void;
export type H2RequestHandler = (
  this: ContextHolder<http2.Http2Server>,
  req: Http2ServerRequest,
  res: Http2ServerResponse,
) => void;

export abstract class HttpListener {
  protected readonly ctx: ProxyContext;
  protected readonly limits: HttpServerLimits;
  /** Plain HTTP/1.1 requests; it hands everything else to `h1`. */
  protected readonly lean: LeanH1Server;
  protected readonly h1: http.Server;
  protected readonly h2: http2.Http2Server;
  protected readonly server: net.Server;
  protected readonly sockets = new Set<Socket>();
  protected readonly sessions = new Set<Http2Session>();

  constructor(
    ctx: ProxyContext,
    limits: HttpServerLimits,
    onH1Request: H1RequestHandler,
    onH2Request: H2RequestHandler,
  ) {
    this.ctx = ctx;
    this.limits = limits;
    this.h1 = createHttp1Server(limits);
    (this.h1 as ContextHolder<http.Server>)[kContext] = ctx;
    this.h1.on('request', onH1Request);
    this.h1.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) =>
      onClientError(ctx, err, socket),
    );
    this.h1.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.upgrade(req, socket, head),
    );
    this.lean = new LeanH1Server(limits, {
      onRequest: (req, res) => onH1Request.call(this.h1, req, res),
      handOver: (socket, unread) => handOverToHttp1(socket, unread, this.h1),
    });
    this.h2 = createH2cServer();
    (this.h2 as ContextHolder<http2.Http2Server>)[kContext] = ctx;
    this.h2.on('request', onH2Request);
    this.h2.on('session', (session: Http2Session) => this.onSession(session));
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  /** A socket the TCP server accepted. */
  protected abstract accept(socket: Socket): void;

  /** An HTTP/1.1 `Upgrade` request (WebSocket and the like). */
  protected abstract upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void;

  /** A new h2c session: tracked so close() and destroy() reach it. */
  protected onSession(session: Http2Session): void {
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
  }

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
    for (const s of this.sessions) s.close();
  }

  closeIdle(): void {
    this.lean.closeIdle();
    this.h1.closeIdleConnections();
  }

  /** Stops accepting and drops every connection, busy or not. */
  destroy(): void {
    this.server.close();
    this.h1.close(() => undefined);
    this.h2.close();
    for (const s of this.sessions) s.destroy();
    for (const s of this.sockets) s.destroy();
  }
}
