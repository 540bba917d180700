/**
 * A counting semaphore: bounds how many zones' full resyncs are listed and
 * encoded at once, so a hundred zones reconnecting after a global restart
 * do not hold a hundred copies of the store in memory at the same time.
 */

export class Semaphore {
  private available: number;
  private readonly waiters: (() => void)[] = [];

  constructor(permits: number) {
    this.available = permits;
  }

  /** Resolves with a release function once a permit is free. */
  async acquire(): Promise<() => void> {
    if (this.available > 0) {
      this.available--;
    } else {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next !== undefined) next();
      else this.available++;
    };
  }
}
