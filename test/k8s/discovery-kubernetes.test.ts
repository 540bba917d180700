/**
 * The Kubernetes discovery source end to end: the real @kubernetes/client-node
 * informers against the fake API server, objects written as the cluster's
 * controllers write them.
 */

import { afterEach, describe, expect, it } from '@jest/globals';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';

import { ErrorCodes, isMeshError } from '../../core/errors.js';
import { createDiscoverySource } from '../../zone-cp/discovery/discovery.js';
import type { KubernetesDiscovery } from '../../zone-cp/discovery/discovery-builtins.js';
import '../../zone-cp/discovery/discovery-builtins.js';
import type { LocalService, WorkloadEndpoint } from '../../zone-cp/discovery/discovery.js';
import { KubernetesSource } from '../../zone-cp/discovery/discovery-kubernetes.js';
import type { FakeKubeApiServer } from '../common/fake-kube-apiserver.js';
import { waitFor } from '../common/wait.js';
import { ADMIN_TOKEN, ClusterWriter, kubeConfigFor, startFake } from './kube-helpers.js';

/** The source's own credentials, so a test can cut it off while writing with the admin token. */
const SOURCE_TOKEN = 'discovery-token';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

interface Cluster {
  fake: FakeKubeApiServer;
  kube: ClusterWriter;
  source: KubernetesSource;
  /** How many times the source called its listeners. */
  notifications: () => number;
}

async function cluster(
  setup: (kube: ClusterWriter) => Promise<void> = async () => undefined,
): Promise<Cluster> {
  const { fake, kubeConfig, tls } = await startFake({ adminTokens: [ADMIN_TOKEN, SOURCE_TOKEN] });
  closers.push(() => fake.close());
  const kube = new ClusterWriter(kubeConfig);
  await setup(kube);
  const source = new KubernetesSource({
    kubeConfig: kubeConfigFor(fake.url, SOURCE_TOKEN, tls.caPem),
    debounceMs: 5,
    retryInitialMs: 20,
    retryMaxMs: 200,
  });
  closers.push(() => source.close());
  let count = 0;
  source.onChange(() => count++);
  await source.start();
  return { fake, kube, source, notifications: () => count };
}

function service(source: KubernetesSource, namespace: string, name: string): LocalService | undefined {
  return source.services().find((s) => s.namespace === namespace && s.name === name);
}

function endpointNames(source: KubernetesSource, namespace: string, name: string): string[] {
  return (service(source, namespace, name)?.endpoints ?? []).map((e) => e.name).sort();
}

/** Names of the source's workloads (from pods), sorted and joined: `a,b`. */
function workloadNames(source: KubernetesSource): string {
  return source
    .workloads()
    .map((w) => w.name)
    .sort()
    .join();
}

/** A shop namespace with a node, the cart service, and its pods cart-1 (10.0.0.1) and cart-2 (10.0.0.2). */
async function shop(kube: ClusterWriter): Promise<void> {
  await kube.namespace('shop', { 'meshfed-injection': 'enabled' });
  await kube.node('node-a', 'eu-west', 'eu-west-1a');
  await kube.service('shop', 'cart', [{ name: 'http', port: 80, targetPort: 'web' }]);
  for (const [name, ip] of [
    ['cart-1', '10.0.0.1'],
    ['cart-2', '10.0.0.2'],
  ] as const) {
    await kube.pod({
      name,
      namespace: 'shop',
      ip,
      labels: { app: 'cart', version: 'v1' },
      sidecar: true,
      serviceAccount: 'cart',
      node: 'node-a',
      ports: { web: 8080 },
    });
  }
  await kube.slice(
    'shop',
    'cart-abc',
    'cart',
    [
      { ip: '10.0.0.1', pod: 'cart-1', node: 'node-a' },
      { ip: '10.0.0.2', pod: 'cart-2', node: 'node-a' },
    ],
    [{ name: 'http', port: 8080 }],
  );
}

