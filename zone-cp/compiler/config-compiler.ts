/**
 * The compiler's front: it pulls its inputs from the zone's sources
 * (discovery, the store mirror, the CA keeper), rebuilds one MeshView per
 * change on first use, and compiles sidecar and gateway snapshots and the
 * zone inventory from it. It never throws on bad input: a bad resource is
 * skipped and listed in `problems()`.
 */

import type { Logger } from '../../core/log.js';
import type { ServiceCatalog, ZoneInventory } from '../../core/mesh/inventory.js';
import type { TrustConfig } from '../../core/mesh/snapshot.js';
import type { StoredResource } from '../../core/resource/resource.js';
import { Gauge, Histogram, type Registry } from '../../core/metrics.js';
import type { LocalService, WorkloadEndpoint } from '../discovery/discovery.js';
import type { CompileProblem } from './compile-problems.js';
import { usablePolicies } from './authorization.js';
import { compileGateway } from './gateway-snapshot.js';
import { MeshView } from './mesh-view.js';
import { PolicyValidator, POLICY_KINDS, type PolicyKind } from './policy-index.js';
import { compileSidecar } from './sidecar-snapshot.js';
import type { CompiledSnapshot } from './snapshot-version.js';
import { buildInventory } from './zone-inventory.js';

/** Where the compiler reads its inputs; every call returns the current state. */
export interface CompilerSources {
  services(): readonly LocalService[];
  workloads(): readonly WorkloadEndpoint[];
  resources(kind: PolicyKind): Iterable<StoredResource>;
  catalog(): ServiceCatalog | undefined;
  trust(): TrustConfig;
  /** This zone's east-west gateway as other zones reach it. */
  gateway(): { address: string; port: number } | undefined;
}

export interface ConfigCompilerOptions {
  zone: string;
  sources: CompilerSources;
  logger: Logger;
  registry?: Registry;
}

export class ConfigCompiler {
  private current: MeshView | undefined;
  private generation = 0;
  private readonly validator = new PolicyValidator();
  private reported = new Set<string>();
  private readonly rebuildSeconds: Histogram | undefined;
  private lastProblems: CompileProblem[] = [];

  constructor(private readonly options: ConfigCompilerOptions) {
    const registry = options.registry;
    if (registry !== undefined) {
      this.rebuildSeconds = new Histogram({
        name: 'meshfed_zone_compile_view_seconds',
        help: 'Time to rebuild the mesh view after a change (validation, indexes).',
        buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers: [registry],
      });
      const problems = (): CompileProblem[] => this.problems();
      new Gauge({
        name: 'meshfed_zone_config_errors',
        help: 'Resources the compiler skipped (severity error) or partly ignored (warning).',
        labelNames: ['severity'],
        registers: [registry],
        collect() {
          const list = problems();
          this.set({ severity: 'error' }, list.filter((p) => p.severity === 'error').length);
          this.set({ severity: 'warning' }, list.filter((p) => p.severity === 'warning').length);
        },
      });
    }
  }

  /** Marks the inputs changed: the next compile rebuilds the view. */
  invalidate(): void {
    this.current = undefined;
  }

  /** Increments with every rebuilt view. */
  get viewGeneration(): number {
    return this.generation;
  }

  /** The view of the current inputs (rebuilt if they changed). */
  view(): MeshView {
    if (this.current !== undefined) return this.current;
    const stop = this.rebuildSeconds?.startTimer();
    const { sources, zone } = this.options;
    const policies = Object.fromEntries(
      POLICY_KINDS.map((kind) => [kind, sources.resources(kind)]),
    ) as Record<PolicyKind, Iterable<StoredResource>>;
    const catalog = sources.catalog();
    const view = new MeshView(
      {
        zone,
        services: sources.services(),
        workloads: sources.workloads(),
        policies,
        ...(catalog === undefined ? {} : { catalog }),
        trust: sources.trust(),
      },
      this.validator,
    );
    // Problems found while indexing policies show at once, not only once a proxy compiles.
    usablePolicies(view);
    this.current = view;
    this.generation++;
    stop?.();
    return view;
  }

  /**
   * The snapshot of the sidecar of `namespace/workload`, or undefined while
   * discovery does not know that workload yet.
   */
  compileSidecar(proxyId: string, namespace: string, workload: string): CompiledSnapshot | undefined {
    const view = this.view();
    const endpoint = view.workload(namespace, workload);
    if (endpoint === undefined) return undefined;
    const snapshot = compileSidecar(view, proxyId, endpoint);
    this.reportNewProblems(view);
    return snapshot;
  }

  compileGateway(): CompiledSnapshot {
    const view = this.view();
    const snapshot = compileGateway(view);
    this.reportNewProblems(view);
    return snapshot;
  }

  inventory(): ZoneInventory {
    return buildInventory(this.view(), this.options.sources.gateway());
  }

  /** Resources skipped or partly ignored, with the reason. */
  problems(): CompileProblem[] {
    const view = this.view();
    this.reportNewProblems(view);
    return this.lastProblems;
  }

  private reportNewProblems(view: MeshView): void {
    if (this.lastProblems === view.problems.items && this.lastProblemsCount === view.problems.items.length)
      return;
    const next = new Set<string>();
    for (const p of view.problems.items) {
      const key = `${p.kind}/${p.namespace}/${p.name}@${p.resourceVersion ?? ''}: ${p.reason}`;
      next.add(key);
      if (!this.reported.has(key)) {
        this.options.logger.warn(
          p.severity === 'error' ? 'skipping a bad resource' : 'ignoring part of a resource',
          {
            kind: p.kind,
            namespace: p.namespace,
            name: p.name,
            reason: p.reason,
          },
        );
      }
    }
    this.reported = next;
    this.lastProblems = view.problems.items;
    this.lastProblemsCount = view.problems.items.length;
  }

  private lastProblemsCount = 0;
}
