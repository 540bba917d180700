/**
 * Server-sent events with a bound on what a slow reader may cost: when the
 * socket stops draining and the backlog passes `maxBufferedBytes`, the stream
 * is ended instead of buffering without limit. A client that falls behind
 * reconnects with its last event id and resumes from there.
 */

import type { ServerResponse } from 'node:http';

export interface SseStreamOptions {
  /** Heartbeat comment interval, so proxies and clients notice a dead peer. */
  heartbeatMs?: number;
  maxBufferedBytes?: number;
  onClose?: () => void;
}

export class SseStream {
  private closed = false;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly maxBufferedBytes: number;

  constructor(
    private readonly res: ServerResponse,
    private readonly options: SseStreamOptions = {},
  ) {
    this.maxBufferedBytes = options.maxBufferedBytes ?? 8 * 1024 * 1024;
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
    this.heartbeat = setInterval(() => this.writeRaw(': ping\n\n'), options.heartbeatMs ?? 15_000);
    this.heartbeat.unref();
    res.on('close', () => this.close());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Sends one event; returns false if the stream is closed (or was just closed for being too slow). */
  send(event: string, data: unknown, id?: string | number): boolean {
    let frame = '';
    if (id !== undefined) frame += `id: ${id}\n`;
    frame += `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    return this.writeRaw(frame);
  }

  /** Ends the stream. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    if (!this.res.writableEnded) this.res.end();
    this.options.onClose?.();
  }

  private writeRaw(text: string): boolean {
    if (this.closed) return false;
    this.res.write(text);
    if (this.res.writableLength > this.maxBufferedBytes) {
      this.close();
      return false;
    }
    return true;
  }
}
