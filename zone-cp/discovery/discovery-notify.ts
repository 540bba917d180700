/**
 * Batched change notification for discovery sources: a burst of watch
 * events (a relist, a rollout) becomes one call of each listener, so the
 * compiler recompiles once per burst instead of once per object.
 */

import type { Logger } from '../../core/log.js';

export class ChangeNotifier {
  private readonly listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  /**
   * @param debounceMs How long to gather changes before calling listeners. 0
   *   still batches everything that happens in the same turn of the event loop.
   * @param prepare Runs before the listeners (the source rebuilds its views
   *   there); when it answers false nothing visible changed and listeners are
   *   not called.
   */
  constructor(
    private readonly debounceMs: number,
    private readonly logger: Logger,
    private readonly prepare: () => boolean = () => true,
  ) {}

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Schedules one notification; further calls before it fires are folded into it. */
  notify(): void {
    if (this.closed || this.timer !== undefined) return;
    this.timer = setTimeout(() => this.flush(), this.debounceMs);
  }

  private flush(): void {
    this.timer = undefined;
    let changed: boolean;
    try {
      changed = this.prepare();
    } catch (err) {
      this.logger.error('discovery view rebuild failed', { err });
      return;
    }
    if (!changed) return;
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch (err) {
        // A failing consumer must not stop the others or the source.
        this.logger.error('discovery change listener failed', { err });
      }
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }
}
