import { afterEach, describe, expect, it } from '@jest/globals';

import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { Resource, ResourceKey, StoredResource } from '../../core/resource/resource.js';
import { MemoryStore } from '../../core/store/store-memory.js';
import type {
  ListOptions,
  ListResult,
  Store,
  Watch,
  WatchHandlers,
  WatchOptions,
  WriteOptions,
} from '../../core/store/store.js';
import { waitFor } from '../../test/common/wait.js';
import { createDiscoverySource } from './discovery.js';
import type { LocalService } from './discovery.js';
import { UniversalSource } from './discovery-universal.js';

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

async function setup(
  options: { heartbeatGraceMs?: number; historySize?: number } = {},
): Promise<{ store: MemoryStore; source: UniversalSource; notifications: () => number }> {
  const store = new MemoryStore({ historySize: options.historySize });
  open.push(store);
  const source = new UniversalSource({
    store,
    debounceMs: 2,
    retryInitialMs: 5,
    ...(options.heartbeatGraceMs === undefined ? {} : { heartbeatGraceMs: options.heartbeatGraceMs }),
  });
  open.push(source);
  let count = 0;
  source.onChange(() => count++);
  await source.start();
  return { store, source, notifications: () => count };
}

function workloadEntry(
  name: string,
  spec: Record<string, unknown>,
  meta: { labels?: Record<string, string>; annotations?: Record<string, string>; namespace?: string } = {},
): Resource {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'WorkloadEntry',
    metadata: {
      name,
      namespace: meta.namespace ?? 'shop',
      ...(meta.labels ? { labels: meta.labels } : {}),
      ...(meta.annotations ? { annotations: meta.annotations } : {}),
    },
    spec,
  };
}

function serviceEntry(name: string, spec: Record<string, unknown>, namespace = 'shop'): Resource {
  return { apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name, namespace }, spec };
}

/**
 * A store whose watches can be cut: `pause()` drops their events (the
 * network is gone), `fail(err)` ends them with `err` as a backend would.
 */
class FlakyStore implements Store {
  readonly backend = 'flaky';
  lists = 0;
  private paused = false;
  private readonly active = new Set<{ inner: Watch; handlers: WatchHandlers }>();

  constructor(private readonly inner: Store) {}

  pause(): void {
    this.paused = true;
  }

  fail(err: Error): void {
    this.paused = false;
    for (const w of [...this.active]) {
      this.active.delete(w);
      w.inner.close();
      w.handlers.onError(err);
    }
  }

