/**
 * A minimal OTLP/HTTP JSON span exporter (POST <endpoint>/v1/traces): spans
 * are batched and sent once a second or every 512 spans, off the request
 * path. A collector that is down loses spans, never requests; the queue is
 * bounded. It posts with node:http(s), not fetch: fetch loads undici and
 * node:perf_hooks, 7.6 MiB of resident memory in every sidecar that traces
 * (docs/performance.md, session 13).
 */

import http from 'node:http';
import https from 'node:https';
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
/** A collector has this long to take a batch and answer. */
const EXPORT_TIMEOUT_MS = 5000;

function attribute(key: string, value: string | number): Record<string, unknown> {
  return typeof value === 'number' && Number.isInteger(value)
    ? { key, value: { intValue: String(value) } }
    : { key, value: { stringValue: String(value) } };
}

function nanos(ms: number): string {
  return (BigInt(Math.round(ms * 1000)) * 1000n).toString();
}

export class OtlpExporter {
  readonly #url: URL;
  readonly #serviceName: string;
  readonly #logger: Logger;
  #queue: FinishedSpan[] = [];
  #timer: NodeJS.Timeout;
  #inFlight: Promise<void> | undefined;
  dropped = 0;
  exported = 0;
  #closed = false;

  constructor(endpoint: string, serviceName: string, logger: Logger) {
    this.#url = new URL(endpoint.replace(/\/+$/, '') + '/v1/traces');
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
      const status = await postJson(this.#url, JSON.stringify(body), EXPORT_TIMEOUT_MS);
      if (status >= 300) throw new Error(`collector answered ${status}`);
      this.exported += spans.length;
    } catch (err) {
      this.dropped += spans.length;
      this.#logger.warn('span export failed', { err, url: this.#url.href, spans: spans.length });
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

/** POSTs a JSON body and resolves with the answer's status once its body has been read; rejects past `timeoutMs`. */
function postJson(url: URL, body: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? https : http).request(
      url,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    const timer = setTimeout(
      () => request.destroy(new Error(`the collector did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    timer.unref();
    request.on('close', () => clearTimeout(timer));
    request.on('error', reject);
    request.end(body);
  });
}
