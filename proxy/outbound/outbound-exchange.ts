/**
 * One outbound request, from the app to a mesh service: route, fault
 * injection, redirect or direct response, weighted destination, circuit
 * breaker, locality-aware load balancing, tries with per-try timeout and
 * backoff, the overall timeout, mirroring, then the response back to the
 * app with Istio's metrics and an access log line.
 *
 * Timers get the exchange as their argument (no closures); event handlers
 * live in http-exchange / upstream-attempt.
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { monotonicMs } from '../../core/clock.js';
import { formatIsoTime } from '../../core/utc-format.js';
import type { ClusterRuntime } from '../cluster/cluster-runtime.js';
import type { PendingWaiter } from '../cluster/circuit-breaker.js';
import type { EndpointState } from '../cluster/endpoint-state.js';
import type {
  CompiledHttpRoute,
  CompiledService,
  HttpMatch,
  RouteDestination,
} from '../config/config-types.js';
import { applyHeaderOps, endToEndHeaders, firstHeader, MESH_SOURCE_HEADER } from '../http/http-headers.js';
import { addExchangeSpan, recordExchangeMetrics, SPAN_KIND_CLIENT } from '../http/exchange-telemetry.js';
import type { DownstreamRequest, DownstreamResponse } from '../http/downstream.js';
import { HttpExchange } from '../http/http-exchange.js';
import { addFlag, ResponseFlags } from '../http/response-flags.js';
import { resendAtOnce } from '../http/idempotent.js';
import type { ActiveConfig, ProxyContext } from '../proxy-context.js';
import { UNKNOWN_PEER, type BaseSeries, type PeerLabels } from '../telemetry/istio-metrics.js';
import { continueTrace, ensureRequestId, propagate, type SpanContext } from '../telemetry/trace.js';
import { UpstreamFailure, type Attempt, type UpstreamFailureKind } from '../upstream/upstream-attempt.js';
import { startMirror } from './outbound-mirror.js';
import { backoffMs, retriableFailure, retriableResponse } from './outbound-retry.js';
import { pickDestination, selectRoute, type RouteInput } from './outbound-route.js';
import { findService, readTarget, servicePort } from './outbound-target.js';

/** Stale keep-alive connections are retried transparently this many times (not counted as retries). */
const MAX_STALE_RETRIES = 2;

interface CachedSeries {
  self: PeerLabels;
  base: BaseSeries;
}

function destinationPeer(cluster: ClusterRuntime, e: EndpointState | undefined): PeerLabels {
  if (e === undefined) {
    return {
      ...UNKNOWN_PEER,
      workload_namespace: cluster.spec.namespace,
      canonical_service: cluster.spec.serviceName,
    };
  }
  const labels = e.config.labels;
  const app = labels.app ?? labels['app.kubernetes.io/name'] ?? cluster.spec.serviceName;
  const version = labels.version ?? labels['app.kubernetes.io/version'] ?? 'unknown';
  return {
    workload:
      e.config.workload ?? (e.config.via === 'gateway' ? `${cluster.spec.serviceName}-gateway` : 'unknown'),
    workload_namespace: cluster.spec.namespace,
    principal: e.config.identities[0] ?? 'unknown',
    app,
    version,
    canonical_service: labels['service.istio.io/canonical-name'] ?? app,
    canonical_revision:
      labels['service.istio.io/canonical-revision'] ?? (version === 'unknown' ? 'latest' : version),
    cluster: e.config.zone || 'unknown',
  };
}

export class OutboundExchange extends HttpExchange implements PendingWaiter {
  readonly ctx: ProxyContext;
  readonly active: ActiveConfig;
  service: CompiledService | undefined;
  port = 0;
  authority = '';
  path = '';
  route: CompiledHttpRoute | undefined;
  match: HttpMatch | undefined;
  dest: RouteDestination | undefined;
  cluster: ClusterRuntime | undefined;
  endpoint: EndpointState | undefined;
  lastEndpoint: EndpointState | undefined;
  lastEndpointKey = '';
  lastPeer = '';
  upstreamHeaders: OutgoingHttpHeaders = {};
  requestId = '';
  span: SpanContext | undefined;
  tries = 0;
  retries = 0;
  staleRetries = 0;
  holdingSlot = false;
  waiting = false;
  retryInFlight = false;
  timer: NodeJS.Timeout | undefined;
  tryTimer: NodeJS.Timeout | undefined;
  waitTimer: NodeJS.Timeout | undefined;

