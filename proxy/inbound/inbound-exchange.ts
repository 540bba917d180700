/**
 * One inbound request, from a peer proxy (mTLS) or a plaintext client
 * (PERMISSIVE ports) to the local app: AuthorizationPolicy first (403
 * `RBAC: access denied`), then the request goes to the app on localhost
 * with `x-forwarded-client-cert` naming the verified caller, and the
 * response comes back with Istio's destination-side metrics.
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { monotonicMs } from '../../core/clock.js';
import { formatIsoTime } from '../../core/utc-format.js';
import type { InboundPortConfig } from '../config/config-types.js';
import { endToEndHeaders, firstHeader, MESH_SOURCE_HEADER } from '../http/http-headers.js';
import { addExchangeSpan, recordExchangeMetrics, SPAN_KIND_SERVER } from '../http/exchange-telemetry.js';
import type { DownstreamRequest, DownstreamResponse } from '../http/downstream.js';
import { HttpExchange } from '../http/http-exchange.js';
import { ResponseFlags } from '../http/response-flags.js';
import { resendAtOnce } from '../http/idempotent.js';
import { inboundRequestTarget } from '../http/request-target.js';
import type { ActiveConfig, ProxyContext } from '../proxy-context.js';
import type { BaseSeries } from '../telemetry/istio-metrics.js';
import { continueTrace, ensureRequestId, propagate, type SpanContext } from '../telemetry/trace.js';
import { UpstreamFailure, type Attempt, type UpstreamFailureKind } from '../upstream/upstream-attempt.js';
import type { UpstreamPool } from '../upstream/upstream-pool.js';
import type { AuthzRequest } from './authz-engine.js';
import { parseSourceHeader, type InboundConn } from './inbound-conn.js';

/** Inbound bodies up to this size are kept so a request hitting a stale app connection can be resent. */
const INBOUND_REPLAY_LIMIT = 64 * 1024;
const MAX_STALE_RETRIES = 2;

function lastXffAddress(xff: string): string {
  const comma = xff.lastIndexOf(',');
  return (comma < 0 ? xff : xff.slice(comma + 1)).trim();
}

export function authzRequestOf(
  conn: InboundConn,
  port: InboundPortConfig,
  req: DownstreamRequest | undefined,
  path: string,
  /** An absolute-form target's authority: it, not Host, is what the app will be asked for. */
  targetAuthority?: string,
): AuthzRequest {
  const headers = req?.headers ?? {};
  const xff = firstHeader(headers['x-forwarded-for']);
  const host =
    req === undefined ? '' : (targetAuthority ?? firstHeader(headers[':authority']) ?? headers.host ?? '');
  return {
    tcp: req === undefined,
    principal: conn.principal,
    namespace: conn.namespace,
    sourceIp: conn.remoteAddress,
    // As Envoy with xff_num_trusted_hops 0 (Istio's default): the last address appended, not the first a client wrote.
    remoteIp: xff === undefined ? conn.remoteAddress : lastXffAddress(xff),
    port: port.port,
    targetPort: port.targetPort,
    destinationIp: conn.localAddress,
    sni: conn.sni,
    method: req?.method ?? '',
    path,
    host,
    headers,
  };
}

export class InboundExchange extends HttpExchange {
  readonly ctx: ProxyContext;
  readonly active: ActiveConfig;
  readonly conn: InboundConn;
  readonly port: InboundPortConfig;
  pool: UpstreamPool | undefined;
  headers: OutgoingHttpHeaders = {};
  requestId = '';
  span: SpanContext | undefined;
  staleRetries = 0;
  tries = 0;
  policy = '';
  /** The request target in origin-form, normalized (http/request-target.ts): what the policy saw and the app gets. */
  path = '/';
  /** The authority of an absolute-form target. */
  targetAuthority: string | undefined;

  constructor(
    ctx: ProxyContext,
    active: ActiveConfig,
    conn: InboundConn,
    port: InboundPortConfig,
    req: DownstreamRequest,
    res: DownstreamResponse,
    startMs: number,
  ) {
    super(req, res, startMs);
    this.ctx = ctx;
    this.active = active;
    this.conn = conn;
    this.port = port;
    ctx.stats.active.inbound++;
  }

  start(): void {
    const req = this.req;
    const target = inboundRequestTarget(req.url ?? '/', req.method ?? 'GET');
    if (target === undefined) {
      this.details = 'invalid_request_target';
      this.localReply(400, 'Bad Request: the request target is not a path', ResponseFlags.NONE);
      return;
    }
    const url = target.path;
    this.path = url;
    this.targetAuthority = target.authority;
    const authz = this.active.config.inbound.authz;
    if (!authz.empty) {
      const q = url.indexOf('?');
      const decision = authz.evaluate(
        authzRequestOf(this.conn, this.port, req, q < 0 ? url : url.slice(0, q), target.authority),
      );
      if (!decision.allowed) {
        this.policy = decision.policy;
        this.ctx.stats.rbacDenied.inc({ policy: decision.policy || '(no ALLOW policy matched)' });
        this.details =
          decision.policy === ''
            ? 'rbac_access_denied_no_allow_match'
            : `rbac_access_denied_matched_policy[${decision.policy}]`;
        this.localReply(403, 'RBAC: access denied', ResponseFlags.NONE);
        return;
      }
    }
    const h = endToEndHeaders(req.headers, true);
    this.requestId = ensureRequestId(h, req.headers);
    // Only this proxy vouches for the caller: whatever the client sent is replaced.
    if (this.conn.secure) {
      h['x-forwarded-client-cert'] = `By=${this.ctx.material()?.spiffeId ?? ''};URI=${this.conn.spiffeId}`;
    } else if (h['x-forwarded-client-cert'] !== undefined) {
      delete h['x-forwarded-client-cert'];
    }
    h['x-forwarded-proto'] = this.conn.secure ? 'https' : 'http';
    if (this.ctx.tracer !== undefined) {
      this.span = continueTrace(req.headers);
      propagate(h, this.span);
    }
    this.headers = h;
    this.pool = this.ctx.appPool(this.port);
    this.readBody(INBOUND_REPLAY_LIMIT);
    this.#send();
  }

