/**
 * A zone CP in a cluster: VMs registered as WorkloadEntry custom resources
 * (applied with kubectl, or written by the registration API through the
 * Kubernetes store) are discovered by the universal source running over
 * the Kubernetes store, next to the Kubernetes source's pods.
 */

import { afterEach, describe, expect, it } from '@jest/globals';
import { CustomObjectsApi } from '@kubernetes/client-node';

import { KubernetesStore } from '../../core/store/store-kubernetes.js';
import { UniversalSource } from '../../zone-cp/discovery/discovery-universal.js';
import { KubernetesSource } from '../../zone-cp/discovery/discovery-kubernetes.js';
import { waitFor } from '../common/wait.js';
import { ClusterWriter, startFake } from './kube-helpers.js';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

describe('universal source over the Kubernetes store', () => {
  it('discovers WorkloadEntry CRs next to pods, follows kubectl edits, and survives a dropped watch', async () => {
    const { fake, kubeConfig } = await startFake();
    closers.push(() => fake.close());
    const kube = new ClusterWriter(kubeConfig);
    await kube.namespace('shop');
    const store = await KubernetesStore.open({ kubeConfig, installCrds: true });
    closers.push(() => store.close());
    const universal = new UniversalSource({ store, debounceMs: 5, retryInitialMs: 20 });
    closers.push(() => universal.close());
    const pods = new KubernetesSource({ kubeConfig, debounceMs: 5, retryInitialMs: 20 });
    closers.push(() => pods.close());
    await Promise.all([universal.start(), pods.start()]);

    // The VM's entry, as `kubectl apply` would write it under the meshfed group.
    const custom = kubeConfig.makeApiClient(CustomObjectsApi);
    await custom.createNamespacedCustomObject({
      group: 'networking.meshfed.io',
      version: 'v1',
      namespace: 'shop',
      plural: 'workloadentries',
      body: {
        apiVersion: 'networking.meshfed.io/v1',
        kind: 'WorkloadEntry',
        metadata: { name: 'cart-vm', annotations: { 'meshfed.io/inbound-port': '15006' } },
        spec: {
          address: '192.168.10.5',
          ports: { web: 8080 },
          labels: { app: 'cart' },
          serviceAccount: 'cart',
        },
      },
    });
    await custom.createNamespacedCustomObject({
      group: 'networking.meshfed.io',
      version: 'v1',
      namespace: 'shop',
      plural: 'serviceentries',
      body: {
        apiVersion: 'networking.meshfed.io/v1',
        kind: 'ServiceEntry',
        metadata: { name: 'cart-vms' },
        spec: {
          hosts: ['cart.shop.svc.cluster.local'],
          ports: [{ number: 80, name: 'web', protocol: 'HTTP' }],
          workloadSelector: { labels: { app: 'cart' } },
        },
      },
    });
    await kube.service('shop', 'cart', [{ name: 'web', port: 80, targetPort: 'web' }]);
    await kube.pod({
      name: 'cart-pod',
      namespace: 'shop',
      ip: '10.0.0.7',
      labels: { app: 'cart' },
      sidecar: true,
      ports: { web: 8080 },
    });
    await kube.slice(
      'shop',
      'cart-x',
      'cart',
      [{ ip: '10.0.0.7', pod: 'cart-pod' }],
      [{ name: 'web', port: 8080 }],
    );

    const addresses = (): string[] =>
      [...universal.services(), ...pods.services()]
        .filter((s) => s.namespace === 'shop' && s.name === 'cart')
        .flatMap((s) => s.endpoints.map((e) => `${e.source}:${e.address}`))
        .sort();
    await waitFor(() => addresses().length === 2, { what: 'the VM and the pod behind cart' });
    expect(addresses()).toEqual(['kubernetes:10.0.0.7', 'universal:192.168.10.5']);

    // The universal source's store watch is dropped; an edit made meanwhile still arrives.
    fake.dropWatches();
    const vm = await store.get({ kind: 'WorkloadEntry', namespace: 'shop', name: 'cart-vm' });
    if (!vm) throw new Error('missing');
    await store.update({ ...vm, spec: { ...vm.spec, address: '192.168.10.6' } });
    await waitFor(() => addresses().includes('universal:192.168.10.6'), { what: 'the moved VM' });
    expect(universal.errors()).toEqual([]);
  });
});