  get(key: ResourceKey): Promise<StoredResource | undefined> {
    return this.inner.get(key);
  }
  list(options: ListOptions): Promise<ListResult> {
    this.lists++;
    return this.inner.list(options);
  }
  create(resource: Resource): Promise<StoredResource> {
    return this.inner.create(resource);
  }
  update(resource: Resource, options?: WriteOptions): Promise<StoredResource> {
    return this.inner.update(resource, options);
  }
  delete(key: ResourceKey, options?: WriteOptions): Promise<StoredResource> {
    return this.inner.delete(key, options);
  }
  currentRevision(): Promise<number> {
    return this.inner.currentRevision();
  }
  watch(options: WatchOptions, handlers: WatchHandlers): Watch {
    const entry = {
      handlers,
      inner: this.inner.watch(options, {
        onEvent: (ev) => {
          if (!this.paused) handlers.onEvent(ev);
        },
        onError: (err) => handlers.onError(err),
      }),
    };
    this.active.add(entry);
    return {
      close: () => {
        this.active.delete(entry);
        entry.inner.close();
      },
    };
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

function find(source: UniversalSource, namespace: string, name: string): LocalService | undefined {
  return source.services().find((s) => s.namespace === namespace && s.name === name);
}

describe('universal discovery source', () => {
  it('forms a service from the meshfed.io/service label with the workloads named ports', async () => {
    const { store, source } = await setup();
    await store.create(
      workloadEntry(
        'cart-vm-1',
        {
          address: '10.1.0.1',
          ports: { http: 8080, metrics: 9102 },
          labels: { app: 'cart', 'meshfed.io/service': 'cart' },
          serviceAccount: 'cart',
          locality: 'eu-west/eu-west-1a',
          weight: 3,
        },
        { annotations: { 'meshfed.io/inbound-port': '16006', 'meshfed.io/service-ports': 'http=80' } },
      ),
    );
    await waitFor(() => find(source, 'shop', 'cart'), { what: 'the cart service' });
    expect(find(source, 'shop', 'cart')).toEqual({
      name: 'cart',
      namespace: 'shop',
      ports: [
        { name: 'http', port: 80, targetPort: 'http', protocol: 'http' },
        { name: 'metrics', port: 9102, targetPort: 'metrics', protocol: 'tcp' },
      ],
      endpoints: [
        {
          name: 'cart-vm-1',
          namespace: 'shop',
          address: '10.1.0.1',
          inboundPort: 16006,
          labels: { app: 'cart', 'meshfed.io/service': 'cart' },
          serviceAccount: 'cart',
          locality: 'eu-west/eu-west-1a',
          weight: 3,
          healthy: true,
          sidecar: true,
          ports: { http: 8080, metrics: 9102 },
          source: 'universal',
          annotations: { 'meshfed.io/inbound-port': '16006', 'meshfed.io/service-ports': 'http=80' },
        },
      ],
      exportTo: ['*'],
      source: 'universal',
    });
    expect(source.workloads().map((w) => w.name)).toEqual(['cart-vm-1']);
  });

  it('forms a service from a ServiceEntry workloadSelector, Istio style, and follows its changes', async () => {
    const { store, source } = await setup();
    await store.create(
      serviceEntry('vm-orders', {
        hosts: ['orders.shop.svc.cluster.local'],
        location: 'MESH_INTERNAL',
        resolution: 'STATIC',
        ports: [
          { number: 80, name: 'http', protocol: 'HTTP' },
          { number: 9000, name: 'grpc', protocol: 'GRPC', targetPort: 9001 },
        ],
        workloadSelector: { labels: { app: 'orders' } },
        exportTo: ['.'],
      }),
    );
    await store.create(
      workloadEntry('orders-a', { address: '10.1.0.2', ports: { http: 8080 }, labels: { app: 'orders' } }),
    );
    await store.create(workloadEntry('other', { address: '10.1.0.3', labels: { app: 'other' } }));
    await waitFor(() => find(source, 'shop', 'orders')?.endpoints.length === 1, {
      what: 'orders with one endpoint',
    });
    const orders = find(source, 'shop', 'orders');
    expect(orders?.ports).toEqual([
      { name: 'http', port: 80, targetPort: 'http', protocol: 'http' },
      { name: 'grpc', port: 9000, targetPort: 9001, protocol: 'grpc' },
    ]);
    expect(orders?.exportTo).toEqual(['.']);
    expect(orders?.endpoints.map((e) => e.name)).toEqual(['orders-a']);

    // A relabelled workload joins; changing the selector moves membership; deleting the entry removes the service.
    const other = await store.get({ kind: 'WorkloadEntry', namespace: 'shop', name: 'other' });
    if (!other) throw new Error('missing');
    await store.update({ ...other, spec: { ...other.spec, labels: { app: 'orders' } } });
    await waitFor(() => find(source, 'shop', 'orders')?.endpoints.length === 2, { what: 'two endpoints' });
    const se = await store.get({ kind: 'ServiceEntry', namespace: 'shop', name: 'vm-orders' });
    if (!se) throw new Error('missing');
    await store.update({ ...se, spec: { ...se.spec, workloadSelector: { labels: { app: 'nobody' } } } });
    await waitFor(() => find(source, 'shop', 'orders')?.endpoints.length === 0, { what: 'no endpoints' });
    await store.delete({ kind: 'ServiceEntry', namespace: 'shop', name: 'vm-orders' });
    await waitFor(() => find(source, 'shop', 'orders') === undefined, { what: 'orders to be gone' });
    expect(source.workloads()).toHaveLength(2);
  });

  it('marks workloads unhealthy by annotation, by Healthy condition, and by missed heartbeats', async () => {
    // Long enough that the first look at a fresh heartbeat cannot miss it, even on a loaded machine.
    const { store, source } = await setup({ heartbeatGraceMs: 1_500 });
    const labels = { 'meshfed.io/service': 'web' };
    await store.create(
      workloadEntry(
        'by-annotation',
        { address: '10.2.0.1', labels },
        { annotations: { 'meshfed.io/healthy': 'false' } },
      ),
    );
    await store.create({
      ...workloadEntry('by-condition', { address: '10.2.0.2', labels }),
      status: { conditions: [{ type: 'Healthy', status: 'False' }] },
    });
    await store.create(
      workloadEntry(
        'beating',
        { address: '10.2.0.3', labels },
        { annotations: { 'meshfed.io/heartbeat': new Date().toISOString() } },
      ),
    );
    await store.create(workloadEntry('static', { address: '10.2.0.4', labels }));
    const health = (): Record<string, boolean> =>
      Object.fromEntries((find(source, 'shop', 'web')?.endpoints ?? []).map((e) => [e.name, e.healthy]));
    await waitFor(() => Object.keys(health()).length === 4, { what: 'four endpoints' });
    expect(health()).toEqual({ 'by-annotation': false, 'by-condition': false, beating: true, static: true });
    // No write happens: the grace period passes and the heartbeating workload turns unhealthy by itself.
    await waitFor(() => health().beating === false, { what: 'the missed heartbeat', timeoutMs: 5_000 });
    expect(health().static).toBe(true);
    // A new heartbeat brings it back.
    const beating = await store.get({ kind: 'WorkloadEntry', namespace: 'shop', name: 'beating' });
    if (!beating) throw new Error('missing');
    await store.update({
      ...beating,
      metadata: { ...beating.metadata, annotations: { 'meshfed.io/heartbeat': new Date().toISOString() } },
    });
    await waitFor(() => health().beating === true, { what: 'the fresh heartbeat' });
  });

  it('skips and reports malformed entries by name while the rest keeps working', async () => {
    const { store, source } = await setup();
    await store.create(
      workloadEntry('good', { address: '10.3.0.1', labels: { 'meshfed.io/service': 'api' } }),
    );
    await store.create(workloadEntry('no-address', { labels: { 'meshfed.io/service': 'api' } }));
    await store.create(
      workloadEntry('bad-port', {
        address: '10.3.0.3',
        ports: { http: 70000 },
        labels: { 'meshfed.io/service': 'api' },
      }),
    );
    await store.create(serviceEntry('bad-se', { hosts: ['x'], workloadSelector: { labels: {} } }));
    await waitFor(() => source.errors().length === 3 && find(source, 'shop', 'api'), {
      what: 'three reports and the api service',
    });
    expect(source.errors()).toEqual([
      { resource: 'ServiceEntry/shop/bad-se', reason: 'spec.workloadSelector.labels is empty' },
      { resource: 'WorkloadEntry/shop/bad-port', reason: 'spec.ports.http must be an integer 1-65535' },
      { resource: 'WorkloadEntry/shop/no-address', reason: 'spec.address is missing' },
    ]);
    expect(find(source, 'shop', 'api')?.endpoints.map((e) => e.name)).toEqual(['good']);
    // Fixing one clears its report and adds its endpoint.
    const bad = await store.get({ kind: 'WorkloadEntry', namespace: 'shop', name: 'no-address' });
    if (!bad) throw new Error('missing');
    await store.update({ ...bad, spec: { ...bad.spec, address: '10.3.0.2' } });
    await waitFor(() => find(source, 'shop', 'api')?.endpoints.length === 2, { what: 'the fixed endpoint' });
    expect(find(source, 'shop', 'api')?.endpoints.map((e) => e.name)).toEqual(['good', 'no-address']);
    expect(source.errors().map((e) => e.resource)).toEqual([
      'ServiceEntry/shop/bad-se',
      'WorkloadEntry/shop/bad-port',
    ]);
  });

  it('relists after REVISION_TOO_OLD and retries other watch failures, converging with deletions included', async () => {
    const inner = new MemoryStore();
    open.push(inner);
    const store = new FlakyStore(inner);
    const source = new UniversalSource({ store, debounceMs: 2, retryInitialMs: 5 });
    open.push(source);
    await source.start();
    await store.create(workloadEntry('a', { address: '10.4.0.1', labels: { 'meshfed.io/service': 's' } }));
    await waitFor(() => source.workloads().length === 1, { what: 'a' });

    // Disconnected: changes happen that the source's watches never see, then the store says the position is gone.
    store.pause();
    await store.delete({ kind: 'WorkloadEntry', namespace: 'shop', name: 'a' });
    await store.create(workloadEntry('b', { address: '10.4.0.2', labels: { 'meshfed.io/service': 's' } }));
    const lists = store.lists;
    store.fail(new MeshError(ErrorCodes.REVISION_TOO_OLD, 'history gone'));
    await waitFor(
      () =>
        source
          .workloads()
          .map((w) => w.name)
          .join() === 'b',
      { what: 'the relisted view' },
    );
    expect(find(source, 'shop', 's')?.endpoints.map((e) => e.name)).toEqual(['b']);
    expect(store.lists).toBeGreaterThan(lists);

    // Any other failure: relist after a backoff, same convergence.
    store.pause();
    await store.create(workloadEntry('c', { address: '10.4.0.3', labels: { 'meshfed.io/service': 's' } }));
    store.fail(new MeshError(ErrorCodes.STORE_UNAVAILABLE, 'connection lost'));
    await waitFor(() => find(source, 'shop', 's')?.endpoints.length === 2, { what: 'c after the failure' });
    expect(
      source
        .workloads()
        .map((w) => w.name)
        .sort(),
    ).toEqual(['b', 'c']);
  });

  it('notifies once for a burst and is created through the registry', async () => {
    const store = new MemoryStore();
    open.push(store);
    const source = createDiscoverySource('universal', { store, debounceMs: 20 });
    open.push(source);
    expect(source.name).toBe('universal');
    let count = 0;
    source.onChange(() => count++);
    await source.start();
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        store.create(
          workloadEntry(`w${i}`, { address: `10.5.0.${i + 1}`, labels: { 'meshfed.io/service': 'burst' } }),
        ),
      ),
    );
    await waitFor(() => source.services()[0]?.endpoints.length === 20, { what: 'twenty endpoints' });
    await waitFor(() => count > 0, { what: 'a notification' });
    expect(count).toBeLessThanOrEqual(2);
    // A heartbeat that changes no health changes nothing visible: the views stay the same objects.
    const servicesBefore = source.services();
    const w0 = await store.get({ kind: 'WorkloadEntry', namespace: 'shop', name: 'w0' });
    if (!w0) throw new Error('missing');
    await store.update({
      ...w0,
      metadata: { ...w0.metadata, annotations: { 'meshfed.io/heartbeat': new Date().toISOString() } },
    });
    // An event after it on the same watch, outside every service: proof the heartbeat was processed.
    await store.create(workloadEntry('loner', { address: '10.5.1.1' }));
    await waitFor(() => source.workloads().some((w) => w.name === 'loner'), { what: 'the loner' });
    expect(source.services()).toBe(servicesBefore);
    expect(() => createDiscoverySource('nope', {})).toThrow(/unknown discovery source "nope"/);
  });
});