  constructor(
    ctx: ProxyContext,
    active: ActiveConfig,
    req: DownstreamRequest,
    res: DownstreamResponse,
    startMs: number,
  ) {
    super(req, res, startMs);
    this.ctx = ctx;
    this.active = active;
    ctx.stats.active.outbound++;
  }

  /** Routes the request and starts the first try (or answers locally). */
  start(): void {
    const req = this.req;
    const target = readTarget(
      req.url ?? '/',
      this.h2 ? (firstHeader(req.headers[':authority']) ?? req.headers.host) : req.headers.host,
    );
    if (target === undefined) {
      this.localReply(400, 'missing or malformed Host / authority', ResponseFlags.DOWNSTREAM_PROTOCOL_ERROR);
      return;
    }
    this.authority = target.authority;
    this.path = target.path;
    const service = findService(this.active.config.outbound, target.hostname);
    if (service === undefined) {
      this.localReply(
        404,
        `no route: ${target.hostname} is not a mesh service this proxy may call`,
        ResponseFlags.NO_ROUTE,
      );
      return;
    }
    this.service = service;
    const port = servicePort(service, target.port);
    if (port === undefined || port.protocol === 'tcp') {
      this.localReply(
        404,
        `no route: ${service.host} has no HTTP port ${target.port || '(default)'}`,
        ResponseFlags.NO_ROUTE,
      );
      return;
    }
    this.port = port.port;
    const q = this.path.indexOf('?');
    const input: RouteInput = {
      method: req.method ?? 'GET',
      path: q < 0 ? this.path : this.path.slice(0, q),
      query: q < 0 ? '' : this.path.slice(q + 1),
      authority: target.authority,
      scheme: 'http',
      port: port.port,
      headers: req.headers,
    };
    const choice = selectRoute(service, input);
    if (choice === undefined) {
      this.localReply(404, `no route matched the request to ${service.host}`, ResponseFlags.NO_ROUTE);
      return;
    }
    const route = choice.route;
    this.route = route;
    this.match = choice.match;
    if (route.directResponse !== undefined) {
      const d = route.directResponse;
      this.#direct(d.status, d.body);
      return;
    }
    if (route.redirect !== undefined) {
      this.#redirect(route.redirect, input.path, q < 0 ? '' : this.path.slice(q));
      return;
    }
    const fault = route.fault;
    if (fault !== undefined && fault.delayFraction > 0 && Math.random() < fault.delayFraction) {
      this.flags = addFlag(this.flags, ResponseFlags.DELAY_INJECTED);
      this.waitTimer = setTimeout(afterFaultDelay, fault.delayMs, this);
      return;
    }
    this.continueAfterDelay();
  }

  continueAfterDelay(): void {
    this.waitTimer = undefined;
    if (this.finished) return;
    const route = this.route;
    if (route === undefined) return;
    const fault = route.fault;
    if (fault !== undefined && fault.abortFraction > 0 && Math.random() < fault.abortFraction) {
      this.localReply(
        fault.abortStatus,
        'fault filter abort',
        ResponseFlags.FAULT_INJECTED,
        undefined,
        fault.abortGrpcStatus >= 0 ? fault.abortGrpcStatus : undefined,
      );
      return;
    }
    const dest = pickDestination(route);
    if (dest === undefined) {
      this.localReply(404, 'the route has no destination', ResponseFlags.NO_ROUTE);
      return;
    }
    this.dest = dest;
    const name = dest.clusterByPort.get(this.port);
    const cluster = name === undefined ? undefined : this.active.clusters.get(name);
    if (cluster === undefined) {
      this.localReply(503, `no cluster for ${dest.host} subset ${dest.subset}`, ResponseFlags.NO_CLUSTER);
      return;
    }
    this.cluster = cluster;
    this.#buildHeaders(route, dest);
    const replay = route.retry.attempts > 0 || route.mirrors.length > 0 ? this.ctx.limits.replayLimit : 0;
    this.readBody(replay);
    if (route.timeoutMs > 0) this.timer = setTimeout(onRouteTimeout, route.timeoutMs, this);
    if (route.mirrors.length > 0 && this.bodyComplete) this.#mirror();
    this.dispatch();
  }

