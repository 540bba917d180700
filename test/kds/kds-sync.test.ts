import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { X509Certificate } from 'node:crypto';
import { ORIGIN_LABEL, SECRET_KIND, SERVICE_CATALOG_KIND } from '../../core/auth/internal-kinds.js';
import { TokenVerifier } from '../../core/token/token.js';
import { ExtensionOids, readCertificate } from '../../core/pki/x509-read.js';
import { createPublicKey } from 'node:crypto';
import { waitFor } from '../common/wait.js';
import { http } from '../common/http.js';
import {
  inventoryWith,
  peerAuthentication,
  startTestGlobal,
  startTestZone,
  type TestGlobal,
  type TestZone,
} from './kds-harness.js';

describe('KDS: global ↔ two zones', () => {
  let global: TestGlobal;
  let zoneA: TestZone;
  let zoneB: TestZone;

  beforeAll(async () => {
    global = await startTestGlobal();
    zoneA = await startTestZone('zone-a', global);
    zoneB = await startTestZone('zone-b', global);
    await Promise.all([zoneA.client.ready(), zoneB.client.ready()]);
  });

  afterAll(async () => {
    await zoneA?.close();
    await zoneB?.close();
    await global?.close();
  });

  it('applies a policy at global into both zone stores, and deletes it from both', async () => {
    await global.apply(peerAuthentication('strict'));
    for (const zone of [zoneA, zoneB]) {
      await waitFor(async () => (await zone.synced('PeerAuthentication')).includes('demo/strict'), {
        what: `PeerAuthentication in ${zone.name}`,
      });
      const stored = await zone.store.get({ kind: 'PeerAuthentication', namespace: 'demo', name: 'strict' });
      expect(stored?.metadata.labels?.[ORIGIN_LABEL]).toBe('global');
      expect(stored?.spec).toEqual({ mtls: { mode: 'STRICT' } });
    }
    await global.remove('/apis/security.istio.io/v1/namespaces/demo/peerauthentications/strict');
    for (const zone of [zoneA, zoneB]) {
      await waitFor(async () => !(await zone.synced('PeerAuthentication')).includes('demo/strict'), {
        what: `PeerAuthentication gone from ${zone.name}`,
      });
    }
  });

  it('sends a policy labelled for one zone only there, and moves it when relabelled', async () => {
    await global.apply(peerAuthentication('scoped', 'demo', 'meshfed.io/zone: zone-a'));
    await waitFor(async () => (await zoneA.synced('PeerAuthentication')).includes('demo/scoped'), {
      what: 'scoped policy in zone-a',
    });
    // A later change reaching zone-b proves zone-b has seen past the scoped write.
    await global.apply(peerAuthentication('marker-1'));
    await waitFor(async () => (await zoneB.synced('PeerAuthentication')).includes('demo/marker-1'));
    expect(await zoneB.synced('PeerAuthentication')).not.toContain('demo/scoped');

    await global.apply(peerAuthentication('scoped', 'demo', 'meshfed.io/zone: zone-b'));
    await waitFor(async () => (await zoneB.synced('PeerAuthentication')).includes('demo/scoped'), {
      what: 'relabelled policy in zone-b',
    });
    await waitFor(async () => !(await zoneA.synced('PeerAuthentication')).includes('demo/scoped'), {
      what: 'relabelled policy gone from zone-a',
    });
  });

  it("puts zone-b's services into zone-a's catalog, never a zone's own", async () => {
    zoneB.setInventory(inventoryWith('reviews', 3, 16443));
    zoneA.setInventory(inventoryWith('ratings', 2, 15443));
    const catalogOf = async (zone: TestZone) =>
      (await zone.store.get({ kind: SERVICE_CATALOG_KIND, namespace: '', name: 'catalog' }))?.spec as
        | {
            zones: Array<{
              zone: string;
              connected: boolean;
              gateway?: { port: number };
              services: Array<{ name: string; endpointGroups: Array<{ healthy: number }> }>;
            }>;
          }
        | undefined;
    const inA = await waitFor(
      async () => {
        const catalog = await catalogOf(zoneA);
        return catalog?.zones.find((z) => z.zone === 'zone-b' && z.services.length > 0);
      },
      { what: "zone-b's reviews in zone-a's catalog" },
    );
    expect(inA.connected).toBe(true);
    expect(inA.gateway?.port).toBe(16443);
    expect(inA.services[0]?.name).toBe('reviews');
    expect(inA.services[0]?.endpointGroups[0]?.healthy).toBe(3);
    const catalogA = await catalogOf(zoneA);
    expect(catalogA?.zones.map((z) => z.zone)).toEqual(['zone-b']);
    await waitFor(
      async () => (await catalogOf(zoneB))?.zones.some((z) => z.zone === 'zone-a' && z.services.length > 0),
      {
        what: "zone-a's ratings in zone-b's catalog",
      },
    );

    // An endpoint-count change propagates.
    zoneB.setInventory(inventoryWith('reviews', 5, 16443));
    await waitFor(
      async () => {
        const catalog = await catalogOf(zoneA);
        return catalog?.zones.find((z) => z.zone === 'zone-b')?.services[0]?.endpointGroups[0]?.healthy === 5;
      },
      { what: 'healthy count 5 in zone-a catalog' },
    );
  });

  it("writes the zone's intermediate CA (path length 0, signed by global's root), trust bundle and token keys", async () => {
    const ca = await zoneA.store.get({ kind: SECRET_KIND, namespace: '', name: 'zone-ca' });
    const bundle = await zoneA.store.get({ kind: SECRET_KIND, namespace: '', name: 'trust-bundle' });
    const keys = await zoneA.store.get({ kind: SECRET_KIND, namespace: '', name: 'global-token-keys' });
    expect(ca?.spec.source).toBe('global');
    const chain = String(ca?.spec.certPem).split(/(?=-----BEGIN CERTIFICATE-----)/);
    expect(chain).toHaveLength(2);
    const intermediate = new X509Certificate(chain[0] ?? '');
    const root = new X509Certificate(global.cp.caCertPem);
    expect(intermediate.ca).toBe(true);
    expect(intermediate.verify(root.publicKey)).toBe(true);
    expect(intermediate.subject).toContain('zone-a');
    // Path length 0: the intermediate can sign workloads, not further CAs.
    const basic = readCertificate(Buffer.from(intermediate.raw)).extensions.get(
      ExtensionOids.BASIC_CONSTRAINTS,
    );
    // SEQUENCE { cA TRUE, pathLenConstraint 0 }
    expect(basic?.value.toString('hex')).toBe('30060101ff020100');
    expect(new X509Certificate(chain[1] ?? '').fingerprint256).toBe(root.fingerprint256);
    expect(bundle?.spec.roots).toEqual([global.cp.caCertPem]);
    expect(bundle?.spec.trustDomain).toBe('cluster.local');
    // The zone can verify global's admin token with the keys it received.
    const verifier = new TokenVerifier(
      (keys?.spec.publicKeysPem as string[]).map((pem) => createPublicKey(pem)),
    );
    expect(verifier.verify(global.admin, { kinds: ['admin'] }).kind).toBe('admin');
    // Each zone has its own key.
    const caB = await zoneB.store.get({ kind: SECRET_KIND, namespace: '', name: 'zone-ca' });
    expect(caB?.spec.keyPem).not.toBe(ca?.spec.keyPem);
  });

  it('shows each zone in GET /apis/meshfed.io/v1alpha1/zones with connection, revision, proxies and version', async () => {
    await global.apply(peerAuthentication('status-probe'));
    const status = await waitFor(
      async () => {
        const answer = await global.get('/apis/meshfed.io/v1alpha1/zones/zone-a');
        const s = (answer.json as { status?: Record<string, unknown> }).status;
        return s?.connected === true && s.proxies === 3 && typeof s.lastSync === 'string' && s.lag === 0
          ? s
          : undefined;
      },
      { what: 'zone-a status' },
    );
    expect(status.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(status.appliedRevision).toEqual(expect.any(Number));
    expect(status.replica).toEqual(expect.any(String));
    expect(status.protocolVersion).toBe(2);
    const list = await global.get('/apis/meshfed.io/v1alpha1/zones');
    const names = (list.json as { items: Array<{ metadata: { name: string } }> }).items.map(
      (z) => z.metadata.name,
    );
    expect(names).toEqual(['zone-a', 'zone-b']);
    const info = await global.get('/api/v1/kds');
    expect(info.json).toMatchObject({ address: global.cp.kdsAddress, connectedZones: ['zone-a', 'zone-b'] });
  });

  it('keeps a local object that clashes with a global one and reports the clash in the zone status', async () => {
    await zoneA.store.create({
      apiVersion: 'security.istio.io/v1',
      kind: 'PeerAuthentication',
      metadata: { name: 'local-one', namespace: 'demo' },
      spec: { mtls: { mode: 'PERMISSIVE' } },
    });
    await global.apply(peerAuthentication('local-one'));
    await waitFor(async () => (await zoneB.synced('PeerAuthentication')).includes('demo/local-one'));
    const errors = await waitFor(
      async () => {
        const answer = await global.get('/apis/meshfed.io/v1alpha1/zones/zone-a');
        const e = (answer.json as { status?: { errors?: string[] } }).status?.errors ?? [];
        return e.length > 0 ? e : undefined;
      },
      { what: 'NACK in zone-a status' },
    );
    expect(errors.join('\n')).toMatch(
      /PeerAuthentication demo\/local-one: MESHFED_ERR_CONFLICT: the zone has a local/,
    );
    const local = await zoneA.store.get({ kind: 'PeerAuthentication', namespace: 'demo', name: 'local-one' });
    expect(local?.spec).toEqual({ mtls: { mode: 'PERMISSIVE' } });
    expect(local?.metadata.labels?.[ORIGIN_LABEL]).toBeUndefined();
    // Deleting it at global never touches the local object.
    await global.remove('/apis/security.istio.io/v1/namespaces/demo/peerauthentications/local-one');
    await waitFor(async () => !(await zoneB.synced('PeerAuthentication')).includes('demo/local-one'));
    await global.apply(peerAuthentication('marker-2'));
    await waitFor(async () => (await zoneA.synced('PeerAuthentication')).includes('demo/marker-2'));
    expect(
      await zoneA.store.get({ kind: 'PeerAuthentication', namespace: 'demo', name: 'local-one' }),
    ).toBeDefined();
  });

  it('exposes KDS metrics', async () => {
    const metrics = await http(`${global.cp.url}/metrics`);
    expect(metrics.text).toMatch(/meshfed_kds_zones_connected\{component="global-cp"\} 2/);
    expect(metrics.text).toMatch(/meshfed_kds_syncs_total\{mode="full",component="global-cp"\} 2/);
    expect(metrics.text).toMatch(/meshfed_kds_nacked_resources_total\{component="global-cp"\} [1-9]/);
  });
});