  #send(): void {
    const pool = this.pool;
    if (pool === undefined) return;
    this.tries++;
    // An absolute-form target's authority replaces Host (RFC 9112 §3.2.2).
    const authority =
      this.targetAuthority ??
      firstHeader(this.req.headers[':authority']) ??
      this.req.headers.host ??
      `127.0.0.1:${this.port.targetPort}`;
    this.feedAttempt(pool.open(this, this.req.method ?? 'GET', this.path, authority, this.headers));
  }

  onAttemptResponse(attempt: Attempt, status: number, headers: IncomingHttpHeaders, body: Readable): void {
    if (attempt !== this.attempt || this.finished) {
      body.resume();
      return;
    }
    this.relay(status, headers, body);
  }

  onAttemptFailure(attempt: Attempt, kind: UpstreamFailureKind, err: Error): void {
    if (attempt !== this.attempt || this.finished) return;
    if (
      this.replayable &&
      this.staleRetries < MAX_STALE_RETRIES &&
      resendAtOnce(kind, this.req.method, this.req.headers)
    ) {
      this.staleRetries++;
      this.attempt = undefined;
      this.#send();
      return;
    }
    this.details = err.message;
    if (kind === UpstreamFailure.CONNECT) {
      this.localReply(
        503,
        'upstream connect error or disconnect/reset before headers. reset reason: connection failure',
        ResponseFlags.UPSTREAM_CONNECT_FAILURE,
      );
    } else {
      this.localReply(
        503,
        'upstream connect error or disconnect/reset before headers. reset reason: connection termination',
        ResponseFlags.UPSTREAM_RESET,
      );
    }
  }

  protected onFinish(): void {
    const ctx = this.ctx;
    ctx.stats.active.inbound--;
    if (this.attempt !== undefined && !this.attempt.settled) this.attempt.abort();
    const durationMs = monotonicMs() - this.startMs;
    recordExchangeMetrics(ctx, this, this.#series(), durationMs);
    if (ctx.accessLog.enabled) this.#log(durationMs);
    if (this.span !== undefined && ctx.tracer !== undefined) {
      addExchangeSpan(ctx.tracer, this.span, this, durationMs, {
        host: this.conn.sni || this.port.name,
        port: this.port.port,
        kind: SPAN_KIND_SERVER,
        url: this.req.url ?? '',
        peerKey: 'peer.principal',
        peerValue: this.conn.spiffeId,
        requestId: this.requestId,
      });
    }
  }

  #series(): BaseSeries {
    const conn = this.conn;
    const source = firstHeader(this.req.headers[MESH_SOURCE_HEADER]);
    const self = this.active.self;
    if (
      conn.cacheBase !== undefined &&
      conn.cacheSource === source &&
      conn.cachePort === this.port.port &&
      conn.cacheSelf === self
    ) {
      return conn.cacheBase;
    }
    const [svc = '', ns = ''] = conn.sni.split('.').slice(2, 4);
    const serviceName = svc || self.canonical_service;
    const serviceNamespace = ns || self.workload_namespace;
    const base = this.ctx.metrics.base({
      reporter: 'destination',
      source: parseSourceHeader(source, conn.spiffeId, conn.namespace),
      destination: self,
      service: `${serviceName}.${serviceNamespace}.svc.cluster.local`,
      serviceName,
      serviceNamespace,
      security: conn.secure ? 'mutual_tls' : 'none',
    });
    conn.cacheSource = source;
    conn.cachePort = this.port.port;
    conn.cacheSelf = self;
    conn.cacheBase = base;
    return base;
  }

  #log(durationMs: number): void {
    const req = this.req;
    const h = req.headers;
    this.ctx.accessLog.write({
      start_time: formatIsoTime(this.startTime),
      direction: 'inbound',
      method: req.method ?? '',
      path: req.url ?? '',
      protocol: this.h2 ? 'HTTP/2' : `HTTP/${req.httpVersion}`,
      authority: firstHeader(h[':authority']) ?? h.host ?? '',
      response_code: this.status,
      response_flags: this.flags,
      response_code_details: this.details || 'via_upstream',
      bytes_received: this.requestBytes,
      bytes_sent: this.responseBytes,
      duration: Math.round(durationMs * 1000) / 1000,
      upstream_cluster: this.port.clusterName,
      upstream_host: `${this.ctx.appHost}:${this.port.targetPort}`,
      upstream_peer: '',
      downstream_remote_address: this.conn.remoteAddress,
      downstream_peer: this.conn.spiffeId,
      requested_server_name: this.conn.sni,
      route_name: 'default',
      request_id: this.requestId,
      traceparent:
        typeof this.headers.traceparent === 'string'
          ? this.headers.traceparent
          : (firstHeader(h.traceparent) ?? ''),
      user_agent: firstHeader(h['user-agent']) ?? '',
      x_forwarded_for: firstHeader(h['x-forwarded-for']) ?? '',
      attempts: this.tries,
    });
  }
}
