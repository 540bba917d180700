/**
 * The inbound listener (15006). One port takes mTLS from peer proxies
 * (directly or through an east-west gateway) and, on PERMISSIVE ports,
 * plaintext. mTLS: the client certificate must chain to the trust roots
 * (OpenSSL refuses an unknown CA or an expired certificate during the
 * handshake) and carry a SPIFFE ID of this trust domain; the SNI's port
 * picks the inbound port, whose protocol picks the handler — HTTP/1.1 or
 * HTTP/2 by ALPN, or opaque TCP piped to the app. Plaintext to a STRICT
 * port is cut without an answer, as Istio does.
 */

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { monotonicMs } from '../../core/clock.js';
import { parseMeshSni } from '../../core/mesh/sni.js';
import { parseSpiffeId } from '../../core/pki/spiffe.js';
import type { InboundPortConfig } from '../config/config-types.js';
import { firstHeader, MESH_SOURCE_HEADER } from '../http/http-headers.js';
import { sendLocalReply } from '../http/local-reply.js';
import { recordTunnelMetrics } from '../http/exchange-telemetry.js';
import { HttpListener, kContext, type ContextHolder } from '../http/http-listener.js';
import { handOverByUnshift, sniffProtocol } from '../http/protocol-sniff.js';
import { rawHttpError, tunnelUpgrade, upgradeRequestHead } from '../http/upgrade-tunnel.js';
import type { HttpServerLimits } from '../http/http-servers.js';
import type { ActiveConfig, ProxyContext } from '../proxy-context.js';
import type { DownstreamRequest, DownstreamResponse } from '../http/downstream.js';
import type { LeanRequest } from '../http/lean-h1/lean-request.js';
import type { LeanResponse } from '../http/lean-h1/lean-response.js';
import type { H2Response } from '../http/lean-h2/h2-response.js';
import { inboundRequestTarget } from '../http/request-target.js';
import { splice } from '../tcp/tcp-splice.js';
import { peerSpiffeId } from '../tls/tls-material.js';
import { authzRequestOf, InboundExchange } from './inbound-exchange.js';
import { kConn, newConn, parseSourceHeader, type ConnHolder, type InboundConn } from './inbound-conn.js';

/** TLS failures a peer causes, as bounded metric reasons. */
function tlsRefusalReason(err: NodeJS.ErrnoException): string {
  const text = `${err.code ?? ''} ${err.message}`.toLowerCase();
  if (text.includes('expired')) return 'peer_cert_expired';
  if (text.includes('did_not_return') || text.includes('did not return')) return 'no_client_cert';
  if (
    text.includes('unknown ca') ||
    text.includes('unable to get') ||
    text.includes('self signed') ||
    text.includes('self-signed') ||
    text.includes('certificate verify failed')
  )
    return 'untrusted_peer_cert';
  if (text.includes('no_certificate') || text.includes('no shared cipher') || text.includes('no certificate'))
    return 'no_certificate';
  if (text.includes('wrong version') || text.includes('http request')) return 'not_tls';
  if (text.includes('econnreset') || text.includes('socket hang up')) return 'client_reset';
  return 'tls_handshake_error';
}

/** Why OpenSSL did not verify the peer's chain, as a bounded metric reason. */
function verifyRefusalReason(socket: TLSSocket): string {
  const cert = socket.getPeerCertificate(false);
  if (cert === undefined || Object.keys(cert).length === 0) return 'no_client_cert';
  const code = String(socket.authorizationError ?? '');
  if (code === 'CERT_HAS_EXPIRED') return 'peer_cert_expired';
  if (code === 'CERT_NOT_YET_VALID') return 'peer_cert_not_yet_valid';
  if (
    code.startsWith('UNABLE_TO_GET_ISSUER_CERT') ||
    code === 'SELF_SIGNED_CERT_IN_CHAIN' ||
    code === 'DEPTH_ZERO_SELF_SIGNED_CERT' ||
    code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
    code === 'CERT_SIGNATURE_FAILURE'
  ) {
    return 'untrusted_peer_cert';
  }
  return 'peer_cert_invalid';
}

