/**
 * Registers the built-in discovery sources: import this module once (the
 * zone CP does) and `createDiscoverySource('universal' | 'kubernetes' | 'consul', …)`
 * works.
 *
 * 'kubernetes' is registered as a thin front that loads the real source
 * (and @kubernetes/client-node, which takes about a second to import) when
 * it starts, so a zone in universal mode never pays for it. 'consul'
 * follows a Consul catalog with blocking queries.
 */

import { ErrorCodes, MeshError } from '../../core/errors.js';
import { discoverySourceNames, registerDiscoverySource } from './discovery.js';
import type { DiscoveryProblem, DiscoverySource, LocalService, WorkloadEndpoint } from './discovery.js';
import type { InformerStatus, KubernetesSource, KubernetesSourceOptions } from './discovery-kubernetes.js';
import './discovery-universal.js';
import './discovery-consul.js';

/** The Kubernetes source as the registry hands it out: a DiscoverySource plus what the webhook needs. */
export interface KubernetesDiscovery extends DiscoverySource {
  /** Labels of a namespace as the Namespaces informer last saw them; undefined before start or if unknown. */
  namespaceLabels(namespace: string): Record<string, string> | undefined;
  status(): InformerStatus[];
}

class LazyKubernetesSource implements KubernetesDiscovery {
  readonly name = 'kubernetes';
  private inner: KubernetesSource | undefined;
  private readonly listeners = new Map<() => void, () => void>();
  private started: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: KubernetesSourceOptions) {}

  start(): Promise<void> {
    this.started ??= (async () => {
      if (this.closed) throw new MeshError(ErrorCodes.CLOSED, 'the kubernetes discovery source is closed');
      const { KubernetesSource } = await import('./discovery-kubernetes.js');
      const inner = new KubernetesSource(this.options);
      this.inner = inner;
      for (const listener of this.listeners.keys()) this.listeners.set(listener, inner.onChange(listener));
      await inner.start();
    })();
    return this.started;
  }

  services(): readonly LocalService[] {
    return this.inner?.services() ?? [];
  }

  workloads(): readonly WorkloadEndpoint[] {
    return this.inner?.workloads() ?? [];
  }

  onChange(listener: () => void): () => void {
    this.listeners.set(listener, this.inner?.onChange(listener) ?? (() => undefined));
    return () => {
      this.listeners.get(listener)?.();
      this.listeners.delete(listener);
    };
  }

  errors(): readonly DiscoveryProblem[] {
    return this.inner?.errors() ?? [];
  }

  namespaceLabels(namespace: string): Record<string, string> | undefined {
    return this.inner?.namespaceLabels(namespace);
  }

  status(): InformerStatus[] {
    return this.inner?.status() ?? [];
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.inner?.close();
  }
}

registerDiscoverySource<KubernetesSourceOptions>(
  'kubernetes',
  (options) => new LazyKubernetesSource(options),
);

/** Names of the sources this module registered (and any registered elsewhere). */
export function builtinDiscoverySources(): string[] {
  return discoverySourceNames();
}
