import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { X509Certificate } from 'node:crypto';
import { requestCertificate } from '../../core/ca/ca-client.js';
import { MdsClient, type ReceivedSnapshot } from '../../core/mds/mds-client.js';
import type { SidecarSnapshot } from '../../core/mesh/snapshot.js';
import { generateKeyPair } from '../../core/pki/ca.js';
import { pemToDerList } from '../../core/pki/pem.js';
import { http } from '../common/http.js';
import { waitFor } from '../common/wait.js';
import { service, startTestZoneCp, workload, type TestZoneCp } from '../common/zone-cp.js';
import { startTestGlobal, type TestGlobal } from '../kds/kds-harness.js';

/** Two zone CPs managed by a real global CP over KDS. */
describe('zone CP connected to global (KDS)', () => {
  let global: TestGlobal;
  let zoneA: TestZoneCp;
  let zoneB: TestZoneCp;
  let client: MdsClient | undefined;
  const received: ReceivedSnapshot[] = [];

  beforeAll(async () => {
    global = await startTestGlobal();
    const connect = async (zone: string) => ({
      addresses: [global.cp.kdsAddress],
      caPem: global.cp.caCertPem,
      token: (await global.zoneToken(zone)).token,
    });
    [zoneA, zoneB] = await Promise.all([
      startTestZoneCp({
        zone: 'zone-a',
        global: await connect('zone-a'),
        gatewayAddress: '192.0.2.1:15443',
        pushDebounceMs: 50,
      }),
      startTestZoneCp({
        zone: 'zone-b',
        global: await connect('zone-b'),
        gatewayAddress: '192.0.2.2:15443',
        pushDebounceMs: 50,
      }),
    ]);
    zoneA.discovery?.set([
      service('web', 'shop', [
        workload('web-1', 'shop', { annotations: { 'meshfed.io/dependencies': 'cart' } }),
      ]),
    ]);
    zoneB.discovery?.set([
      service('cart', 'shop', [
        workload('cart-1', 'shop', { labels: { app: 'cart', version: 'v1' }, serviceAccount: 'cart' }),
        workload('cart-2', 'shop', {
          labels: { app: 'cart', version: 'v2' },
          serviceAccount: 'cart',
          healthy: false,
        }),
      ]),
    ]);
  });

  afterAll(async () => {
    client?.close();
    await zoneA?.close();
    await zoneB?.close();
    await global?.close();
  });

  it('trusts the mesh root: certificates chain through the zone intermediate global signed', async () => {
    expect(zoneA.cp.caPem.trim()).toBe(global.cp.caCertPem.trim());
    const token = await zoneA.issueProxyToken({
      workload: 'web-1',
      namespace: 'shop',
      serviceAccount: 'web',
    });
    const { privateKey, publicKey } = generateKeyPair();
    const issued = await requestCertificate({
      address: zoneA.cp.grpcAddress,
      caPem: zoneA.cp.caPem,
      credential: { token },
      privateKey,
      publicKey,
    });
    const [leaf, intermediate, ...more] = pemToDerList(issued.certChainPem).map(
      (der) => new X509Certificate(der),
    );
    expect(more).toHaveLength(0);
    const root = new X509Certificate(global.cp.caCertPem);
    expect(leaf?.verify(intermediate?.publicKey ?? root.publicKey)).toBe(true);
    expect(intermediate?.verify(root.publicKey)).toBe(true);
    expect(intermediate?.ca).toBe(true);
  });

  it('accepts global admin tokens on the zone API', async () => {
    await waitFor(
      async () => (await http(`${zoneA.cp.restUrl}/inspect/proxies`, { token: global.admin })).status === 200,
      {
        what: 'global token keys to reach the zone',
      },
    );
  });

  it('refuses on the zone API a global token that global revoked', async () => {
    const created = await http(`${global.cp.url}/api/v1/tokens`, {
      method: 'POST',
      token: global.admin,
      body: JSON.stringify({ kind: 'readonly', name: 'auditor' }),
    });
    expect(created.status).toBe(201);
    const { token, id } = created.json as { token: string; id: string };
    await waitFor(async () => (await http(`${zoneA.cp.restUrl}/inspect/proxies`, { token })).status === 200, {
      what: 'the readonly token to work on the zone',
    });
    const revoked = await http(`${global.cp.url}/api/v1/tokens/${id}`, {
      method: 'DELETE',
      token: global.admin,
    });
    expect(revoked.status).toBeLessThan(300);
    const refused = await waitFor(
      async () => {
        const answer = await http(`${zoneA.cp.restUrl}/inspect/proxies`, { token });
        return answer.status === 401 ? answer : undefined;
      },
      { what: 'zone-a to refuse the token global revoked' },
    );
    expect(refused.text).toMatch(/revoked/);
    // The other zone learns it too, and global's admin token still works everywhere.
    await waitFor(async () => (await http(`${zoneB.cp.restUrl}/inspect/proxies`, { token })).status === 401, {
      what: 'zone-b to refuse the token global revoked',
    });
    expect((await http(`${zoneB.cp.restUrl}/inspect/proxies`, { token: global.admin })).status).toBe(200);
  });

  it('compiles policies applied on global, with the other zone as a weighted gateway endpoint', async () => {
    await global.apply(`
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http: [{route: [{destination: {host: cart, subset: v1}}]}]
`);
    const token = await zoneA.issueProxyToken({
      workload: 'web-1',
      namespace: 'shop',
      serviceAccount: 'web',
    });
    client = new MdsClient({
      address: zoneA.cp.grpcAddress,
      caPem: zoneA.cp.caPem,
      credential: () => ({ token }),
      hello: { proxyId: 'web-1', kind: 'sidecar', workload: 'web-1', namespace: 'shop' },
      onSnapshot: (s) => {
        received.push(s);
      },
    });
    client.start();
    const cart = await waitFor(
      () => {
        const last = received[received.length - 1]?.json as SidecarSnapshot | undefined;
        const found = last?.outbound.services.find((s) => s.name === 'cart');
        return found !== undefined && found.http.length === 1 && found.clusters.length === 3
          ? found
          : undefined;
      },
      { what: 'cart from zone-b with the global policies', timeoutMs: 15_000 },
    );
    const gateways = cart.clusters.map(
      (c) =>
        `${c.subset}:${c.endpoints.map((e) => `${e.via}@${e.address}:${e.port}x${e.weight}/${e.healthy}`).join(',')}`,
    );
    expect(gateways).toEqual([
      '_:gateway@192.0.2.2:15443x1/true',
      'v1:gateway@192.0.2.2:15443x1/true',
      'v2:gateway@192.0.2.2:15443x0/false',
    ]);
    expect(cart.clusters[0]?.endpoints[0]?.identities).toEqual(['spiffe://cluster.local/ns/shop/sa/cart']);
  });

  it('refuses local changes to what global owns, naming global', async () => {
    const path = `${zoneA.cp.restUrl}/apis/networking.istio.io/v1beta1/namespaces/shop/virtualservices/cart`;
    const synced = await waitFor(
      async () => {
        const answer = await http(path, { token: zoneA.admin });
        return answer.status === 200
          ? (answer.json as { metadata: { labels?: Record<string, string> } })
          : undefined;
      },
      { what: 'the synced VirtualService' },
    );
    expect(synced.metadata.labels?.['meshfed.io/origin']).toBe('global');
    const removed = await http(path, { method: 'DELETE', token: zoneA.admin });
    expect(removed.status).toBe(403);
    expect(removed.json).toMatchObject({
      code: 'MESHFED_ERR_FORBIDDEN',
      message: expect.stringMatching(/owned by the global control plane/),
    });
    const applied = await http(`${zoneA.cp.restUrl}/api/v1/apply`, {
      method: 'POST',
      token: zoneA.admin,
      contentType: 'application/yaml',
      body: 'apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: cart, namespace: shop}\nspec: {hosts: [cart], http: [{route: [{destination: {host: cart}}]}]}\n',
    });
    expect(applied.status).toBe(403);
    // A zone-local policy of its own is still fine.
    await zoneA.apply(
      'apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: web, namespace: shop}\nspec: {host: web}\n',
    );
  });
});
