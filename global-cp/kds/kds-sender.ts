/**
 * The outbound side of one zone stream with its own byte accounting.
 * grpc-js completes a write when HTTP/2 flow control let it out, so the
 * bytes written and not completed are what the zone has not read. The
 * session waits for `whenWritable()` before producing more (a full resync
 * is generated chunk by chunk at the zone's pace) and the sender reports a
 * zone that stops reading: its queue over the bound, or no progress for the
 * stall timeout. That zone is dropped and resyncs later; others never wait
 * for it.
 */

import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { GlobalMessage, ZoneMessage } from '../../core/kds/kds-messages.js';

export interface SenderOptions {
  /** Resume producing once fewer than this many bytes are in flight. */
  lowWaterBytes: number;
  /** No write completed for this long while bytes are in flight: the zone is stuck. */
  stallTimeoutMs: number;
  onStall(inFlightBytes: number, stalledMs: number): void;
}

export class StreamSender {
  private inFlight = 0;
  private lastProgress = Date.now();
  private waiters: (() => void)[] = [];
  private stallTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly call: ServerDuplexStream<ZoneMessage, GlobalMessage>,
    private readonly options: SenderOptions,
  ) {}

  /** Bytes written and not yet taken by the zone. */
  get inFlightBytes(): number {
    return this.inFlight;
  }

  get writable(): boolean {
    return !this.closed && this.inFlight < this.options.lowWaterBytes;
  }

  /** Writes one message; `bytes` is its approximate size on the wire. */
  send(message: GlobalMessage, bytes: number): void {
    if (this.closed) return;
    this.inFlight += bytes;
    this.armStallTimer();
    this.call.write(message, () => {
      this.inFlight -= bytes;
      this.lastProgress = Date.now();
      if (this.inFlight < this.options.lowWaterBytes) this.release();
      if (this.inFlight === 0 && this.stallTimer !== undefined) {
        clearTimeout(this.stallTimer);
        this.stallTimer = undefined;
      }
    });
  }

  /** Resolves when the zone has taken enough that producing more is reasonable (or the sender closed). */
  whenWritable(): Promise<void> {
    if (this.writable || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(): void {
    this.closed = true;
    if (this.stallTimer !== undefined) clearTimeout(this.stallTimer);
    this.release();
  }

  private release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  private armStallTimer(): void {
    if (this.stallTimer !== undefined) return;
    this.lastProgress = Date.now();
    const check = (): void => {
      this.stallTimer = undefined;
      if (this.closed || this.inFlight === 0) return;
      const stalled = Date.now() - this.lastProgress;
      if (stalled >= this.options.stallTimeoutMs) {
        this.options.onStall(this.inFlight, stalled);
        return;
      }
      this.stallTimer = setTimeout(check, this.options.stallTimeoutMs - stalled);
      this.stallTimer.unref();
    };
    this.stallTimer = setTimeout(check, this.options.stallTimeoutMs);
    this.stallTimer.unref();
  }
}
