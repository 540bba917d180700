/**
 * Resources the compiler could not use. A bad policy (it may come straight
 * from Kubernetes, past the API's validation) is skipped and listed here
 * with its name and reason; everything else still compiles.
 */

export type ProblemSeverity = 'error' | 'warning';

export interface CompileProblem {
  kind: string;
  namespace: string;
  name: string;
  /** `error`: the resource is skipped. `warning`: part of it is ignored. */
  severity: ProblemSeverity;
  reason: string;
  /** The resourceVersion the problem is about. */
  resourceVersion?: string;
}

/** Collects the problems of one compilation pass. */
export class ProblemList {
  readonly items: CompileProblem[] = [];

  add(
    resource: { kind: string; metadata: { name: string; namespace?: string; resourceVersion?: string } },
    severity: ProblemSeverity,
    reason: string,
  ): void {
    this.items.push({
      kind: resource.kind,
      namespace: resource.metadata.namespace ?? '',
      name: resource.metadata.name,
      severity,
      reason,
      ...(resource.metadata.resourceVersion === undefined
        ? {}
        : { resourceVersion: resource.metadata.resourceVersion }),
    });
  }
}
