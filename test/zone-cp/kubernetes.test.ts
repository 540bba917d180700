import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { X509Certificate } from 'node:crypto';
import { requestCertificate } from '../../core/ca/ca-client.js';
import { MdsClient, type ReceivedSnapshot } from '../../core/mds/mds-client.js';
import type { SidecarSnapshot } from '../../core/mesh/snapshot.js';
import { generateKeyPair } from '../../core/pki/ca.js';
import type { FakeKubeApiServer } from '../common/fake-kube-apiserver.js';
import { waitFor } from '../common/wait.js';
import { startTestZoneCp, type TestZoneCp } from '../common/zone-cp.js';
import { ClusterWriter, startFake } from '../k8s/kube-helpers.js';

const CART_PORTS = [{ name: 'http', port: 8080 }];

describe('zone CP in Kubernetes mode (fake API server, real client-node)', () => {
  let fake: FakeKubeApiServer;
  let writer: ClusterWriter;
  let zone: TestZoneCp;
  let client: MdsClient;
  const received: ReceivedSnapshot[] = [];

  const cartEndpoints = (): string[] => {
    const last = received[received.length - 1]?.json as SidecarSnapshot | undefined;
    const cart = last?.outbound.services.find((s) => s.name === 'cart');
    return (cart?.clusters.find((c) => c.subset === '_')?.endpoints ?? [])
      .map((e) => `${e.workload}@${e.address}:${e.port}`)
      .sort();
  };

  beforeAll(async () => {
    const started = await startFake();
    fake = started.fake;
    writer = new ClusterWriter(started.kubeConfig);
    await writer.namespace('shop');
    await writer.service('shop', 'cart', [{ name: 'http', port: 80, targetPort: 'http' }]);
    await writer.service('shop', 'web', [{ name: 'http', port: 80, targetPort: 'http' }]);
    await writer.pod({
      name: 'cart-1',
      namespace: 'shop',
      ip: '10.0.0.11',
      labels: { app: 'cart' },
      sidecar: true,
      serviceAccount: 'cart',
      ports: { http: 8080 },
    });
    await writer.pod({
      name: 'web-1',
      namespace: 'shop',
      ip: '10.0.0.21',
      labels: { app: 'web' },
      sidecar: true,
      serviceAccount: 'web',
      ports: { http: 8080 },
    });
    await writer.slice('shop', 'cart-a', 'cart', [{ ip: '10.0.0.11', pod: 'cart-1' }], CART_PORTS);
    await writer.slice('shop', 'web-a', 'web', [{ ip: '10.0.0.21', pod: 'web-1' }], CART_PORTS);
    fake.addServiceAccountToken('sa-token-web', { namespace: 'shop', serviceAccount: 'web' });
    fake.addServiceAccountToken('sa-token-cart', { namespace: 'shop', serviceAccount: 'cart' });

    zone = await startTestZoneCp({
      zone: 'zone-k8s',
      discovery: [{ name: 'kubernetes', options: { retryInitialMs: 50, retryMaxMs: 200 } }],
      kubernetes: { kubeConfig: started.kubeConfig },
      pushDebounceMs: 50,
    });
    client = new MdsClient({
      address: zone.cp.grpcAddress,
      caPem: zone.cp.caPem,
      credential: () => ({ token: 'sa-token-web' }),
      hello: { proxyId: 'web-1.shop', kind: 'sidecar', workload: 'web-1', namespace: 'shop' },
      onSnapshot: (s) => {
        received.push(s);
      },
    });
    client.start();
  });

  afterAll(async () => {
    client?.close();
    await zone?.close();
    await fake?.close();
  });

  it('issues certificates to ServiceAccount tokens via TokenReview and serves pods their config', async () => {
    const { privateKey, publicKey } = generateKeyPair();
    const cert = await requestCertificate({
      address: zone.cp.grpcAddress,
      caPem: zone.cp.caPem,
      credential: { token: 'sa-token-web' },
      privateKey,
      publicKey,
    });
    expect(new X509Certificate(cert.certChainPem).subjectAltName).toBe(
      'URI:spiffe://cluster.local/ns/shop/sa/web',
    );
    await waitFor(() => received.length >= 1, { what: "the pod's first snapshot" });
    const snapshot = received[0]?.json as SidecarSnapshot;
    expect(snapshot.proxy).toMatchObject({
      workload: 'web-1',
      namespace: 'shop',
      serviceAccount: 'web',
      spiffeId: 'spiffe://cluster.local/ns/shop/sa/web',
    });
    expect(snapshot.inbound.ports).toEqual([expect.objectContaining({ port: 80, targetPort: 8080 })]);
    expect(cartEndpoints()).toEqual(['cart-1@10.0.0.11:15006']);
  });

  it("refuses a pod token for another pod's config", async () => {
    const { openRawStream, hello } = await import('./raw-mds.js');
    const raw = openRawStream(zone.cp.grpcAddress, zone.cp.caPem, { token: 'sa-token-cart' });
    raw.send(hello({ proxy_id: 'spy', workload: 'web-1', namespace: 'shop' }));
    const ended = await raw.ended;
    expect(ended.code).toBe(7);
    expect(ended.details).toMatch(/runs as service account web/);
    raw.close();
  });

  it('adds an endpoint when a pod appears and removes it when the pod goes', async () => {
    await writer.pod({
      name: 'cart-2',
      namespace: 'shop',
      ip: '10.0.0.12',
      labels: { app: 'cart' },
      sidecar: true,
      serviceAccount: 'cart',
      ports: { http: 8080 },
    });
    await writer.replaceSlice(
      'shop',
      'cart-a',
      'cart',
      [
        { ip: '10.0.0.11', pod: 'cart-1' },
        { ip: '10.0.0.12', pod: 'cart-2' },
      ],
      CART_PORTS,
    );
    await waitFor(() => cartEndpoints().length === 2, { what: 'cart-2 in the snapshot' });
    expect(cartEndpoints()).toEqual(['cart-1@10.0.0.11:15006', 'cart-2@10.0.0.12:15006']);

    await writer.core.deleteNamespacedPod({ namespace: 'shop', name: 'cart-1' });
    await writer.replaceSlice('shop', 'cart-a', 'cart', [{ ip: '10.0.0.12', pod: 'cart-2' }], CART_PORTS);
    await waitFor(() => cartEndpoints().length === 1, { what: 'cart-1 gone from the snapshot' });
    expect(cartEndpoints()).toEqual(['cart-2@10.0.0.12:15006']);
  });

  it('recovers when the API server drops its watches', async () => {
    expect(fake.dropWatches()).toBeGreaterThan(0);
    await writer.pod({
      name: 'cart-3',
      namespace: 'shop',
      ip: '10.0.0.13',
      labels: { app: 'cart' },
      sidecar: true,
      serviceAccount: 'cart',
      ports: { http: 8080 },
    });
    await writer.replaceSlice(
      'shop',
      'cart-a',
      'cart',
      [
        { ip: '10.0.0.12', pod: 'cart-2' },
        { ip: '10.0.0.13', pod: 'cart-3' },
      ],
      CART_PORTS,
    );
    await waitFor(() => cartEndpoints().includes('cart-3@10.0.0.13:15006'), {
      what: 'cart-3 after the watch drop',
      timeoutMs: 15_000,
    });
  });
});
