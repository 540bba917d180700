/**
 * A minimal OTLP/HTTP JSON span exporter (POST <endpoint>/v1/traces): spans
 * are batched and sent once a second or every 512 spans, off the request
 * path. A collector that is down loses spans, never requests; the queue is
 * bounded.
 */

import type { Logger } from '../../core/log.js';
import type { SpanContext } from './trace.js';

export interface FinishedSpan {
  ctx: SpanContext;
  name: string;
  /** 2 = SERVER (inbound), 3 = CLIENT (outbound). */
  kind: 2 | 3;
  startMs: number;
  endMs: number;
  attributes: Record<string, string | number>;
  error: boolean;
}

const MAX_QUEUE = 8192;
const BATCH = 512;

function attribute(key: string, value: string | number): Record<string, unknown> {
  return typeof value === 'number' && Number.isInteger(value)
    ? { key, value: { intValue: String(value) } }
    : { key, value: { stringValue: String(value) } };
}

function nanos(ms: number): string {
  return (BigInt(Math.round(ms * 1000)) * 1000n).toString();
}

export class OtlpExporter {
  readonly #url: string;
  readonly #serviceName: string;
  readonly #logger: Logger;
  #queue: FinishedSpan[] = [];
  #timer: NodeJS.Timeout;
  #inFlight: Promise<void> | undefined;
  dropped = 0;
  exported = 0;
  #closed = false;

  constructor(endpoint: string, serviceName: string, logger: Logger) {
    this.#url = endpoint.replace(/\/+$/, '') + '/v1/traces';
    this.#serviceName = serviceName;
    this.#logger = logger;
    this.#timer = setInterval(flushExporter, 1000, this);
    this.#timer.unref();
  }

  add(span: FinishedSpan): void {
    if (this.#closed) return;
    if (this.#queue.length >= MAX_QUEUE) {
      this.dropped++;
      return;
    }
    this.#queue.push(span);
    if (this.#queue.length >= BATCH) void this.flush();
  }

  async flush(): Promise<void> {
    if (this.#inFlight !== undefined) return this.#inFlight;
    if (this.#queue.length === 0) return;
    const spans = this.#queue;
    this.#queue = [];
    this.#inFlight = this.#send(spans).finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  async #send(spans: FinishedSpan[]): Promise<void> {
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [attribute('service.name', this.#serviceName)] },
          scopeSpans: [
            {
              scope: { name: 'meshfed-proxy' },
              spans: spans.map((s) => ({
                traceId: s.ctx.traceId,
                spanId: s.ctx.spanId,
                ...(s.ctx.parentSpanId === '' ? {} : { parentSpanId: s.ctx.parentSpanId }),
                name: s.name,
                kind: s.kind,
                startTimeUnixNano: nanos(s.startMs),
                endTimeUnixNano: nanos(s.endMs),
                attributes: Object.entries(s.attributes).map(([k, v]) => attribute(k, v)),
                status: { code: s.error ? 2 : 1 },
              })),
            },
          ],
        },
      ],
    };
    try {
      const res = await fetch(this.#url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(5000),
      });
      await res.arrayBuffer();
      if (res.status >= 300) throw new Error(`collector answered ${res.status}`);
      this.exported += spans.length;
    } catch (err) {
      this.dropped += spans.length;
      this.#logger.warn('span export failed', { err, url: this.#url, spans: spans.length });
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#timer);
    await this.flush();
    this.#closed = true;
  }
}

function flushExporter(exporter: OtlpExporter): void {
  void exporter.flush();
}
