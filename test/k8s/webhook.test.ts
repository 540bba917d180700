/**
 * The sidecar injection webhook over HTTPS: real AdmissionReview JSON in,
 * the returned JSON patch applied to the Pod, and the result validated
 * against the Kubernetes v1 Pod schema (kubernetes-models' validator, plus a
 * round trip through client-node's generated models to catch field names
 * the schema does not know).
 */

import { readFileSync } from 'node:fs';
import https from 'node:https';

import { afterEach, describe, expect, it } from '@jest/globals';
import { dumpYaml, loadYaml } from '@kubernetes/client-node';
import { Pod } from 'kubernetes-models/v1/Pod';
import { parse as parseYaml } from 'yaml';

import { SIDECAR_ENV } from '../../core/sidecar-node-options.js';
import { startWebhookServer } from '../../zone-cp/webhook/webhook-server.js';
import type { WebhookServer } from '../../zone-cp/webhook/webhook-server.js';
import type { InjectionWebhookOptions } from '../../zone-cp/webhook/webhook-admission.js';
import { KubernetesSource } from '../../zone-cp/discovery/discovery-kubernetes.js';
import { applyJsonPatch } from '../common/fake-kube-apiserver.js';
import { waitFor } from '../common/wait.js';
import { ClusterWriter, localhostTls, startFake } from './kube-helpers.js';
import type { TlsMaterial } from './kube-helpers.js';

type Json = Record<string, unknown>;

const REVIEW = JSON.parse(
  readFileSync(new URL('./fixtures/admission-review-pod.json', import.meta.url), 'utf8'),
) as { request: { uid: string; object: Json; namespace: string } } & Json;

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const BASE: InjectionWebhookOptions = {
  proxyImage: 'ghcr.io/meshfed/meshfed:0.1.0',
  zoneCpAddress: 'meshfed-zone-cp.meshfed-system.svc:5678',
  zone: 'zone-a',
};

async function webhook(
  options: Partial<InjectionWebhookOptions> = {},
): Promise<{ server: WebhookServer; tls: TlsMaterial }> {
  const tls = localhostTls();
  const server = await startWebhookServer({
    certPem: tls.certPem,
    keyPem: tls.keyPem,
    host: '127.0.0.1',
    port: 0,
    webhook: { ...BASE, ...options },
  });
  closers.push(() => server.close());
  return { server, tls };
}

