/**
 * The zone's discovery sources as one: created by name through the
 * discovery registry, started together, their services and workloads
 * merged (the compiler merges services of the same name across sources),
 * changes forwarded.
 */

import type { Logger } from '../core/log.js';
import type { Store } from '../core/store/store.js';
import {
  createDiscoverySource,
  type DiscoveryProblem,
  type DiscoverySource,
  type LocalService,
  type WorkloadEndpoint,
} from './discovery/discovery.js';
import type { DiscoverySetting } from './options.js';

export class DiscoverySet {
  private readonly sources: DiscoverySource[] = [];
  private readonly unsubscribers: Array<() => void> = [];
  private servicesCache: LocalService[] | undefined;
  private workloadsCache: WorkloadEndpoint[] | undefined;

  constructor(
    settings: readonly DiscoverySetting[],
    context: { zone: string; store: Store; logger: Logger },
    private readonly onChange: () => void,
  ) {
    for (const setting of settings) {
      const source = createDiscoverySource(setting.name, {
        ...setting.options,
        zone: context.zone,
        store: context.store,
        logger: context.logger.child(`discovery-${setting.name}`),
      });
      this.sources.push(source);
      this.unsubscribers.push(
        source.onChange(() => {
          this.servicesCache = undefined;
          this.workloadsCache = undefined;
          this.onChange();
        }),
      );
    }
  }

  get names(): string[] {
    return this.sources.map((s) => s.name);
  }

  /** The source named `name` (e.g. 'kubernetes', whose namespace labels the injection webhook reads). */
  source(name: string): DiscoverySource | undefined {
    return this.sources.find((s) => s.name === name);
  }

  /** Starts every source; resolves when all have their first full view. */
  async start(): Promise<void> {
    await Promise.all(this.sources.map((s) => s.start()));
    this.servicesCache = undefined;
    this.workloadsCache = undefined;
  }

  services(): readonly LocalService[] {
    this.servicesCache ??= this.sources.flatMap((s) => s.services());
    return this.servicesCache;
  }

  workloads(): readonly WorkloadEndpoint[] {
    this.workloadsCache ??= this.sources.flatMap((s) => s.workloads());
    return this.workloadsCache;
  }

  errors(): DiscoveryProblem[] {
    return this.sources.flatMap((s) =>
      (s.errors?.() ?? []).map((p) => ({ ...p, reason: `${s.name}: ${p.reason}` })),
    );
  }

  async close(): Promise<void> {
    for (const unsubscribe of this.unsubscribers.splice(0)) unsubscribe();
    await Promise.allSettled(this.sources.map((s) => s.close()));
  }
}
