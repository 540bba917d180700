/**
 * The set of objects a source skipped, by resource, with the reason. Kept
 * current: fixing or deleting an object clears its entry.
 */

import type { Logger } from '../../core/log.js';
import type { DiscoveryProblem } from './discovery.js';

export class ProblemSet {
  private readonly byResource = new Map<string, string>();
  private cached: readonly DiscoveryProblem[] | undefined;

  constructor(private readonly logger: Logger) {}

  /** Records (and logs once per distinct reason) that `resource` was skipped. */
  report(resource: string, reason: string): void {
    if (this.byResource.get(resource) === reason) return;
    this.byResource.set(resource, reason);
    this.cached = undefined;
    this.logger.warn('skipped a malformed object', { resource, reason });
  }

  clear(resource: string): void {
    if (this.byResource.delete(resource)) this.cached = undefined;
  }

  /** Clears every entry whose resource starts with `prefix` (e.g. all of one kind). */
  clearPrefix(prefix: string): void {
    for (const key of [...this.byResource.keys()]) if (key.startsWith(prefix)) this.clear(key);
  }

  list(): readonly DiscoveryProblem[] {
    this.cached ??= [...this.byResource.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([resource, reason]) => ({ resource, reason }));
    return this.cached;
  }
}
