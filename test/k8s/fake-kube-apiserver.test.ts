/**
 * The fake API server against the real @kubernetes/client-node: if these
 * hold, the discovery source and the Kubernetes store are tested against
 * the wire format they will meet in a cluster.
 */

import { afterEach, describe, expect, it } from '@jest/globals';
import {
  ApiException,
  ApiextensionsV1Api,
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  makeInformer,
  setHeaderOptions,
} from '@kubernetes/client-node';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';

import { FakeKubeApiServer } from '../common/fake-kube-apiserver.js';
import { applyJsonPatch, applyMergePatch } from '../common/fake-kube-apiserver.js';
import { waitFor } from '../common/wait.js';
import { ADMIN_TOKEN, kubeConfigFor, startFake } from './kube-helpers.js';

const running: Array<{ close(): Promise<void> | void }> = [];
afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close();
});

async function fakeWithClient(
  options: Parameters<typeof startFake>[0] = {},
): Promise<{ fake: FakeKubeApiServer; kc: KubeConfig; core: CoreV1Api }> {
  const { fake, kubeConfig } = await startFake(options);
  running.push(fake);
  return { fake, kc: kubeConfig, core: kubeConfig.makeApiClient(CoreV1Api) };
}

function pod(name: string, labels: Record<string, string> = {}): V1Pod {
  return { metadata: { name, labels }, spec: { containers: [{ name: 'app', image: 'app:1' }] } };
}

/** The Status object of a failed call, parsed from the client's ApiException. */
async function statusOf(
  promise: Promise<unknown>,
): Promise<{ code: number; reason: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    if (!(err instanceof ApiException)) throw err;
    const body = JSON.parse(String(err.body)) as {
      kind: string;
      code: number;
      reason: string;
      message: string;
    };
    expect(body.kind).toBe('Status');
    expect(body.code).toBe(err.code);
    return body;
  }
  throw new Error('expected the call to fail');
}

