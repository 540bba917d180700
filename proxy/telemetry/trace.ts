/**
 * Trace context. Every request gets an `x-request-id` if it has none; W3C
 * `traceparent`/`tracestate` and B3 headers pass through untouched. When
 * span export is on, the proxy takes part in the trace: it continues the
 * caller's trace (traceparent, else B3) or starts one, gives its own span
 * an id, and tells the next hop that span is the parent.
 */

import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { firstHeader } from '../http/http-headers.js';
import { newRequestId } from './request-id.js';

export const REQUEST_ID = 'x-request-id';

export function ensureRequestId(headers: OutgoingHttpHeaders, incoming: IncomingHttpHeaders): string {
  const existing = firstHeader(incoming[REQUEST_ID]);
  if (existing !== undefined && existing !== '') return existing;
  const id = newRequestId();
  headers[REQUEST_ID] = id;
  return id;
}

export interface SpanContext {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  sampled: boolean;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const ZERO32 = '0'.repeat(32);

/** The caller's trace (traceparent, else B3 multi- or single-header), continued with a new span. */
export function continueTrace(incoming: IncomingHttpHeaders): SpanContext {
  const spanId = randomBytes(8).toString('hex');
  const tp = firstHeader(incoming.traceparent);
  const m = tp === undefined ? null : TRACEPARENT.exec(tp.toLowerCase());
  if (m !== null && m[2] !== ZERO32) {
    return {
      traceId: m[2] ?? '',
      spanId,
      parentSpanId: m[3] ?? '',
      sampled: (parseInt(m[4] ?? '0', 16) & 1) === 1,
    };
  }
  let traceId = firstHeader(incoming['x-b3-traceid'])?.toLowerCase();
  let parent = firstHeader(incoming['x-b3-spanid'])?.toLowerCase();
  let sampledText = firstHeader(incoming['x-b3-sampled']);
  const single = firstHeader(incoming.b3);
  if (traceId === undefined && single !== undefined) {
    const parts = single.toLowerCase().split('-');
    traceId = parts[0];
    parent = parts[1];
    sampledText = parts[2];
  }
  if (traceId !== undefined && HEX16.test(traceId)) traceId = traceId.padStart(32, '0');
  if (traceId !== undefined && HEX32.test(traceId) && traceId !== ZERO32) {
    return {
      traceId,
      spanId,
      parentSpanId: parent !== undefined && HEX16.test(parent) ? parent : '',
      sampled: sampledText !== '0',
    };
  }
  return { traceId: randomBytes(16).toString('hex'), spanId, parentSpanId: '', sampled: true };
}

/** Tells the next hop that `ctx.spanId` is its parent (W3C, and B3 when the caller used B3). */
export function propagate(headers: OutgoingHttpHeaders, ctx: SpanContext): void {
  headers.traceparent = `00-${ctx.traceId}-${ctx.spanId}-${ctx.sampled ? '01' : '00'}`;
  if (headers['x-b3-traceid'] !== undefined) {
    headers['x-b3-spanid'] = ctx.spanId;
    if (ctx.parentSpanId !== '') headers['x-b3-parentspanid'] = ctx.parentSpanId;
  }
}
