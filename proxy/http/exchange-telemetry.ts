/**
 * What every finished HTTP exchange (or Upgrade tunnel) reports, inbound or
 * outbound: its Istio request metrics and, when the request is traced, its span. Called once per
 * request.
 */

import { monotonicMs } from '../../core/clock.js';
import type { ProxyContext } from '../proxy-context.js';
import type { SpliceResult } from '../tcp/tcp-splice.js';
import type { BaseSeries } from '../telemetry/istio-metrics.js';
import type { OtlpExporter } from '../telemetry/otlp-exporter.js';
import type { SpanContext } from '../telemetry/trace.js';
import type { HttpExchange } from './http-exchange.js';

/** OTLP span kinds: the inbound side serves, the outbound side is the client. */
export const SPAN_KIND_SERVER = 2;
export const SPAN_KIND_CLIENT = 3;
type SpanKind = typeof SPAN_KIND_SERVER | typeof SPAN_KIND_CLIENT;

/** Records the exchange's request metrics under `series`. */
export function recordExchangeMetrics(
  ctx: ProxyContext,
  ex: HttpExchange,
  series: BaseSeries,
  durationMs: number,
): void {
  ctx.metrics.recordHttp(
    series,
    ex.status,
    ex.flags,
    ex.grpcStatus,
    ex.grpc ? 'grpc' : 'http',
    durationMs,
    ex.requestBytes,
    ex.responseBytes,
  );
}

/** Records a finished Upgrade tunnel (WebSocket) begun at `startMs`: `status` is the upstream's answer, 0 when none came. */
export function recordTunnelMetrics(
  ctx: ProxyContext,
  series: BaseSeries,
  status: number,
  result: SpliceResult,
  startMs: number,
): void {
  ctx.metrics.recordHttp(
    series,
    status,
    result.error === undefined ? '-' : 'UC',
    '',
    'http',
    monotonicMs() - startMs,
    result.received,
    result.sent,
  );
}

/** The parts of an exchange's span that differ between the inbound and outbound sides. */
export interface ExchangeSpanParts {
  /** Span name is `<host>:<port>/*`. */
  host: string;
  port: number;
  kind: SpanKind;
  url: string;
  /** The one side-specific attribute (peer principal inbound, upstream cluster outbound). */
  peerKey: string;
  peerValue: string;
  requestId: string;
}

/** Exports a traced exchange's span (callers check it is traced, so untraced requests build nothing). */
export function addExchangeSpan(
  tracer: OtlpExporter,
  span: SpanContext,
  ex: HttpExchange,
  durationMs: number,
  p: ExchangeSpanParts,
): void {
  tracer.add({
    ctx: span,
    name: `${p.host}:${p.port}/*`,
    kind: p.kind,
    startMs: ex.startTime,
    endMs: ex.startTime + durationMs,
    attributes: {
      'http.method': ex.req.method ?? '',
      'http.url': p.url,
      'http.status_code': ex.status,
      [p.peerKey]: p.peerValue,
      response_flags: ex.flags,
      'guid:x-request-id': p.requestId,
    },
    error: ex.status === 0 || ex.status >= 500,
  });
}