  #buildHeaders(route: CompiledHttpRoute, dest: RouteDestination): void {
    const req = this.req;
    const h = endToEndHeaders(req.headers, true);
    this.requestId = ensureRequestId(h, req.headers);
    if (h['x-forwarded-proto'] === undefined) h['x-forwarded-proto'] = 'http';
    h[MESH_SOURCE_HEADER] = this.active.sourceHeader;
    applyHeaderOps(h, route.requestHeaders);
    applyHeaderOps(h, dest.requestHeaders);
    const rewrite = route.rewrite;
    if (rewrite !== undefined) {
      if (rewrite.authority !== undefined) this.authority = rewrite.authority;
      if (rewrite.uri !== undefined) this.path = rewritePath(this.path, rewrite.uri, this.match?.uriPrefix);
      else if (rewrite.regex !== undefined)
        this.path = rewriteRegex(this.path, rewrite.regex, rewrite.regexReplacement ?? '');
    }
    if (this.ctx.tracer !== undefined) {
      this.span = continueTrace(req.headers);
      propagate(h, this.span);
    }
    this.upstreamHeaders = h;
  }

  protected override onBodyComplete(): void {
    if (this.route !== undefined && this.route.mirrors.length > 0 && this.cluster !== undefined)
      this.#mirror();
  }

  #mirror(): void {
    const route = this.route;
    const body = this.bodyCopy;
    if (route === undefined || body === undefined) return;
    for (const m of route.mirrors) {
      if (m.fraction < 1 && Math.random() >= m.fraction) continue;
      const name = m.clusterByPort.get(this.port);
      const cluster = name === undefined ? undefined : this.active.clusters.get(name);
      if (cluster === undefined) continue;
      startMirror(
        this.ctx,
        cluster,
        this.req.method ?? 'GET',
        this.path,
        shadowAuthority(this.authority),
        this.upstreamHeaders,
        body,
        route.timeoutMs,
      );
    }
  }

  /** Takes a circuit-breaker slot and tries; or waits in the pending queue; or overflows. */
  dispatch(): void {
    const cluster = this.cluster;
    if (cluster === undefined || this.finished) return;
    if (!this.holdingSlot) {
      const verdict = cluster.breaker.acquire(this);
      if (verdict === 'overflow') {
        this.ctx.stats.overflows.inc({ cluster: cluster.name });
        this.localReply(
          503,
          'upstream connect error or disconnect/reset before headers. reset reason: overflow',
          ResponseFlags.UPSTREAM_OVERFLOW,
        );
        return;
      }
      if (verdict === 'wait') {
        this.waiting = true;
        return;
      }
      this.holdingSlot = true;
    }
    this.#send();
  }

  onSlotGranted(): void {
    this.waiting = false;
    this.holdingSlot = true;
    if (this.finished) {
      this.#releaseSlot();
      return;
    }
    if (this.#bodyNotReplayable()) return;
    this.#send();
  }

  /**
   * A new try needs the body from its first byte. Between tries the body is
   * not read past what the copy holds (HttpExchange.onRequestData), but when
   * even that passed the replay limit, sending would give the upstream a
   * body without its beginning: answer 503 instead.
   */
  #bodyNotReplayable(): boolean {
    if (this.replayable) return false;
    this.details = 'request_body_exceeds_replay_limit';
    this.localReply(
      503,
      'upstream retry: the request body could not be kept to send again',
      ResponseFlags.RETRY_LIMIT_EXCEEDED,
    );
    return true;
  }

  #send(): void {
    const cluster = this.cluster;
    if (cluster === undefined) return;
    const e = cluster.pick(this.lastEndpoint);
    if (e === undefined) {
      this.localReply(503, 'no healthy upstream', ResponseFlags.NO_HEALTHY_UPSTREAM);
      return;
    }
    this.endpoint = e;
    e.active++;
    this.tries++;
    const h = this.upstreamHeaders;
    if (e.config.via === 'plaintext') h[MESH_SOURCE_HEADER] = undefined;
    else h[MESH_SOURCE_HEADER] = this.active.sourceHeader;
    if (h[MESH_SOURCE_HEADER] === undefined) delete h[MESH_SOURCE_HEADER];
    const attempt = e.pool.open(this, this.req.method ?? 'GET', this.path, this.authority, h);
    const perTry = this.route?.retry.perTryTimeoutMs ?? 0;
    if (perTry > 0) this.tryTimer = setTimeout(onTryTimeout, perTry, this, attempt);
    this.feedAttempt(attempt);
  }

  /** The endpoint of the current try is done with (response over, or given up). */
  #endpointDone(): void {
    const e = this.endpoint;
    if (e !== undefined) {
      e.active--;
      this.lastEndpoint = e;
      this.endpoint = undefined;
    }
  }

  #clearTryTimer(): void {
    if (this.tryTimer !== undefined) {
      clearTimeout(this.tryTimer);
      this.tryTimer = undefined;
    }
  }

  #releaseSlot(): void {
    if (this.holdingSlot) {
      this.holdingSlot = false;
      this.cluster?.breaker.release();
    }
    if (this.waiting) {
      this.waiting = false;
      this.cluster?.breaker.cancel(this);
    }
    if (this.retryInFlight) {
      this.retryInFlight = false;
      this.cluster?.breaker.retryDone();
    }
  }

  /** Starts another try after backoff if the policy, the body and the retry budget allow. */
  #retry(attempt: Attempt): boolean {
    const route = this.route;
    const cluster = this.cluster;
    if (route === undefined || cluster === undefined || this.finished) return false;
    if (this.retries >= route.retry.attempts || !this.replayable) return false;
    if (this.retryInFlight) {
      this.retryInFlight = false;
      cluster.breaker.retryDone();
    }
    if (!cluster.breaker.tryRetry()) return false;
    this.retryInFlight = true;
    this.#rememberPeer();
    attempt.abort();
    this.attempt = undefined;
    this.#endpointDone();
    this.retries++;
    this.ctx.stats.retries.inc({ cluster: cluster.name });
    this.waitTimer = setTimeout(afterBackoff, backoffMs(this.retries), this);
    return true;
  }

  afterBackoff(): void {
    this.waitTimer = undefined;
    if (this.finished || this.#bodyNotReplayable()) return;
    this.#send();
  }

  #rememberPeer(): void {
    const e = this.endpoint;
    if (e !== undefined) this.lastEndpointKey = e.key;
    const peer = this.attempt?.peer();
    if (peer) this.lastPeer = peer;
  }

  onAttemptResponse(attempt: Attempt, status: number, headers: IncomingHttpHeaders, body: Readable): void {
    if (attempt !== this.attempt || this.finished) {
      body.resume();
      return;
    }
    this.#clearTryTimer();
    const e = this.endpoint;
    if (e !== undefined) this.cluster?.recordResult(e, status);
    const route = this.route;
    if (route !== undefined && !this.committed) {
      const grpc = headers['grpc-status'];
      if (
        retriableResponse(route.retry, status, typeof grpc === 'string' ? grpc : undefined) &&
        this.#retry(attempt)
      ) {
        body.resume();
        return;
      }
    }
    this.#rememberPeer();
    if (this.retries > 0 && status >= 500)
      this.flags = addFlag(this.flags, ResponseFlags.RETRY_LIMIT_EXCEEDED);
    this.relay(status, headers, body);
  }

  onAttemptFailure(attempt: Attempt, kind: UpstreamFailureKind, err: Error): void {
    if (attempt !== this.attempt || this.finished) return;
    this.#clearTryTimer();
    const e = this.endpoint;
    if (
      this.replayable &&
      this.staleRetries < MAX_STALE_RETRIES &&
      resendAtOnce(kind, this.req.method, this.req.headers)
    ) {
      // The request never reached the app (refused), or most likely did not (a keep-alive connection
      // the server had closed as we reused it): it goes again at once, outside the retry policy.
      this.staleRetries++;
      this.attempt = undefined;
      this.#endpointDone();
      this.lastEndpoint = undefined;
      this.#send();
      return;
    }
    if (e !== undefined) this.cluster?.recordResult(e, 0);
    if (kind === UpstreamFailure.CONNECT)
      this.ctx.stats.upstreamConnectFailures.inc({ reason: connectReason(err) });
    const route = this.route;
    if (route !== undefined && retriableFailure(route.retry, kind, false) && this.#retry(attempt)) return;
    this.#rememberPeer();
    this.#endpointDone();
    this.details = err.message;
    const flag =
      kind === UpstreamFailure.CONNECT
        ? ResponseFlags.UPSTREAM_CONNECT_FAILURE
        : ResponseFlags.UPSTREAM_RESET;
    if (this.retries > 0) this.flags = addFlag(this.flags, ResponseFlags.RETRY_LIMIT_EXCEEDED);
    const reason =
      kind === UpstreamFailure.CONNECT
        ? 'connection failure'
        : kind === UpstreamFailure.REFUSED_STREAM
          ? 'remote refused stream reset'
          : 'connection termination';
    this.localReply(
      503,
      `upstream connect error or disconnect/reset before headers. reset reason: ${reason}`,
      flag,
    );
  }

  onTryTimeout(attempt: Attempt): void {
    this.tryTimer = undefined;
    if (attempt !== this.attempt || this.finished || this.committed) return;
    const e = this.endpoint;
    if (e !== undefined) this.cluster?.recordResult(e, 0);
    const route = this.route;
    if (route !== undefined && retriableFailure(route.retry, 0, true) && this.#retry(attempt)) return;
    attempt.abort();
    this.#endpointDone();
    if (this.retries > 0) this.flags = addFlag(this.flags, ResponseFlags.RETRY_LIMIT_EXCEEDED);
    this.localReply(504, 'upstream request timeout', ResponseFlags.UPSTREAM_TIMEOUT);
  }

  onRouteTimeout(): void {
    this.timer = undefined;
    if (this.finished) return;
    this.attempt?.abort();
    this.#endpointDone();
    if (!this.committed) {
      this.localReply(504, 'upstream request timeout', ResponseFlags.UPSTREAM_TIMEOUT);
    } else {
      this.flags = addFlag(this.flags, ResponseFlags.UPSTREAM_TIMEOUT);
      this.res.destroy();
      this.finish();
    }
  }

  protected override responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
    const out = endToEndHeaders(headers, false);
    applyHeaderOps(out, this.route?.responseHeaders);
    applyHeaderOps(out, this.dest?.responseHeaders);
    return out;
  }

  #direct(status: number, body: Buffer): void {
    this.committed = true;
    this.status = status;
    this.responseBytes = body.length;
    this.res.writeHead(status, { 'content-type': 'text/plain', 'content-length': body.length });
    this.res.end(body);
    this.finish();
  }

  #redirect(r: NonNullable<CompiledHttpRoute['redirect']>, path: string, query: string): void {
    const scheme = r.scheme ?? 'http';
    let authority = r.authority ?? this.authority;
    if (r.port !== undefined) authority = `${authority.replace(/:\d+$/, '')}:${r.port}`;
    const location = `${scheme}://${authority}${r.uri ?? path}${r.uri === undefined ? query : ''}`;
    this.committed = true;
    this.status = r.status;
    this.res.writeHead(r.status, { location, 'content-length': 0 });
    this.res.end();
    this.finish();
  }

  protected override onDownstreamGone(): void {
    this.attempt?.abort();
  }

  protected onFinish(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.waitTimer !== undefined) clearTimeout(this.waitTimer);
    this.#clearTryTimer();
    if (this.endpoint !== undefined && this.attempt !== undefined && !this.attempt.settled)
      this.attempt.abort();
    this.#rememberPeer();
    this.#endpointDone();
    this.#releaseSlot();
    const ctx = this.ctx;
    ctx.stats.active.outbound--;
    const durationMs = monotonicMs() - this.startMs;
    recordExchangeMetrics(ctx, this, this.#series(), durationMs);
    if (ctx.accessLog.enabled) this.#log(durationMs);
    if (this.span !== undefined && ctx.tracer !== undefined) {
      addExchangeSpan(ctx.tracer, this.span, this, durationMs, {
        host: this.service?.host ?? this.authority,
        port: this.port,
        kind: SPAN_KIND_CLIENT,
        url: this.path,
        peerKey: 'upstream_cluster',
        peerValue: this.cluster?.name ?? '',
        requestId: this.requestId,
      });
    }
  }

  #series(): BaseSeries {
    const ctx = this.ctx;
    const cluster = this.cluster;
    const e = this.lastEndpoint;
    const self = this.active.self;
    if (cluster !== undefined && e !== undefined) {
      const cached = e.series as CachedSeries | undefined;
      if (cached !== undefined && cached.self === self) return cached.base;
      const base = ctx.metrics.base({
        reporter: 'source',
        source: self,
        destination: destinationPeer(cluster, e),
        service: cluster.spec.host,
        serviceName: cluster.spec.serviceName,
        serviceNamespace: cluster.spec.namespace,
        security: 'unknown',
      });
      e.series = { self, base } satisfies CachedSeries;
      return base;
    }
    const service = this.service;
    return ctx.metrics.base({
      reporter: 'source',
      source: self,
      destination: cluster !== undefined ? destinationPeer(cluster, undefined) : UNKNOWN_PEER,
      service: service?.host ?? 'unknown',
      serviceName: service?.name ?? 'unknown',
      serviceNamespace: service?.namespace ?? 'unknown',
      security: 'unknown',
    });
  }

  #log(durationMs: number): void {
    const req = this.req;
    const h = req.headers;
    this.ctx.accessLog.write({
      start_time: formatIsoTime(this.startTime),
      direction: 'outbound',
      method: req.method ?? '',
      path: this.path || (req.url ?? ''),
      protocol: this.h2 ? 'HTTP/2' : `HTTP/${req.httpVersion}`,
      authority: this.authority,
      response_code: this.status,
      response_flags: this.flags,
      response_code_details: this.details || 'via_upstream',
      bytes_received: this.requestBytes,
      bytes_sent: this.responseBytes,
      duration: Math.round(durationMs * 1000) / 1000,
      upstream_cluster: this.cluster?.name ?? '',
      upstream_host: this.lastEndpointKey,
      upstream_peer: this.lastPeer,
      downstream_remote_address: `${req.socket?.remoteAddress ?? ''}:${req.socket?.remotePort ?? ''}`,
      downstream_peer: '',
      requested_server_name: '',
      route_name: this.route?.name ?? '',
      request_id: this.requestId || (firstHeader(h['x-request-id']) ?? ''),
      traceparent:
        typeof this.upstreamHeaders.traceparent === 'string'
          ? this.upstreamHeaders.traceparent
          : (firstHeader(h.traceparent) ?? ''),
      user_agent: firstHeader(h['user-agent']) ?? '',
      x_forwarded_for: firstHeader(h['x-forwarded-for']) ?? '',
      attempts: this.tries,
    });
  }
}

