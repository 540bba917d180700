/**
 * The outbound listener (15001): apps send plain HTTP/1.1 (as an HTTP
 * proxy with absolute-form URIs, or with the Host header naming the
 * service), HTTP/2 with prior knowledge (h2c, gRPC), WebSocket upgrades
 * and CONNECT tunnels for opaque TCP, all on one port. Malformed requests
 * get 400, oversized headers 431, a client too slow with its headers 408.
 */

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { monotonicMs } from '../../core/clock.js';
import { MESH_SOURCE_HEADER } from '../http/http-headers.js';
import { recordTunnelMetrics } from '../http/exchange-telemetry.js';
import { HttpListener, kContext, type ContextHolder } from '../http/http-listener.js';
import { sniffProtocol } from '../http/protocol-sniff.js';
import { sendLocalReply } from '../http/local-reply.js';
import { rawHttpError, tunnelUpgrade, upgradeRequestHead } from '../http/upgrade-tunnel.js';
import type { HttpServerLimits } from '../http/http-servers.js';
import type { ProxyContext } from '../proxy-context.js';
import type { DownstreamRequest, DownstreamResponse } from '../http/downstream.js';
import type { LeanRequest } from '../http/lean-h1/lean-request.js';
import type { LeanResponse } from '../http/lean-h1/lean-response.js';
import type { H2Response } from '../http/lean-h2/h2-response.js';
import { ensureRequestId } from '../telemetry/trace.js';
import { connectUpstream } from '../upstream/upstream-connect.js';
import { OutboundExchange } from './outbound-exchange.js';
import { pickDestination, selectRoute } from './outbound-route.js';
import { proxyTcp } from './outbound-tcp.js';
import { findService, readTarget, servicePort, splitAuthority } from './outbound-target.js';

export class OutboundListener extends HttpListener {
  constructor(ctx: ProxyContext, limits: HttpServerLimits) {
    super(ctx, limits, onRequest);
    this.h1.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.#connect(req, socket, head),
    );
  }

  protected accept(socket: Socket): void {
    this.track(socket);
    sniffProtocol(socket, this.limits.headersTimeoutMs, {
      decide: (protocol, s, first) => {
        if (protocol === 'h2c') this.h2.accept(s, first);
        else if (protocol === 'h1') this.lean.accept(s, first);
        else {
          // TLS to the outbound port: apps send plain HTTP here; answer in a way a TLS client notices.
          this.ctx.stats.downstreamErrors.inc({ reason: 'tls_on_outbound' });
          s.destroy();
        }
      },
    });
  }

  protected upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const ctx = this.ctx;
    const active = ctx.active();
    socket.on('error', () => socket.destroy());
    if (active === undefined) {
      rawHttpError(socket, 503, 'proxy has no configuration yet');
      return;
    }
    const target = readTarget(req.url ?? '/', req.headers.host);
    const service = target === undefined ? undefined : findService(active.config.outbound, target.hostname);
    const port =
      service === undefined || target === undefined ? undefined : servicePort(service, target.port);
    if (target === undefined || service === undefined || port === undefined) {
      rawHttpError(socket, 404, 'no route');
      return;
    }
    const q = target.path.indexOf('?');
    const choice = selectRoute(service, {
      method: req.method ?? 'GET',
      path: q < 0 ? target.path : target.path.slice(0, q),
      query: q < 0 ? '' : target.path.slice(q + 1),
      authority: target.authority,
      scheme: 'http',
      port: port.port,
      headers: req.headers,
    });
    const dest = choice === undefined ? undefined : pickDestination(choice.route);
    const name = dest?.clusterByPort.get(port.port);
    const cluster = name === undefined ? undefined : active.clusters.get(name);
    const e = cluster?.pick(undefined);
    if (cluster === undefined || e === undefined) {
      rawHttpError(socket, 503, 'no healthy upstream');
      return;
    }
    const tls = e.config.via !== 'plaintext' && !cluster.spec.policy.plaintext;
    const upstream = connectUpstream(
      {
        address: e.config.address,
        port: e.config.port,
        tls,
        sni: cluster.spec.sni,
        alpn: ['http/1.1'],
        identities: e.config.identities,
        connectTimeoutMs: cluster.spec.policy.connectTimeoutMs,
      },
      ctx.tlsProvider,
    );
    const extra: Record<string, string> = {};
    if (tls) extra[MESH_SOURCE_HEADER] = active.sourceHeader;
    // The same rule as every other request: a missing or empty id is replaced.
    ensureRequestId(extra, req.headers);
    const requestHead = upgradeRequestHead(req, target.path, target.authority, extra);
    const onError = (): void => {
      cluster.recordResult(e, 0);
      rawHttpError(socket, 503, 'upstream connect error');
    };
    upstream.once('error', onError);
    upstream.once(tls ? 'secureConnect' : 'connect', () => {
      upstream.removeListener('error', onError);
      const start = monotonicMs();
      tunnelUpgrade(socket, upstream, requestHead, head, ctx.tunnels, (status, result) => {
        const base = ctx.metrics.base({
          reporter: 'source',
          source: active.self,
          destination: {
            workload: e.config.workload ?? 'unknown',
            workload_namespace: cluster.spec.namespace,
            principal: e.config.identities[0] ?? 'unknown',
            app: e.config.labels.app ?? cluster.spec.serviceName,
            version: e.config.labels.version ?? 'unknown',
            canonical_service: e.config.labels.app ?? cluster.spec.serviceName,
            canonical_revision: 'latest',
            cluster: e.config.zone || 'unknown',
          },
          service: cluster.spec.host,
          serviceName: cluster.spec.serviceName,
          serviceNamespace: cluster.spec.namespace,
          security: 'unknown',
        });
        recordTunnelMetrics(ctx, base, status, result, start);
      });
    });
  }

  #connect(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const ctx = this.ctx;
    const active = ctx.active();
    socket.on('error', () => socket.destroy());
    if (active === undefined) {
      rawHttpError(socket, 503, 'proxy has no configuration yet');
      return;
    }
    const split = splitAuthority(req.url ?? '');
    const service = split === undefined ? undefined : findService(active.config.outbound, split.hostname);
    if (
      split === undefined ||
      split.port === 0 ||
      service === undefined ||
      !service.portMap.has(split.port)
    ) {
      rawHttpError(socket, 404, `no route: CONNECT ${req.url ?? ''} names no mesh service port`);
      return;
    }
    proxyTcp(ctx, active, service, split.port, socket, head, {
      onReady(error) {
        if (error === undefined) socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        else rawHttpError(socket, 503, error);
      },
    });
  }
}

function onRequest(
  this: ContextHolder<http.Server>,
  req: IncomingMessage | LeanRequest,
  res: ServerResponse | LeanResponse | H2Response,
): void {
  const ctx = this[kContext];
  if (ctx !== undefined) handleOutbound(ctx, req, res);
}

function handleOutbound(ctx: ProxyContext, req: DownstreamRequest, res: DownstreamResponse): void {
  const start = monotonicMs();
  const active = ctx.active();
  if (active === undefined) {
    sendLocalReply(res, 503, 'proxy has no configuration yet', false);
    return;
  }
  if (ctx.draining() && 'shouldKeepAlive' in res) res.shouldKeepAlive = false;
  const exchange = new OutboundExchange(ctx, active, req, res, start);
  try {
    exchange.start();
  } catch (err) {
    // A bug must cost one request, never the process.
    ctx.logger.error('outbound request failed unexpectedly', { err, url: req.url });
    exchange.localReply(500, 'internal proxy error', '-');
  }
}