/** The port a plaintext request addresses: the Host's port, else the only (or first HTTP) port. */
function plaintextPort(active: ActiveConfig, host: string | undefined): InboundPortConfig | undefined {
  const inbound = active.config.inbound;
  if (host !== undefined) {
    const colon = host.lastIndexOf(':');
    if (colon > 0 && !host.endsWith(']')) {
      const p = inbound.byPort.get(Number(host.slice(colon + 1)));
      if (p !== undefined) return p;
    }
  }
  if (inbound.ports.length === 1) return inbound.ports[0];
  return inbound.ports.find((p) => p.protocol !== 'tcp');
}

export class InboundListener extends HttpListener {
  readonly #tls: tls.Server;

  constructor(ctx: ProxyContext, limits: HttpServerLimits) {
    super(ctx, limits, onRequest);
    this.#tls = tls.createServer({
      requestCert: true,
      // Verified in #secure: Node would drop a refused peer silently, and we want the reason in a metric.
      rejectUnauthorized: false,
      ALPNProtocols: ['h2', 'http/1.1'],
      minVersion: 'TLSv1.2',
      handshakeTimeout: limits.headersTimeoutMs,
    });
    this.#tls.on('secureConnection', (socket: TLSSocket) => this.#secure(socket));
    this.#tls.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      ctx.stats.inboundRefused.inc({ reason: tlsRefusalReason(err) });
      ctx.logger.debug('inbound TLS handshake refused', { err, remote: socket.remoteAddress });
      socket.destroy();
    });
  }

  /** New credentials: new handshakes use them, established connections keep theirs. */
  setSecureContext(options: tls.SecureContextOptions): void {
    this.#tls.setSecureContext({ ...options, minVersion: 'TLSv1.2' });
  }

  protected accept(socket: Socket): void {
    this.track(socket);
    sniffProtocol(socket, this.limits.headersTimeoutMs, {
      decide: (protocol, s, first) => {
        const ctx = this.ctx;
        if (protocol === 'tls') {
          if (ctx.material() === undefined) {
            ctx.stats.inboundRefused.inc({ reason: 'no_certificate' });
            s.destroy();
            return;
          }
          handOverByUnshift(s, first, this.#tls);
          return;
        }
        const active = ctx.active();
        if (active === undefined || active.config.inbound.allStrict) {
          // STRICT: plaintext is reset without an answer, like Istio's sidecar.
          ctx.stats.inboundRefused.inc({
            reason: active === undefined ? 'no_config' : 'plaintext_on_strict',
          });
          s.destroy();
          return;
        }
        (s as Socket & ConnHolder)[kConn] = newConn(false, s.remoteAddress ?? '', s.localAddress ?? '');
        if (protocol === 'h2c') this.h2.accept(s, first);
        else this.lean.accept(s, first);
      },
    });
  }

  #secure(socket: TLSSocket): void {
    const ctx = this.ctx;
    socket.on('error', () => socket.destroy());
    this.track(socket);
    const active = ctx.active();
    if (active === undefined) {
      ctx.stats.inboundRefused.inc({ reason: 'no_config' });
      socket.destroy();
      return;
    }
    if (!socket.authorized) {
      ctx.stats.inboundRefused.inc({ reason: verifyRefusalReason(socket) });
      ctx.logger.debug('inbound peer certificate refused', {
        error: String(socket.authorizationError),
        remote: socket.remoteAddress,
      });
      socket.destroy();
      return;
    }
    const conn = newConn(true, socket.remoteAddress ?? '', socket.localAddress ?? '');
    conn.spiffeId = peerSpiffeId(socket);
    let id;
    try {
      id = parseSpiffeId(conn.spiffeId);
    } catch {
      id = undefined;
    }
    if (id === undefined) {
      ctx.stats.inboundRefused.inc({ reason: 'peer_without_spiffe_id' });
      socket.destroy();
      return;
    }
    if (id.trustDomain !== active.config.trustDomain) {
      ctx.stats.inboundRefused.inc({ reason: 'wrong_trust_domain' });
      socket.destroy();
      return;
    }
    ctx.stats.inboundHandshakes.inc({ resumed: socket.isSessionReused() ? 'true' : 'false' });
    conn.principal = `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
    conn.namespace = id.namespace;
    const servername = typeof socket.servername === 'string' ? socket.servername : '';
    conn.sni = servername;
    const sni = parseMeshSni(servername);
    const inbound = active.config.inbound;
    let port: InboundPortConfig | undefined;
    if (sni !== undefined) port = inbound.byPort.get(sni.port);
    else if (inbound.ports.length === 1) port = inbound.ports[0];
    if (port === undefined) {
      ctx.stats.inboundRefused.inc({ reason: sni === undefined ? 'not_a_mesh_sni' : 'unknown_port' });
      socket.destroy();
      return;
    }
    conn.port = port;
    (socket as TLSSocket & ConnHolder)[kConn] = conn;
    if (port.protocol === 'tcp') {
      this.#tcp(active, conn, port, socket);
      return;
    }
    if (socket.alpnProtocol === 'h2') this.h2.accept(socket, undefined);
    else this.lean.accept(socket, undefined);
  }

  #tcp(active: ActiveConfig, conn: InboundConn, port: InboundPortConfig, socket: TLSSocket): void {
    const ctx = this.ctx;
    const authz = active.config.inbound.authz;
    if (!authz.empty) {
      const decision = authz.evaluate(authzRequestOf(conn, port, undefined, ''));
      if (!decision.allowed) {
        ctx.stats.rbacDenied.inc({ policy: decision.policy || '(no ALLOW policy matched)' });
        socket.destroy();
        return;
      }
    }
    const app = net.connect({ host: ctx.appHost, port: port.targetPort, noDelay: true });
    const base = ctx.metrics.base({
      reporter: 'destination',
      source: parseSourceHeader(undefined, conn.spiffeId, conn.namespace),
      destination: active.self,
      service: sniService(conn.sni, active),
      serviceName: conn.sni.split('.')[2] ?? active.self.canonical_service,
      serviceNamespace: conn.sni.split('.')[3] ?? active.self.workload_namespace,
      security: 'mutual_tls',
    });
    const onError = (): void => {
      const series = ctx.metrics.tcp(base, 'UF');
      series.opened++;
      series.closed++;
      socket.destroy();
    };
    app.once('error', onError);
    app.once('connect', () => {
      app.removeListener('error', onError);
      ctx.metrics.tcp(base).opened++;
      splice(socket, app, ctx.tunnels, (result) => {
        const series = ctx.metrics.tcp(base, result.error === undefined ? '-' : 'UC');
        series.closed++;
        series.sent += result.sent;
        series.received += result.received;
      });
    });
  }

  protected upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const ctx = this.ctx;
    socket.on('error', () => socket.destroy());
    const active = ctx.active();
    const conn = (socket as Socket & ConnHolder)[kConn];
    if (active === undefined || conn === undefined) {
      rawHttpError(socket, 503, 'proxy has no configuration yet');
      return;
    }
    const port = conn.port ?? plaintextPort(active, req.headers.host);
    if (port === undefined) {
      rawHttpError(socket, 404, 'no inbound port for this request');
      return;
    }
    if (!conn.secure && port.mtls === 'STRICT') {
      ctx.stats.inboundRefused.inc({ reason: 'plaintext_on_strict' });
      socket.destroy();
      return;
    }
    const target = inboundRequestTarget(req.url ?? '/', req.method ?? 'GET');
    if (target === undefined) {
      rawHttpError(socket, 400, 'Bad Request: the request target is not a path');
      return;
    }
    const url = target.path;
    const authz = active.config.inbound.authz;
    if (!authz.empty) {
      const q = url.indexOf('?');
      const decision = authz.evaluate(authzRequestOf(conn, port, req, q < 0 ? url : url.slice(0, q)));
      if (!decision.allowed) {
        ctx.stats.rbacDenied.inc({ policy: decision.policy || '(no ALLOW policy matched)' });
        rawHttpError(socket, 403, 'RBAC: access denied');
        return;
      }
    }
    const app = net.connect({ host: ctx.appHost, port: port.targetPort, noDelay: true });
    const extra: Record<string, string> = { 'x-forwarded-proto': conn.secure ? 'https' : 'http' };
    if (conn.secure)
      extra['x-forwarded-client-cert'] = `By=${ctx.material()?.spiffeId ?? ''};URI=${conn.spiffeId}`;
    const requestHead = upgradeRequestHead(
      req,
      url,
      target.authority ?? req.headers.host ?? `127.0.0.1:${port.targetPort}`,
      extra,
    );
    const onError = (): void =>
      rawHttpError(
        socket,
        503,
        'upstream connect error or disconnect/reset before headers. reset reason: connection failure',
      );
    app.once('error', onError);
    app.once('connect', () => {
      app.removeListener('error', onError);
      const start = monotonicMs();
      tunnelUpgrade(socket, app, requestHead, head, ctx.tunnels, (status, result) => {
        const base = ctx.metrics.base({
          reporter: 'destination',
          source: parseSourceHeader(
            firstHeader(req.headers[MESH_SOURCE_HEADER]),
            conn.spiffeId,
            conn.namespace,
          ),
          destination: active.self,
          service: sniService(conn.sni, active),
          serviceName: conn.sni.split('.')[2] ?? active.self.canonical_service,
          serviceNamespace: conn.sni.split('.')[3] ?? active.self.workload_namespace,
          security: conn.secure ? 'mutual_tls' : 'none',
        });
        recordTunnelMetrics(ctx, base, status, result, start);
      });
    });
  }
}

function sniService(sni: string, active: ActiveConfig): string {
  const parts = sni.split('.');
  const svc = parts[2] ?? active.self.canonical_service;
  const ns = parts[3] ?? active.self.workload_namespace;
  return `${svc}.${ns}.svc.cluster.local`;
}

function onRequest(
  this: ContextHolder<http.Server>,
  req: IncomingMessage | LeanRequest,
  res: ServerResponse | LeanResponse | H2Response,
): void {
  const ctx = this[kContext];
  const conn = (req.socket as Socket & ConnHolder)[kConn];
  if (ctx !== undefined && conn !== undefined) handleInbound(ctx, conn, req, res);
  else res.destroy();
}

function handleInbound(
  ctx: ProxyContext,
  conn: InboundConn,
  req: DownstreamRequest,
  res: DownstreamResponse,
): void {
  const start = monotonicMs();
  const active = ctx.active();
  if (active === undefined) {
    sendLocalReply(res, 503, 'proxy has no configuration yet', false);
    return;
  }
  let port = conn.port;
  if (!conn.secure) {
    port = plaintextPort(active, firstHeader(req.headers[':authority']) ?? req.headers.host);
    if (port !== undefined && port.mtls === 'STRICT') {
      ctx.stats.inboundRefused.inc({ reason: 'plaintext_on_strict' });
      req.socket.destroy();
      return;
    }
  } else if (port !== undefined) {
    // A port may have lost its listing in a newer snapshot: re-read it from the active config.
    port = active.config.inbound.byPort.get(port.port) ?? port;
  }
  if (port === undefined) {
    sendLocalReply(res, 404, 'no inbound port for this request', false);
    return;
  }
  if (ctx.draining() && 'shouldKeepAlive' in res) res.shouldKeepAlive = false;
  const exchange = new InboundExchange(ctx, active, conn, port, req, res, start);
  try {
    exchange.start();
  } catch (err) {
    // A bug must cost one request, never the process.
    ctx.logger.error('inbound request failed unexpectedly', { err, url: req.url });
    exchange.localReply(500, 'internal proxy error', '-');
  }
}
