/**
 * Read buffers for the relay, recycled across connections. A buffer handed to
 * an upstream socket as its `onread` target stays with that link
 * (upstream-link.ts) until the socket has closed and its connection is done
 * with it, then comes back here for the next connection. Without
 * the recycling every connection allocated its own off-heap buffer, and V8
 * counts off-heap memory towards its next full collection: under a stream of
 * short connections the gateway ran a full mark-compact every few hundred
 * milliseconds, each a multi-millisecond pause on every connection in flight.
 */

export class ReadBufferPool {
  private readonly free: Buffer[] = [];

  /**
   * @param bufferBytes the size of every buffer (one socket read at most).
   * @param maxFree buffers kept for reuse; beyond this, returned ones are left to the GC.
   */
  constructor(
    private readonly bufferBytes: number,
    private readonly maxFree: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.bufferBytes);
  }

  /** The caller guarantees that no socket reads into, or write still points at, the buffer. */
  give(buffer: Buffer): void {
    if (this.free.length < this.maxFree && buffer.length === this.bufferBytes) this.free.push(buffer);
  }
}