function connectReason(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ETIMEDOUT') return 'timeout';
  if (code === 'MESHFED_PEER_IDENTITY') return 'identity';
  if (code === 'MESHFED_NO_CERTIFICATE') return 'no_certificate';
  if (code.startsWith('ERR_SSL') || code.includes('CERT') || code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return 'tls';
  return 'other';
}

/** Envoy's prefix_rewrite: replace the matched prefix, or the whole path when the match was not a prefix. */
function rewritePath(path: string, uri: string, prefix: string | undefined): string {
  if (prefix !== undefined && path.startsWith(prefix)) return uri + path.slice(prefix.length);
  const q = path.indexOf('?');
  return q < 0 ? uri : uri + path.slice(q);
}

function rewriteRegex(path: string, regex: RegExp, replacement: string): string {
  const q = path.indexOf('?');
  const p = q < 0 ? path : path.slice(0, q);
  return p.replace(regex, replacement) + (q < 0 ? '' : path.slice(q));
}

/** Envoy appends -shadow to the host of mirrored requests. */
function shadowAuthority(authority: string): string {
  const colon = authority.lastIndexOf(':');
  if (colon > 0 && !authority.endsWith(']'))
    return `${authority.slice(0, colon)}-shadow${authority.slice(colon)}`;
  return `${authority}-shadow`;
}

function afterFaultDelay(x: OutboundExchange): void {
  x.continueAfterDelay();
}

function afterBackoff(x: OutboundExchange): void {
  x.afterBackoff();
}

function onTryTimeout(x: OutboundExchange, attempt: Attempt): void {
  x.onTryTimeout(attempt);
}

function onRouteTimeout(x: OutboundExchange): void {
  x.onRouteTimeout();
}
