/**
 * A response body as the upstream clients hand it to the exchange: a
 * Readable for consumers that want a stream (mirrors, retried-away
 * responses), which the exchange can instead attach to as a sink, so that
 * the common relay runs with no stream machinery between the upstream's
 * chunks and the downstream's writes.
 */

import { Readable } from 'node:stream';

export interface BodySink {
  /** One chunk; false = send no more until the sink calls `resumeSink()`. */
  onBodyChunk(chunk: Buffer): boolean;
  /** The body is complete (trailers, if any, are on the attempt). */
  onBodyEnd(): void;
  /** The upstream failed before the body was complete. */
  onBodyBroken(): void;
}

export abstract class DirectBody extends Readable {
  sink: BodySink | undefined;

  /**
   * Delivers the rest of the body to `sink` instead of the stream. Only
   * before anything was read or buffered; false means use the stream.
   */
  attachSink(sink: BodySink): boolean {
    if (this.readableLength > 0 || this.readableEnded || this.destroyed || this.readableFlowing !== null)
      return false;
    this.sink = sink;
    return true;
  }

  /** The sink can take more after refusing a chunk. */
  abstract resumeSink(): void;

  /** One chunk from the upstream; false: the consumer wants no more until it asks. */
  deliver(chunk: Buffer): boolean {
    if (this.destroyed) return true;
    const sink = this.sink;
    return sink !== undefined ? sink.onBodyChunk(chunk) : this.push(chunk);
  }

  /** The upstream sent the whole body. */
  finishBody(): void {
    if (this.destroyed) return;
    const sink = this.sink;
    if (sink !== undefined) {
      this.sink = undefined;
      sink.onBodyEnd();
      return;
    }
    this.push(null);
  }

  /** The upstream failed after the head: the consumer sees 'aborted' (and 'error' if it listens). */
  breakBody(err: Error): void {
    if (this.destroyed) return;
    const sink = this.sink;
    if (sink !== undefined) {
      this.sink = undefined;
      sink.onBodyBroken();
      return;
    }
    this.emit('aborted');
    this.destroy(this.listenerCount('error') > 0 ? err : undefined);
  }
}