/** POSTs over HTTPS, verifying the server against the test CA as the API server would (caBundle). */
function post(
  server: WebhookServer,
  tls: TlsMaterial,
  body: string,
  method = 'POST',
): Promise<{ status: number; json: Json }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${server.url}/inject`,
      { method, ca: tls.caPem, servername: 'localhost', headers: { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as Json });
        });
      },
    );
    req.on('error', reject);
    if (method === 'GET') req.end();
    else req.end(body);
  });
}

function reviewOf(mutate: (review: typeof REVIEW) => void = () => undefined): string {
  const review = structuredClone(REVIEW);
  mutate(review);
  return JSON.stringify(review);
}

interface Response {
  uid: string;
  allowed: boolean;
  patchType?: string;
  patch?: string;
}

function responseOf(json: Json): Response {
  expect(json.apiVersion).toBe('admission.k8s.io/v1');
  expect(json.kind).toBe('AdmissionReview');
  return json.response as Response;
}

function patchedPod(pod: Json, response: Response): Json {
  expect(response.patchType).toBe('JSONPatch');
  const patch: unknown = JSON.parse(Buffer.from(response.patch ?? '', 'base64').toString('utf8'));
  return applyJsonPatch(pod, patch) as Json;
}

/** The Kubernetes v1 Pod schema, strictly: types and required fields, and no field the models do not know. */
function expectValidPod(pod: Json): void {
  new Pod(pod as ConstructorParameters<typeof Pod>[0]).validate();
  // client-node's models are generated from the same OpenAPI document and drop what they do not know.
  const roundTrip = parseYaml(dumpYaml(loadYaml(JSON.stringify(pod)))) as Json;
  expect(roundTrip).toEqual(pod);
}

type Container = {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: Array<{ containerPort: number; name?: string }>;
  readinessProbe?: { httpGet?: { path?: string; port?: number } };
  securityContext?: { runAsUser?: number; capabilities?: { add?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
  env?: Array<{ name: string; value?: string }>;
};

describe('sidecar injection webhook', () => {
  it('injects the proxy, the capture init container and the identity volume into a valid Pod', async () => {
    const { server, tls } = await webhook({ namespaceLabels: () => ({ 'meshfed-injection': 'enabled' }) });
    const answer = await post(server, tls, reviewOf());
    expect(answer.status).toBe(200);
    const response = responseOf(answer.json);
    expect(response.uid).toBe(REVIEW.request.uid);
    expect(response.allowed).toBe(true);
    const pod = patchedPod(REVIEW.request.object, response);
    expectValidPod(pod);

    const spec = pod.spec as { containers: Container[]; initContainers: Container[]; volumes: Json[] };
    expect(spec.containers.map((c) => c.name)).toEqual(['cart', 'meshfed-proxy']);
    const proxy = spec.containers[1] as Container;
    expect(proxy.image).toBe(BASE.proxyImage);
    expect(proxy.command).toEqual(['meshfed-proxy']);
    expect(proxy.args).toEqual(['--mds-address', BASE.zoneCpAddress]);
    expect(proxy.ports?.map((p) => p.containerPort)).toEqual([15001, 15006, 15000, 15090]);
    expect(proxy.readinessProbe?.httpGet).toEqual({ path: '/ready', port: 15000 });
    expect(proxy.securityContext?.runAsUser).toBe(1337);
    // The sidecar's environment (V8 flags, malloc arenas), as benchmarked.
    for (const [name, value] of Object.entries(SIDECAR_ENV))
      expect([name, proxy.env?.find((e) => e.name === name)?.value]).toEqual([name, value]);
    expect(proxy.volumeMounts).toEqual([
      { name: 'meshfed-identity', mountPath: '/var/run/secrets/meshfed', readOnly: true },
    ]);
    expect(spec.initContainers.map((c) => c.name)).toEqual(['meshfed-init']);
    const init = spec.initContainers[0] as Container;
    expect(init.securityContext?.capabilities?.add).toEqual(['NET_ADMIN', 'NET_RAW']);
    expect(init.env?.find((e) => e.name === 'MESHFED_EXCLUDE_INBOUND_PORTS')?.value).toBe('15000,15090');
    const identity = spec.volumes.find((v) => v.name === 'meshfed-identity') as {
      projected: { sources: Array<{ serviceAccountToken?: { audience: string } }> };
    };
    expect(identity.projected.sources[0]?.serviceAccountToken?.audience).toBe('meshfed');
    expect(spec.volumes).toHaveLength(2); // the pod's own volume is kept
    const annotations = (pod.metadata as { annotations: Record<string, string> }).annotations;
    expect(annotations).toEqual({
      'meshfed.io/status': 'injected',
      'kubectl.kubernetes.io/default-container': 'cart',
    });

    // The schema check itself is not a rubber stamp.
    const broken = structuredClone(pod) as {
      spec: { containers: Array<{ ports: Array<{ containerPort: unknown }> }> };
    };
    (broken.spec.containers[1]?.ports[0] as { containerPort: unknown }).containerPort = 'fifteen';
    expect(() => expectValidPod(broken as unknown as Json)).toThrow(/containerPort/);
    const typo = structuredClone(pod) as { spec: { containers: Json[] } };
    (typo.spec.containers[1] as Json).readinesProbe = {};
    expect(() => expectValidPod(typo as unknown as Json)).toThrow();
  });

  it('patches pods with existing init containers and annotations, honours per-pod capture overrides', async () => {
    const { server, tls } = await webhook();
    const body = reviewOf((review) => {
      const pod = review.request.object as {
        metadata: Json;
        spec: { initContainers?: Container[] };
      };
      pod.metadata.annotations = {
        'traffic.meshfed.io/excludeOutboundPorts': '5432, 6379',
        'traffic.meshfed.io/excludeOutboundIPRanges': '10.96.0.1/32',
      };
      pod.spec.initContainers = [{ name: 'migrate', image: 'registry.example.com/shop/migrate:1' }];
    });
    const response = responseOf((await post(server, tls, body)).json);
    const pod = patchedPod((JSON.parse(body) as typeof REVIEW).request.object, response);
    expectValidPod(pod);
    const spec = pod.spec as { initContainers: Container[] };
    // Traffic capture comes before every other init container.
    expect(spec.initContainers.map((c) => c.name)).toEqual(['meshfed-init', 'migrate']);
    const env = Object.fromEntries((spec.initContainers[0]?.env ?? []).map((e) => [e.name, e.value]));
    expect(env.MESHFED_EXCLUDE_OUTBOUND_PORTS).toBe('5432,6379');
    expect(env.MESHFED_EXCLUDE_OUTBOUND_CIDRS).toBe('10.96.0.1/32');
    expect((pod.metadata as { annotations: Json }).annotations['meshfed.io/status']).toBe('injected');
  });

  it('leaves alone opted-out pods, unlabelled namespaces, injected pods and everything but Pod CREATE', async () => {
    const labels: Record<string, Record<string, string> | undefined> = {
      shop: { 'meshfed-injection': 'enabled' },
      plain: { team: 'x' },
    };
    const { server, tls } = await webhook({ namespaceLabels: (ns) => labels[ns] });
    const noPatch = async (body: string): Promise<void> => {
      const answer = await post(server, tls, body);
      expect(answer.status).toBe(200);
      const response = responseOf(answer.json);
      expect(response).toEqual({ uid: REVIEW.request.uid, allowed: true });
    };
    await noPatch(
      reviewOf((r) => {
        (r.request.object.metadata as Json).annotations = { 'meshfed.io/inject': 'false' };
      }),
    );
    await noPatch(
      reviewOf((r) => {
        r.request.namespace = 'plain';
      }),
    );
    // Idempotent: a pod that already went through the webhook is not patched twice.
    const first = responseOf((await post(server, tls, reviewOf())).json);
    const injected = patchedPod(REVIEW.request.object, first);
    await noPatch(
      reviewOf((r) => {
        r.request.object = injected;
      }),
    );
    await noPatch(
      reviewOf((r) => {
        (r.request as Json).operation = 'UPDATE';
      }),
    );
    await noPatch(
      reviewOf((r) => {
        (r.request as Json).kind = { group: 'apps', version: 'v1', kind: 'Deployment' };
      }),
    );
    // A namespace the informer does not know yet: the webhook configuration's namespaceSelector chose it.
    const unknownNs = responseOf(
      (
        await post(
          server,
          tls,
          reviewOf((r) => {
            r.request.namespace = 'brand-new';
          }),
        )
      ).json,
    );
    expect(unknownNs.patchType).toBe('JSONPatch');
  });

  it('answers garbage with 4xx, and an internal failure with allowed and no patch', async () => {
    const { server, tls } = await webhook({
      namespaceLabels: () => {
        throw new Error('informer exploded');
      },
    });
    expect((await post(server, tls, '{not json')).status).toBe(400);
    const notReview = await post(server, tls, JSON.stringify({ kind: 'Pod' }));
    expect(notReview.status).toBe(400);
    expect(String(notReview.json.error)).toContain('request.uid');
    expect((await post(server, tls, reviewOf(), 'GET')).status).toBe(405);
    const survived = responseOf((await post(server, tls, reviewOf())).json);
    expect(survived).toEqual({ uid: REVIEW.request.uid, allowed: true });
  });

  it('follows namespace labels from the Kubernetes source informer', async () => {
    const { fake, kubeConfig } = await startFake();
    closers.push(() => fake.close());
    const kube = new ClusterWriter(kubeConfig);
    await kube.namespace('shop', { 'meshfed-injection': 'enabled' });
    const source = new KubernetesSource({ kubeConfig, debounceMs: 5 });
    closers.push(() => source.close());
    await source.start();
    const { server, tls } = await webhook({ namespaceLabels: (ns) => source.namespaceLabels(ns) });
    expect(responseOf((await post(server, tls, reviewOf())).json).patchType).toBe('JSONPatch');
    const ns = await kube.core.readNamespace({ name: 'shop' });
    await kube.core.replaceNamespace({
      name: 'shop',
      body: { ...ns, metadata: { ...ns.metadata, labels: { 'meshfed-injection': 'disabled' } } },
    });
    await waitFor(() => source.namespaceLabels('shop')?.['meshfed-injection'] === 'disabled', {
      what: 'the relabelled namespace',
    });
    expect(responseOf((await post(server, tls, reviewOf())).json).patch).toBeUndefined();
  });
});
