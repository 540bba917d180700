/**
 * The Kubernetes store against the fake API server with the real client:
 * the shared Store contract, then what is particular to Kubernetes.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, describe, expect, it } from '@jest/globals';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { KubeConfig } from '@kubernetes/client-node';

import { ErrorCodes, isMeshError } from '../../core/errors.js';
import type { Resource } from '../../core/resource/resource.js';
import { KubernetesStore } from '../../core/store/store-kubernetes.js';
import type { KubernetesStoreOptions } from '../../core/store/store-kubernetes.js';
import { createStore } from '../../core/store/store-registry.js';
import type { FakeKubeApiServer } from '../common/fake-kube-apiserver.js';
import { waitFor } from '../common/wait.js';
import { collect, describeStoreContract, expectMeshError } from '../store/store-contract.js';
import { ADMIN_TOKEN, startFake } from './kube-helpers.js';

/** Namespaces the contract suite writes into, created as a cluster admin would have. */
const CONTRACT_NAMESPACES = ['ns', 'ns1', 'ns2', 'ns3', 'other', 'none'];

const fakes: FakeKubeApiServer[] = [];
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

const SCOPE_REASON = 'a Kubernetes kind has one scope';

describeStoreContract(
  'kubernetes',
  async ({ historySize }) => {
    const { fake, kubeConfig } = await startFake({ historySize });
    fakes.push(fake);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    for (const name of CONTRACT_NAMESPACES) await core.createNamespace({ body: { metadata: { name } } });
    return KubernetesStore.open({ kubeConfig, installCrds: true });
  },
  {
    // A Kubernetes resource type has one scope (VirtualService's CRD is
    // Namespaced, as in Istio), so no Kubernetes store can hold both a
    // namespaced and a cluster-scoped object of one kind; the store refuses it
    // with INVALID_ARGUMENT (tested below), and the rest of what these cases
    // check is covered by the other cases and the tests below.
    unsupported: {
      'lists by namespace, across namespaces, cluster-scoped, and by label selector': SCOPE_REASON,
      'keeps namespace lists exact across deletes and recreates, cluster-scoped included': SCOPE_REASON,
    },
  },
);

interface Opened {
  fake: FakeKubeApiServer;
  store: KubernetesStore;
  kubeConfig: KubeConfig;
}

const stores: KubernetesStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

async function open(options: Omit<KubernetesStoreOptions, 'kubeConfig'> = {}): Promise<Opened> {
  const { fake, kubeConfig } = await startFake();
  fakes.push(fake);
  await kubeConfig.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: 'shop' } } });
  const store = await KubernetesStore.open({ kubeConfig, installCrds: true, ...options });
  stores.push(store);
  return { fake, store, kubeConfig };
}

function virtualService(name: string, namespace: string, spec: Record<string, unknown>): Resource {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name, namespace },
    spec,
  };
}

const goodSpec = { hosts: ['cart'], http: [{ route: [{ destination: { host: 'cart' } }] }] };

/** Writes straight to the API server, as `kubectl apply` would, bypassing meshfed's validation. */
async function kubectlCreate(kubeConfig: KubeConfig, name: string, spec: unknown): Promise<void> {
  await kubeConfig.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: 'networking.meshfed.io',
    version: 'v1',
    namespace: 'shop',
    plural: 'virtualservices',
    body: { apiVersion: 'networking.meshfed.io/v1', kind: 'VirtualService', metadata: { name }, spec },
  });
}