describe('fake kube-apiserver with the real client', () => {
  it('creates, gets, lists with a global resourceVersion and label selectors', async () => {
    const { core } = await fakeWithClient();
    await core.createNamespace({ body: { metadata: { name: 'shop' } } });
    const a = await core.createNamespacedPod({ namespace: 'shop', body: pod('a', { app: 'web' }) });
    const b = await core.createNamespacedPod({ namespace: 'shop', body: pod('b', { app: 'db' }) });
    expect(Number(b.metadata?.resourceVersion)).toBe(Number(a.metadata?.resourceVersion) + 1);
    expect(a.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    const list = await core.listPodForAllNamespaces({ labelSelector: 'app=web' });
    expect(list.items.map((p) => p.metadata?.name)).toEqual(['a']);
    expect(list.metadata?.resourceVersion).toBe(b.metadata?.resourceVersion);
    const got = await core.readNamespacedPod({ namespace: 'shop', name: 'b' });
    expect(got.spec?.containers[0]?.image).toBe('app:1');
    const ns = await core.readNamespace({ name: 'shop' });
    expect(ns.metadata?.labels?.['kubernetes.io/metadata.name']).toBe('shop');
  });

  it('answers errors as Status objects: NotFound, AlreadyExists, Conflict, missing namespace', async () => {
    const { core } = await fakeWithClient();
    const missing = await statusOf(core.readNamespacedPod({ namespace: 'default', name: 'nope' }));
    expect(missing).toMatchObject({ code: 404, reason: 'NotFound', message: 'pods "nope" not found' });
    const created = await core.createNamespacedPod({ namespace: 'default', body: pod('a') });
    const dup = await statusOf(core.createNamespacedPod({ namespace: 'default', body: pod('a') }));
    expect(dup).toMatchObject({ code: 409, reason: 'AlreadyExists' });
    await core.replaceNamespacedPod({
      namespace: 'default',
      name: 'a',
      body: { ...created, metadata: { ...created.metadata, labels: { v: '2' } } },
    });
    const stale = await statusOf(
      core.replaceNamespacedPod({ namespace: 'default', name: 'a', body: created }),
    );
    expect(stale.code).toBe(409);
    expect(stale.reason).toBe('Conflict');
    expect(stale.message).toContain('the object has been modified');
    const noNs = await statusOf(core.createNamespacedPod({ namespace: 'ghost', body: pod('a') }));
    expect(noNs).toMatchObject({ code: 404, message: 'namespaces "ghost" not found' });
    const precondition = await statusOf(
      core.deleteNamespacedPod({
        namespace: 'default',
        name: 'a',
        body: { preconditions: { resourceVersion: '1' } },
      }),
    );
    expect(precondition.code).toBe(409);
    expect(precondition.message).toContain('Precondition failed');
  });

  it('requires a bearer token when admin tokens are configured', async () => {
    const { fake, tls } = await startFake();
    running.push(fake);
    const anonymous = kubeConfigFor(fake.url, 'wrong', tls.caPem).makeApiClient(CoreV1Api);
    // The generated client drops the body of a 401; the status code is what it exposes.
    const err = await anonymous.listNamespace().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiException);
    expect((err as ApiException<unknown>).code).toBe(401);
    const admin = kubeConfigFor(fake.url, ADMIN_TOKEN, tls.caPem).makeApiClient(CoreV1Api);
    expect((await admin.listNamespace()).items.map((n) => n.metadata?.name)).toContain('default');
  });

  it('patches with JSON patch, merge patch and strategic merge patch', async () => {
    const { core } = await fakeWithClient();
    await core.createNamespacedPod({ namespace: 'default', body: pod('p', { a: '1' }) });
    await core.patchNamespacedPod(
      { namespace: 'default', name: 'p', body: [{ op: 'add', path: '/metadata/labels/b', value: '2' }] },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    await core.patchNamespacedPod(
      { namespace: 'default', name: 'p', body: { metadata: { labels: { a: null, c: '3' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const merged = await core.patchNamespacedPod(
      {
        namespace: 'default',
        name: 'p',
        body: { spec: { containers: [{ name: 'side', image: 'side:1' }] } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    expect(merged.metadata?.labels).toEqual({ b: '2', c: '3' });
    // Strategic merge merges containers by name instead of replacing the list.
    expect(merged.spec?.containers.map((c) => c.name)).toEqual(['app', 'side']);
  });

  it('registers custom resources from a CRD and refuses unconditional replaces of them', async () => {
    const { kc } = await fakeWithClient();
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    await ext.createCustomResourceDefinition({
      body: {
        metadata: { name: 'widgets.example.com' },
        spec: {
          group: 'example.com',
          names: { kind: 'Widget', plural: 'widgets', singular: 'widget', listKind: 'WidgetList' },
          scope: 'Namespaced',
          versions: [
            {
              name: 'v1',
              served: true,
              storage: true,
              subresources: { status: {} },
              schema: { openAPIV3Schema: { type: 'object' } },
            },
          ],
        },
      },
    });
    const custom = kc.makeApiClient(CustomObjectsApi);
    const base = { group: 'example.com', version: 'v1', namespace: 'default', plural: 'widgets' };
    const w = (await custom.createNamespacedCustomObject({
      ...base,
      body: {
        apiVersion: 'example.com/v1',
        kind: 'Widget',
        metadata: { name: 'w1' },
        spec: { size: 1 },
        status: { ok: true },
      },
    })) as { metadata: { resourceVersion: string; generation: number }; status?: unknown };
    expect(w.metadata.generation).toBe(1);
    expect(w.status).toBeUndefined(); // status goes through the subresource
    const list = (await custom.listNamespacedCustomObject(base)) as {
      kind: string;
      items: Array<{ kind: string }>;
    };
    expect(list.kind).toBe('WidgetList');
    expect(list.items[0]?.kind).toBe('Widget');
    const unconditional = await statusOf(
      custom.replaceNamespacedCustomObject({
        ...base,
        name: 'w1',
        body: { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w1' }, spec: { size: 2 } },
      }),
    );
    expect(unconditional.code).toBe(422);
    expect(unconditional.message).toContain('must be specified for an update');
    const replaced = (await custom.replaceNamespacedCustomObject({
      ...base,
      name: 'w1',
      body: {
        apiVersion: 'example.com/v1',
        kind: 'Widget',
        metadata: { name: 'w1', resourceVersion: w.metadata.resourceVersion },
        spec: { size: 2 },
      },
    })) as { metadata: { generation: number } };
    expect(replaced.metadata.generation).toBe(2);
    const smp = await statusOf(
      custom.patchNamespacedCustomObject(
        { ...base, name: 'w1', body: { spec: { size: 3 } } },
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      ),
    );
    expect(smp.code).toBe(415);
    const cluster = await statusOf(
      custom.listClusterCustomObject({ group: 'example.com', version: 'v2', plural: 'widgets' }),
    );
    expect(cluster.code).toBe(404);
  });

  it('feeds an informer: list, then watch events, then a relist after 410 Gone', async () => {
    const { fake, kc, core } = await fakeWithClient();
    await core.createNamespacedPod({ namespace: 'default', body: pod('before') });
    const informer = makeInformer(kc, '/api/v1/pods', () => core.listPodForAllNamespaces());
    const seen: string[] = [];
    informer.on('add', (p) => seen.push(`add ${p.metadata?.name ?? ''}`));
    informer.on('update', (p) => seen.push(`update ${p.metadata?.name ?? ''}`));
    informer.on('delete', (p) => seen.push(`delete ${p.metadata?.name ?? ''}`));
    const errors: unknown[] = [];
    informer.on('error', (e) => errors.push(e));
    await informer.start();
    running.push({ close: () => informer.stop() });
    await waitFor(() => fake.watchCount() === 1, { what: 'the informer watch' });
    await core.createNamespacedPod({ namespace: 'default', body: pod('live') });
    await core.deleteNamespacedPod({ namespace: 'default', name: 'before' });
    await waitFor(() => seen.length >= 3, { what: 'three informer events' });
    expect(seen).toEqual(['add before', 'add live', 'delete before']);

    // Other writes move the global revision on, then the history is compacted:
    // the informer's resume from its last pod revision answers 410 and it relists.
    const listsBefore = fake.requests({ method: 'GET', path: '/api/v1/pods', watch: false }).length;
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'moves-rv' } } });
    fake.compactHistory();
    fake.dropWatches({ graceful: true });
    await waitFor(
      () => fake.requests({ method: 'GET', path: '/api/v1/pods', watch: false }).length > listsBefore,
      { what: 'a relist' },
    );
    await waitFor(() => fake.watchCount() === 1, { what: 'the informer to watch again' });
    await core.createNamespacedPod({ namespace: 'default', body: pod('after-relist') });
    await waitFor(() => informer.list().some((p) => p.metadata?.name === 'after-relist'), {
      what: 'a pod created after the relist',
    });
    expect(errors).toEqual([]);
  });

  it('answers a watch from a compacted resourceVersion with an ERROR event carrying 410 Expired', async () => {
    // Plain HTTP without tokens: the raw wire format, read with fetch.
    const plain = await FakeKubeApiServer.start({ historySize: 2 });
    running.push(plain);
    for (const name of ['a', 'b', 'c', 'd']) {
      await fetch(`${plain.url}/api/v1/namespaces/default/configmaps`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ metadata: { name } }),
      });
    }
    const res = await fetch(`${plain.url}/api/v1/configmaps?watch=true&resourceVersion=1`);
    expect(res.status).toBe(200);
    const lines = (await res.text()).trim().split('\n');
    expect(lines).toHaveLength(1);
    const event = JSON.parse(lines[0] ?? '') as {
      type: string;
      object: { code: number; reason: string; message: string };
    };
    expect(event.type).toBe('ERROR');
    expect(event.object).toMatchObject({ code: 410, reason: 'Expired' });
    expect(event.object.message).toMatch(/^too old resource version: 1 \(\d+\)$/);

    // A recent resourceVersion replays what followed it, then streams; a label change out of the selector is a DELETED.
    const list = (await (await fetch(`${plain.url}/api/v1/namespaces/default/configmaps`)).json()) as {
      metadata: { resourceVersion: string };
    };
    const controller = new AbortController();
    const stream = await fetch(
      `${plain.url}/api/v1/namespaces/default/configmaps?watch=true&labelSelector=keep%3Dyes&allowWatchBookmarks=true&resourceVersion=${list.metadata.resourceVersion}`,
      { signal: controller.signal },
    );
    const reader = stream.body?.getReader();
    const patch = (name: string, labels: Record<string, string | null>): Promise<Response> =>
      fetch(`${plain.url}/api/v1/namespaces/default/configmaps/${name}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/merge-patch+json' },
        body: JSON.stringify({ metadata: { labels } }),
      });
    await patch('a', { keep: 'yes' });
    await patch('a', { keep: null });
    plain.sendBookmarks();
    let text = '';
    const decoder = new TextDecoder();
    await waitFor(
      async () => {
        const chunk = await reader?.read();
        text += decoder.decode(chunk?.value ?? new Uint8Array());
        return text.trim().split('\n').length >= 3;
      },
      { what: 'three watch events' },
    );
    controller.abort();
    const types = text
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { type: string }).type);
    expect(types).toEqual(['ADDED', 'DELETED', 'BOOKMARK']);
    await waitFor(() => plain.watchCount() === 0, { what: 'the aborted watch to be gone' });
  });

  it('reviews ServiceAccount tokens with audiences', async () => {
    const { fake, kc } = await fakeWithClient();
    fake.addServiceAccountToken('sa-token', {
      namespace: 'shop',
      serviceAccount: 'cart',
      audiences: ['meshfed'],
    });
    const auth = kc.makeApiClient(AuthenticationV1Api);
    const ok = await auth.createTokenReview({
      body: { spec: { token: 'sa-token', audiences: ['meshfed'] } },
    });
    expect(ok.status?.authenticated).toBe(true);
    expect(ok.status?.user?.username).toBe('system:serviceaccount:shop:cart');
    expect(ok.status?.audiences).toEqual(['meshfed']);
    const wrongAudience = await auth.createTokenReview({
      body: { spec: { token: 'sa-token', audiences: ['other'] } },
    });
    expect(wrongAudience.status?.authenticated).not.toBe(true);
    expect(wrongAudience.status?.error).toContain('audiences');
    const unknown = await auth.createTokenReview({
      body: { spec: { token: 'forged', audiences: ['meshfed'] } },
    });
    expect(unknown.status?.authenticated).not.toBe(true);
  });
});

describe('RFC 6902 / 7386 appliers', () => {
  it('apply every operation and refuse bad paths without touching the input', () => {
    const doc = { a: { b: [1, 2] }, c: 'x' };
    const out = applyJsonPatch(doc, [
      { op: 'add', path: '/a/b/-', value: 3 },
      { op: 'add', path: '/a/b/0', value: 0 },
      { op: 'replace', path: '/c', value: 'y' },
      { op: 'copy', from: '/c', path: '/d' },
      { op: 'move', from: '/d', path: '/e~1f' },
      { op: 'remove', path: '/a/b/1' },
      { op: 'test', path: '/a/b', value: [0, 2, 3] },
    ]);
    expect(out).toEqual({ a: { b: [0, 2, 3] }, c: 'y', 'e/f': 'y' });
    expect(doc).toEqual({ a: { b: [1, 2] }, c: 'x' });
    expect(() => applyJsonPatch(doc, [{ op: 'add', path: '/x/y', value: 1 }])).toThrow(/does not exist/);
    expect(() => applyJsonPatch(doc, [{ op: 'add', path: '/a/b/5', value: 1 }])).toThrow(/out of bounds/);
    expect(() => applyJsonPatch(doc, [{ op: 'test', path: '/c', value: 'z' }])).toThrow(/test/);
    expect(applyMergePatch({ a: 1, b: { c: 2 } }, { a: null, b: { d: 3 } })).toEqual({ b: { c: 2, d: 3 } });
  });
});
