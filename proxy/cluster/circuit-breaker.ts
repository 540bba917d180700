/**
 * Envoy's cluster circuit breakers, with Istio's names: at most
 * `http2MaxRequests` requests in flight and, for HTTP/1.1 (one request per
 * connection at a time), at most `maxConnections` of them on connections;
 * beyond that up to `http1MaxPendingRequests` wait in a queue, and the
 * rest overflow at once with 503 and the `UO` flag. `maxRetries` bounds
 * retries in flight across the cluster.
 */

export interface CircuitLimits {
  maxConnections: number;
  http1MaxPendingRequests: number;
  http2MaxRequests: number;
  maxRetries: number;
  h2: boolean;
}

/** Who waits in the pending queue: called when a slot frees up (or never, if it gave up first). */
export interface PendingWaiter {
  onSlotGranted(): void;
}

export class CircuitBreaker {
  #limits: CircuitLimits;
  active = 0;
  retries = 0;
  overflows = 0;
  readonly #queue: PendingWaiter[] = [];
  #queueHead = 0;

  constructor(limits: CircuitLimits) {
    this.#limits = limits;
  }

  update(limits: CircuitLimits): void {
    this.#limits = limits;
    this.#drain();
  }

  get pending(): number {
    return this.#queue.length - this.#queueHead;
  }

  #capacity(): number {
    const l = this.#limits;
    // HTTP/2 multiplexes: connections do not bound requests there.
    return l.h2 ? l.http2MaxRequests : Math.min(l.maxConnections, l.http2MaxRequests);
  }

  /**
   * 'go': a slot is yours (call release() when done); 'wait': queued, onSlotGranted()
   * comes later (call cancel() if you give up first); 'overflow': refused.
   */
  acquire(waiter: PendingWaiter): 'go' | 'wait' | 'overflow' {
    if (this.active < this.#capacity() && this.pending === 0) {
      this.active++;
      return 'go';
    }
    if (!this.#limits.h2 && this.pending < this.#limits.http1MaxPendingRequests) {
      this.#queue.push(waiter);
      return 'wait';
    }
    this.overflows++;
    return 'overflow';
  }

  /**
   * A slot now or none: for what cannot wait in the queue (a TCP connection).
   * True: the slot is yours (call release() when done); false: counted as an overflow.
   */
  tryAcquire(): boolean {
    if (this.active < this.#capacity() && this.pending === 0) {
      this.active++;
      return true;
    }
    this.overflows++;
    return false;
  }

  release(): void {
    this.active--;
    this.#drain();
  }

  /** Removes a waiter that gave up (timeout, client gone). */
  cancel(waiter: PendingWaiter): void {
    const i = this.#queue.indexOf(waiter, this.#queueHead);
    if (i >= 0) this.#queue.splice(i, 1);
  }

  /** A retry may start only while fewer than maxRetries are in flight. */
  tryRetry(): boolean {
    if (this.retries >= this.#limits.maxRetries) return false;
    this.retries++;
    return true;
  }

  retryDone(): void {
    this.retries--;
  }

  #drain(): void {
    const capacity = this.#capacity();
    while (this.active < capacity && this.#queueHead < this.#queue.length) {
      const waiter = this.#queue[this.#queueHead++];
      this.active++;
      waiter?.onSlotGranted();
    }
    if (this.#queueHead > 64 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#queueHead);
      this.#queueHead = 0;
    }
  }
}