describe('KubernetesStore', () => {
  it('installs the CRDs and keeps each kind in its scope, refusing the other one', async () => {
    const { fake, store } = await open();
    const served = fake
      .resourceTypes()
      .filter((t) => t.custom)
      .map((t) => `${t.plural}.${t.group}`);
    expect(served).toEqual(
      expect.arrayContaining([
        'virtualservices.networking.meshfed.io',
        'meshes.meshfed.io',
        'meshfedsecrets.internal.meshfed.io',
      ]),
    );
    await expectMeshError(
      store.create({
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'x' },
        spec: goodSpec,
      }),
      ErrorCodes.INVALID_ARGUMENT,
    );
    await expectMeshError(
      store.create({
        apiVersion: 'meshfed.io/v1alpha1',
        kind: 'Mesh',
        metadata: { name: 'default', namespace: 'shop' },
        spec: {},
      }),
      ErrorCodes.INVALID_ARGUMENT,
    );
    // What the two skipped contract cases check, with each kind in its own scope.
    await store.create({
      apiVersion: 'meshfed.io/v1alpha1',
      kind: 'Mesh',
      metadata: { name: 'default', labels: { app: 'web' } },
      spec: {},
    });
    await store.create({
      ...virtualService('b', 'shop', goodSpec),
      metadata: { name: 'b', namespace: 'shop', labels: { app: 'web' } },
    });
    await store.create(virtualService('a', 'default', goodSpec));
    const names = async (kind: string, namespace?: string, labelSelector?: string): Promise<string[]> =>
      (await store.list({ kind, namespace, labelSelector })).items.map(
        (i) => `${i.metadata.namespace ?? ''}/${i.metadata.name}`,
      );
    expect(await names('VirtualService')).toEqual(['default/a', 'shop/b']);
    expect(await names('VirtualService', 'shop')).toEqual(['shop/b']);
    expect(await names('VirtualService', '')).toEqual([]);
    expect(await names('VirtualService', undefined, 'app=web')).toEqual(['shop/b']);
    expect(await names('Mesh')).toEqual(['/default']);
    expect(await names('Mesh', 'shop')).toEqual([]);
    await store.delete({ kind: 'VirtualService', namespace: 'shop', name: 'b' });
    expect(await names('VirtualService', 'shop')).toEqual([]);
    expect(await names('VirtualService')).toEqual(['default/a']);
  });

  it('reads objects applied with kubectl, under the meshfed API group', async () => {
    const { store, kubeConfig } = await open();
    await kubectlCreate(kubeConfig, 'cart', goodSpec);
    const got = await store.get({ kind: 'VirtualService', namespace: 'shop', name: 'cart' });
    expect(got?.apiVersion).toBe('networking.meshfed.io/v1');
    expect(got?.spec).toEqual(goodSpec);
    expect(Number(got?.metadata.resourceVersion)).toBe(await store.currentRevision());
  });

  it('writes status through the status subresource', async () => {
    const { store } = await open();
    const zone = await store.create({
      apiVersion: 'meshfed.io/v1alpha1',
      kind: 'Zone',
      metadata: { name: 'zone-a' },
      spec: { enabled: true },
      status: { connected: true },
    });
    expect(zone.status).toEqual({ connected: true });
    const updated = await store.update({ ...zone, status: { connected: false } });
    expect(updated.status).toEqual({ connected: false });
    expect((await store.get({ kind: 'Zone', namespace: '', name: 'zone-a' }))?.status).toEqual({
      connected: false,
    });
  });

  it('names a missing namespace, or creates it when asked to', async () => {
    const strict = await open();
    const err = await expectMeshError(
      strict.store.create(virtualService('a', 'ghost', goodSpec)),
      ErrorCodes.NOT_FOUND,
    );
    expect(err.message).toContain('namespace "ghost" does not exist');
    const lenient = await open({ createNamespaces: true });
    const created = await lenient.store.create(virtualService('a', 'ghost', goodSpec));
    expect(created.metadata.namespace).toBe('ghost');
  });

  it('without installCrds, a kind with no CRD reads as empty and refuses writes with CONFIG', async () => {
    const { fake, kubeConfig } = await startFake();
    fakes.push(fake);
    const store = await KubernetesStore.open({ kubeConfig });
    stores.push(store);
    expect(await store.get({ kind: 'ZoneInsight', namespace: '', name: 'x' })).toBeUndefined();
    expect((await store.list({ kind: 'ZoneInsight' })).items).toEqual([]);
    const err = await expectMeshError(
      store.create({
        apiVersion: 'meshfed.io/internal',
        kind: 'ZoneInsight',
        metadata: { name: 'x' },
        spec: {},
      }),
      ErrorCodes.CONFIG,
    );
    expect(err.message).toContain('zoneinsights.internal.meshfed.io');
  });

  it('with validate, skips and reports a bad policy applied with kubectl while the others still list and watch', async () => {
    const { store, kubeConfig } = await open({ validate: true });
    await kubectlCreate(kubeConfig, 'good', goodSpec);
    await kubectlCreate(kubeConfig, 'bad', {
      hosts: ['cart'],
      http: [{ route: [{ destination: { host: 'cart' }, weight: 'heavy' }] }],
    });
    const listed = await store.list({ kind: 'VirtualService', namespace: 'shop' });
    expect(listed.items.map((i) => i.metadata.name)).toEqual(['good']);
    expect(store.errors()).toEqual([
      { resource: 'VirtualService/shop/bad', reason: expect.stringContaining('weight') },
    ]);

    const w = collect(store, { kind: 'VirtualService', fromRevision: listed.revision });
    await waitFor(() => fakes[0]?.watchCount() === 1, { what: 'the store watch' });
    // The good one turns bad: for watchers it is gone. Then it is fixed again.
    const custom = kubeConfig.makeApiClient(CustomObjectsApi);
    const patch = (spec: unknown): Promise<unknown> =>
      custom.patchNamespacedCustomObject(
        {
          group: 'networking.meshfed.io',
          version: 'v1',
          namespace: 'shop',
          plural: 'virtualservices',
          name: 'good',
          body: { spec },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    await patch({ hosts: ['cart'], http: 'not-a-list' });
    await patch(goodSpec);
    const events = await w.waitForEvents(2);
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual([
      'DELETED good',
      'MODIFIED good',
    ]);
    expect(store.errors().map((e) => e.resource)).toEqual(['VirtualService/shop/bad']);
    w.close();
  });

  it('resumes a watch after the connection drops and delivers what changed meanwhile; 410 ends it with REVISION_TOO_OLD', async () => {
    const { fake, store } = await open();
    const start = await store.currentRevision();
    const w = collect(store, { kind: 'VirtualService', fromRevision: start });
    await waitFor(() => fake.watchCount() === 1, { what: 'the store watch' });
    // Abrupt drop (the socket dies): the stream fails and resumes from its last revision after a backoff.
    fake.dropWatches();
    await store.create(virtualService('while-down', 'shop', goodSpec));
    await waitFor(() => fake.watchCount() === 1, { what: 'the resumed watch' });
    // The API server refuses everything for a while: the resume keeps retrying.
    fake.setAvailable(false);
    await waitFor(() => fake.requests({ watch: true, status: 503 }).length >= 2, { what: 'refused resumes' });
    fake.setAvailable(true);
    await store.create(virtualService('after-outage', 'shop', goodSpec));
    await w.waitForEvents(2);
    expect(w.events.map((e) => e.object.metadata.name)).toEqual(['while-down', 'after-outage']);
    expect(w.errors).toEqual([]);

    // The history is compacted past the watch's revision (writes of another kind moved it on): 410 ends it.
    await waitFor(() => fake.watchCount() === 1, { what: 'the watch again' });
    await store.create({
      apiVersion: 'meshfed.io/v1alpha1',
      kind: 'Mesh',
      metadata: { name: 'moves-rv' },
      spec: {},
    });
    fake.compactHistory();
    fake.dropWatches();
    const err = await w.waitForError();
    expect(isMeshError(err, ErrorCodes.REVISION_TOO_OLD)).toBe(true);
  });

  it('opens from a kubernetes:// URL with a kubeconfig file', async () => {
    const { fake, tls } = await startFake();
    fakes.push(fake);
    const dir = await mkdtemp(path.join(tmpdir(), 'meshfed-kubeconfig-'));
    const file = path.join(dir, 'config');
    await writeFile(
      file,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: fake',
        '  cluster:',
        `    server: ${fake.url}`,
        `    certificate-authority-data: ${Buffer.from(tls.caPem).toString('base64')}`,
        '    tls-server-name: localhost',
        'users:',
        '- name: admin',
        '  user:',
        `    token: ${ADMIN_TOKEN}`,
        'contexts:',
        '- name: fake',
        '  context: {cluster: fake, user: admin}',
        'current-context: fake',
        '',
      ].join('\n'),
    );
    try {
      const store = await createStore(
        `kubernetes://?kubeconfig=${encodeURIComponent(file)}&installCrds=true`,
      );
      expect(store.backend).toBe('kubernetes');
      await store.create({
        apiVersion: 'meshfed.io/v1alpha1',
        kind: 'Mesh',
        metadata: { name: 'default' },
        spec: {},
      });
      expect((await store.list({ kind: 'Mesh' })).items).toHaveLength(1);
      await store.close();
      await expectMeshError(createStore('kubernetes://?kubeconfig=/nonexistent/config'), ErrorCodes.CONFIG);
      await expectMeshError(createStore('kubernetes://?bogus=1'), ErrorCodes.CONFIG);
      await expectMeshError(
        createStore(`kubernetes://?kubeconfig=${encodeURIComponent(file)}&context=nope`),
        ErrorCodes.CONFIG,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