describe('Kubernetes discovery source', () => {
  it('maps Services, EndpointSlices, Pods and Nodes into services and workloads', async () => {
    const { source } = await cluster(shop);
    const cart = service(source, 'shop', 'cart');
    expect(cart).toMatchObject({
      name: 'cart',
      namespace: 'shop',
      ports: [{ name: 'http', port: 80, targetPort: 'web', protocol: 'http' }],
      exportTo: ['*'],
      source: 'kubernetes',
    });
    const first = cart?.endpoints[0] as WorkloadEndpoint;
    expect(first).toMatchObject({
      name: 'cart-1',
      namespace: 'shop',
      address: '10.0.0.1',
      inboundPort: 15006,
      labels: { app: 'cart', version: 'v1' },
      serviceAccount: 'cart',
      locality: 'eu-west/eu-west-1a',
      healthy: true,
      sidecar: true,
      ports: { web: 8080 },
    });
    expect(cart?.endpoints).toHaveLength(2);
    expect(workloadNames(source)).toBe('cart-1,cart-2');
    expect(source.namespaceLabels('shop')?.['meshfed-injection']).toBe('enabled');
    expect(source.errors()).toEqual([]);
    expect(source.status().every((s) => s.synced)).toBe(true);
  });

  it('follows a pod appearing, turning unready, and being deleted', async () => {
    const { kube, source } = await cluster(shop);
    await kube.pod({
      name: 'cart-3',
      namespace: 'shop',
      ip: '10.0.0.3',
      labels: { app: 'cart' },
      ports: { web: 9090 },
    });
    await kube.replaceSlice(
      'shop',
      'cart-abc',
      'cart',
      [
        { ip: '10.0.0.1', pod: 'cart-1' },
        { ip: '10.0.0.2', pod: 'cart-2' },
        { ip: '10.0.0.3', pod: 'cart-3' },
      ],
      [{ name: 'http', port: 8080 }],
    );
    await waitFor(() => endpointNames(source, 'shop', 'cart').includes('cart-3'), {
      what: 'cart-3 as an endpoint',
    });
    const third = service(source, 'shop', 'cart')?.endpoints.find((e) => e.name === 'cart-3');
    // No sidecar on cart-3: reached in plaintext at its own port for the named target.
    expect(third).toMatchObject({ sidecar: false, ports: { web: 9090 }, healthy: true });

    await kube.podStatus('shop', 'cart-1', '10.0.0.1', false);
    await kube.replaceSlice(
      'shop',
      'cart-abc',
      'cart',
      [
        { ip: '10.0.0.1', pod: 'cart-1', ready: false },
        { ip: '10.0.0.2', pod: 'cart-2' },
        { ip: '10.0.0.3', pod: 'cart-3' },
      ],
      [{ name: 'http', port: 8080 }],
    );
    await waitFor(
      () => service(source, 'shop', 'cart')?.endpoints.find((e) => e.name === 'cart-1')?.healthy === false,
      { what: 'cart-1 unhealthy' },
    );
    expect(source.workloads().find((w) => w.name === 'cart-1')?.healthy).toBe(false);

    await kube.core.deleteNamespacedPod({ namespace: 'shop', name: 'cart-2' });
    await kube.replaceSlice(
      'shop',
      'cart-abc',
      'cart',
      [
        { ip: '10.0.0.1', pod: 'cart-1', ready: false },
        { ip: '10.0.0.3', pod: 'cart-3' },
      ],
      [{ name: 'http', port: 8080 }],
    );
    await waitFor(() => !endpointNames(source, 'shop', 'cart').includes('cart-2'), {
      what: 'cart-2 to be gone',
    });
    // Pods and slices have informers of their own: the pod's DELETE may land after the slice's update.
    await waitFor(() => workloadNames(source) === 'cart-1,cart-3', { what: 'workloads cart-1 and cart-3' });

    await kube.core.deleteNamespacedService({ namespace: 'shop', name: 'cart' });
    await waitFor(() => service(source, 'shop', 'cart') === undefined, {
      what: 'the cart service to be gone',
    });
  });

  it('recovers after its watches are dropped and sees what changed meanwhile', async () => {
    const { fake, kube, source } = await cluster(shop);
    // Graceful end (a server watch timeout): the informers resume from their resourceVersion at once.
    fake.dropWatches({ graceful: true });
    await kube.pod({ name: 'cart-9', namespace: 'shop', ip: '10.0.0.9', labels: { app: 'cart' } });
    await waitFor(() => source.workloads().some((w) => w.name === 'cart-9'), {
      what: 'cart-9 after a graceful drop',
    });

    // The source is cut off (its connections die and the API refuses it) while the cluster changes.
    const watchesBefore = fake.watchCount();
    fake.refuseToken(SOURCE_TOKEN);
    await waitFor(() => fake.requests({ status: 503 }).length > 0, { what: 'the source to be refused' });
    await kube.core.deleteNamespacedPod({ namespace: 'shop', name: 'cart-1' });
    await kube.replaceSlice(
      'shop',
      'cart-abc',
      'cart',
      [{ ip: '10.0.0.2', pod: 'cart-2' }],
      [{ name: 'http', port: 8080 }],
    );
    expect(endpointNames(source, 'shop', 'cart')).toEqual(['cart-1', 'cart-2']); // last known view meanwhile
    await waitFor(() => source.status().some((s) => s.lastError !== undefined), {
      what: 'the source to report the refusal',
    });
    fake.refuseToken(SOURCE_TOKEN, false);
    await waitFor(() => endpointNames(source, 'shop', 'cart').join() === 'cart-2', {
      what: 'the change made while cut off',
    });
    await waitFor(() => fake.watchCount() === watchesBefore, { what: 'every informer watching again' });
    await waitFor(() => source.status().every((s) => s.lastError === undefined), { what: 'errors cleared' });
    // The pod informer catches up on its own watch: its DELETE may land after the slices' update.
    await waitFor(() => workloadNames(source) === 'cart-2,cart-9', {
      what: 'the pod deleted while cut off to be gone',
    });
  });

  it('relists after 410 Gone and ends consistent, deletions included', async () => {
    const { fake, kube, source } = await cluster(shop);
    fake.refuseToken(SOURCE_TOKEN);
    await kube.core.deleteNamespacedPod({ namespace: 'shop', name: 'cart-1' });
    await kube.pod({
      name: 'cart-4',
      namespace: 'shop',
      ip: '10.0.0.4',
      labels: { app: 'cart' },
      sidecar: true,
    });
    await kube.replaceSlice(
      'shop',
      'cart-abc',
      'cart',
      [
        { ip: '10.0.0.2', pod: 'cart-2' },
        { ip: '10.0.0.4', pod: 'cart-4' },
      ],
      [{ name: 'http', port: 8080 }],
    );
    await kube.service('shop', 'orders', [{ name: 'grpc', port: 9000 }]);
    fake.compactHistory();
    const podLists = fake.requests({ method: 'GET', path: '/api/v1/pods', watch: false }).length;
    fake.refuseToken(SOURCE_TOKEN, false);
    await waitFor(() => endpointNames(source, 'shop', 'cart').join() === 'cart-2,cart-4', {
      what: 'the relisted endpoints',
    });
    await waitFor(() => service(source, 'shop', 'orders') !== undefined, { what: 'the orders service' });
    // Each informer relists on its own schedule: the pods one may finish after the slices one.
    await waitFor(
      () =>
        fake.requests({ method: 'GET', path: '/api/v1/pods', watch: false, status: 200 }).length > podLists,
      { what: 'the pods informer to relist' },
    );
    await waitFor(() => workloadNames(source) === 'cart-2,cart-4', {
      what: 'workloads cart-2 and cart-4 after the relist',
    });
    expect(service(source, 'shop', 'orders')?.ports).toEqual([
      { name: 'grpc', port: 9000, targetPort: 9000, protocol: 'grpc' },
    ]);
  });

  it('skips and reports a malformed EndpointSlice while everything else keeps working', async () => {
    const { kube, source } = await cluster(shop);
    await kube.service('shop', 'pay', [{ name: 'http', port: 80 }]);
    // The fake stores what it is given (a real API server would refuse this): a broken slice for pay.
    await kube.discovery.createNamespacedEndpointSlice({
      namespace: 'shop',
      body: {
        metadata: { name: 'pay-bad', labels: { 'kubernetes.io/service-name': 'pay' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: [] }],
      },
    });
    await waitFor(() => source.errors().length > 0, { what: 'the bad slice to be reported' });
    expect(source.errors()).toEqual([
      {
        resource: 'EndpointSlice/shop/pay-bad',
        reason: 'endpoints[0].addresses must be a non-empty list of addresses',
      },
    ]);
    expect(endpointNames(source, 'shop', 'cart')).toEqual(['cart-1', 'cart-2']);
    expect(service(source, 'shop', 'pay')?.endpoints).toEqual([]);
    // Fixed: the report clears and the endpoint appears.
    await kube.replaceSlice('shop', 'pay-bad', 'pay', [{ ip: '10.0.1.1' }], [{ name: 'http', port: 80 }]);
    await waitFor(() => source.errors().length === 0, { what: 'the report to clear' });
    expect(service(source, 'shop', 'pay')?.endpoints.map((e) => e.address)).toEqual(['10.0.1.1']);
  });

  it('notifies once per burst and not at all for changes the mesh does not see', async () => {
    const { fake, kube, source, notifications } = await cluster(shop);
    const servicesBefore = source.services();
    const before = notifications();
    // The kubelet reports a new hostIP: a real write, but nothing the model holds changes.
    const pod = await kube.core.readNamespacedPod({ namespace: 'shop', name: 'cart-1' });
    const rv = fake.resourceVersion;
    await kube.core.replaceNamespacedPodStatus({
      namespace: 'shop',
      name: 'cart-1',
      body: { ...pod, status: { ...pod.status, hostIP: '192.168.7.7' } },
    });
    expect(fake.resourceVersion).toBe(rv + 1);
    // A real change on the same (ordered) pod stream, after it.
    await kube.pod({ name: 'lonely', namespace: 'shop', ip: '10.0.0.50' });
    await waitFor(() => source.workloads().some((w) => w.name === 'lonely'), { what: 'the lonely pod' });
    await waitFor(() => notifications() > before, { what: 'a notification' });
    expect(source.services()).toBe(servicesBefore); // the services view was not even rebuilt into a new list
    expect(notifications()).toBe(before + 1);

    // A resync rebuilds everything from the informer caches: same views, no notification.
    const beforeResync = JSON.stringify(source.services());
    const count = notifications();
    source.resync();
    await kube.pod({ name: 'lonely-2', namespace: 'shop', ip: '10.0.0.51' });
    await waitFor(() => source.workloads().some((w) => w.name === 'lonely-2'), {
      what: 'the second lonely pod',
    });
    expect(JSON.stringify(source.services())).toBe(beforeResync);
    expect(notifications()).toBe(count + 1);

    // A pod label change reaches the service it is an endpoint of, with no EndpointSlice change.
    await kube.core.patchNamespacedPod(
      {
        namespace: 'shop',
        name: 'cart-2',
        body: [{ op: 'replace', path: '/metadata/labels/version', value: 'v2' }],
      },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    await waitFor(
      () =>
        service(source, 'shop', 'cart')?.endpoints.find((e) => e.name === 'cart-2')?.labels.version === 'v2',
      { what: 'the new label on the cart-2 endpoint' },
    );
  });

  it('is created through the registry, loading the source on start, and fails start() with UNAVAILABLE when the API stays down', async () => {
    const { fake, kubeConfig } = await startFake();
    closers.push(() => fake.close());
    const source = createDiscoverySource('kubernetes', { kubeConfig, debounceMs: 5 }) as KubernetesDiscovery;
    closers.push(() => source.close());
    expect(source.name).toBe('kubernetes');
    expect(source.services()).toEqual([]);
    let notified = 0;
    source.onChange(() => notified++); // subscribed before the real source exists
    await source.start();
    expect(source.namespaceLabels('default')).toEqual({ 'kubernetes.io/metadata.name': 'default' });
    await new ClusterWriter(kubeConfig).service('default', 'api', [{ name: 'http', port: 80 }]);
    await waitFor(() => source.services().some((s) => s.name === 'api'), { what: 'the api service' });
    await waitFor(() => notified > 0, { what: 'the early listener to be called' });
    expect(source.status().every((s) => s.synced)).toBe(true);

    fake.setAvailable(false);
    const down = createDiscoverySource('kubernetes', {
      kubeConfig,
      // Long enough for a refused attempt to be answered even on a loaded machine.
      startTimeoutMs: 1_500,
      retryInitialMs: 20,
    }) as KubernetesDiscovery;
    closers.push(() => down.close());
    let caught: unknown;
    await down.start().catch((err: unknown) => (caught = err));
    expect(isMeshError(caught, ErrorCodes.UNAVAILABLE)).toBe(true);
    expect((caught as Error).message).toContain('503');
  });
});
