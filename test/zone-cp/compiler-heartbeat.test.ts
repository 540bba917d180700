/**
 * Suspected: every workload heartbeat (a store write of the WorkloadEntry's
 * heartbeat annotation) made the zone rebuild its view and recompile every
 * proxy. Refuted for universal discovery: a heartbeat-only write reaches
 * neither the discovery set's change listener (which invalidates the
 * compiler and schedules a push round) nor the endpoint objects the
 * compiler memoises per workload, while a real change reaches both.
 */

import { afterEach, describe, expect, it } from '@jest/globals';
import { createLogger } from '../../core/log.js';
import type { Resource } from '../../core/resource/resource.js';
import { MemoryStore } from '../../core/store/store-memory.js';
import '../../zone-cp/discovery/discovery-builtins.js';
import type { WorkloadEndpoint } from '../../zone-cp/discovery/discovery.js';
import { DiscoverySet } from '../../zone-cp/discovery-set.js';
import { ConfigCompiler } from '../../zone-cp/compiler/config-compiler.js';
import { waitFor } from '../common/wait.js';

const logger = createLogger('compiler-heartbeat-test');
const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

function entry(name: string, labels: Record<string, string>, beat: string): Resource {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'WorkloadEntry',
    metadata: { name, namespace: 'shop', annotations: { 'meshfed.io/heartbeat': beat } },
    spec: { address: '10.0.0.1', ports: { http: 8080 }, labels, serviceAccount: name },
  };
}

async function heartbeat(store: MemoryStore, name: string): Promise<void> {
  const current = await store.get({ kind: 'WorkloadEntry', namespace: 'shop', name });
  if (current === undefined) throw new Error(`${name} is not stored`);
  await store.update(
    {
      ...current,
      metadata: {
        ...current.metadata,
        annotations: { ...current.metadata.annotations, 'meshfed.io/heartbeat': new Date().toISOString() },
      },
    },
    { expectedResourceVersion: current.metadata.resourceVersion },
  );
}

describe('heartbeat-only discovery changes', () => {
  it('do not invalidate the compiler; a real change does', async () => {
    const store = new MemoryStore();
    open.push(store);
    let changes = 0;
    const set = new DiscoverySet(
      [{ name: 'universal', options: { debounceMs: 2 } }],
      { zone: 'zone-a', store, logger },
      () => changes++,
    );
    open.push(set);
    await set.start();
    const compiler = new ConfigCompiler({
      zone: 'zone-a',
      logger,
      sources: {
        services: () => set.services(),
        workloads: () => set.workloads(),
        resources: () => [],
        catalog: () => undefined,
        trust: () => ({ trustDomain: 'cluster.local', roots: [] }),
        gateway: () => undefined,
      },
    });
    const web = (): WorkloadEndpoint | undefined => set.workloads().find((w) => w.name === 'web');

    await store.create(entry('web', { app: 'web' }, new Date().toISOString()));
    // The model may show web a moment before the (debounced) notification: wait for both.
    await waitFor(() => web() !== undefined && changes > 0, { what: 'web discovered and notified' });
    const endpoint = web();
    const afterRegistration = changes;
    compiler.invalidate();
    const v1 = compiler.compileSidecar('shop/web', 'shop', 'web')?.version;
    expect(v1).toMatch(/^[0-9a-f]{32}$/);

    for (let i = 0; i < 5; i++) await heartbeat(store, 'web');
    // A fence: the source handles store events in order, so once `api` shows, the heartbeats were handled.
    await store.create(entry('api', { app: 'api' }, new Date().toISOString()));
    await waitFor(() => set.workloads().some((w) => w.name === 'api') && changes > afterRegistration, {
      what: 'api discovered and notified',
    });
    // The heartbeats changed nothing the model holds: web's endpoint is the very same object...
    expect(web()).toBe(endpoint);
    // ...and only the fence (one change, perhaps two notifications if batched apart) reached the listener.
    expect(changes - afterRegistration).toBeGreaterThanOrEqual(1);
    expect(changes - afterRegistration).toBeLessThanOrEqual(2);
    compiler.invalidate();
    expect(compiler.compileSidecar('shop/web', 'shop', 'web')?.version).toBe(v1);

    // Control: a real change of web (a label) is seen, with a new endpoint and a new version.
    const beforeRelabel = changes;
    const current = await store.get({ kind: 'WorkloadEntry', namespace: 'shop', name: 'web' });
    if (current === undefined) throw new Error('web vanished');
    await store.update(
      { ...current, spec: { ...current.spec, labels: { app: 'web', version: 'v2' } } },
      { expectedResourceVersion: current.metadata.resourceVersion },
    );
    await waitFor(() => web()?.labels.version === 'v2' && changes > beforeRelabel, { what: 'the new label' });
    expect(web()).not.toBe(endpoint);
    compiler.invalidate();
    expect(compiler.compileSidecar('shop/web', 'shop', 'web')?.version).not.toBe(v1);
  });
});
