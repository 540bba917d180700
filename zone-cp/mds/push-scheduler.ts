/**
 * Debounces pushes: a burst of changes (an apply of fifty policies, a
 * rolling restart) becomes one recompile after the burst has been quiet
 * for `debounceMs`, but never later than `maxDelayMs` after its first
 * change, so a steady trickle cannot starve the proxies.
 */

export class PushScheduler {
  private timer: NodeJS.Timeout | undefined;
  private firstAt = 0;
  private closed = false;
  private running = false;
  private again = false;

  constructor(
    private readonly debounceMs: number,
    private readonly maxDelayMs: number,
    private readonly run: () => void | Promise<void>,
  ) {}

  /** A change happened: (re)arm the timer. */
  notify(): void {
    if (this.closed) return;
    const now = Date.now();
    if (this.timer === undefined) {
      this.firstAt = now;
    } else {
      clearTimeout(this.timer);
    }
    const delay = Math.max(0, Math.min(this.debounceMs, this.firstAt + this.maxDelayMs - now));
    this.timer = setTimeout(() => this.fire(), delay);
  }

  /** Stops firing. Idempotent. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private fire(): void {
    this.timer = undefined;
    if (this.running) {
      // A push round is still going: run once more when it is done.
      this.again = true;
      return;
    }
    this.running = true;
    void Promise.resolve()
      .then(() => this.run())
      .catch(() => undefined)
      .finally(() => {
        this.running = false;
        if (this.again && !this.closed) {
          this.again = false;
          this.notify();
        }
      });
  }
}
