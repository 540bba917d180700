import { afterEach, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SECRET_KIND, SERVICE_CATALOG_KIND } from '../../core/auth/internal-kinds.js';
import type { Resource } from '../../core/resource/resource.js';
import { MemoryStore } from '../../core/store/store-memory.js';
import { startGlobalCp } from '../../global-cp/global-cp.js';
import { freePort } from '../../core/free-port.js';
import { waitFor } from '../common/wait.js';
import {
  globalHandle,
  hello,
  inventoryWith,
  metricValue,
  openRawStream,
  pa,
  peerAuthentication,
  startBareKds,
  startTestGlobal,
  startTestZone,
  type BareKds,
  type TestGlobal,
  type TestZone,
} from './kds-harness.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

type Catalog = { zones: Array<{ zone: string; connected: boolean; services: Array<{ name: string }> }> };

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

function later<T extends { close(): Promise<unknown> }>(thing: T): T {
  cleanups.push(() => thing.close());
  return thing;
}

describe('KDS grace period', () => {
  it("keeps a reconnecting zone's services in other catalogs, and withdraws them only after the grace period", async () => {
    // Long enough for zone-b's restart (TLS, hello, sync) on a loaded CI host.
    const grace = 6000;
    const global: TestGlobal = later(await startTestGlobal({}, { gracePeriodMs: grace }));
    const a = later(await startTestZone('zone-a', global));
    const bStore = new MemoryStore();
    let b: TestZone = await startTestZone('zone-b', global, { store: bStore, keepStore: true });
    b.setInventory(inventoryWith('reviews', 2));

    // Every catalog zone-a ever stores, from here on.
    const seen: Catalog[] = [];
    const watch = a.store.watch(
      { kind: SERVICE_CATALOG_KIND, fromRevision: await a.store.currentRevision() },
      { onEvent: (e) => seen.push(e.object.spec as unknown as Catalog), onError: () => undefined },
    );
    cleanups.push(async () => watch.close());
    await waitFor(() => seen.some((c) => c.zones.some((z) => z.zone === 'zone-b' && z.connected)), {
      what: 'zone-b connected in zone-a catalog',
    });

    // A reconnect (zone CP restart) inside the grace period.
    await b.close();
    await waitFor(() => seen.some((c) => c.zones.some((z) => z.zone === 'zone-b' && !z.connected)), {
      what: 'zone-b shown disconnected',
    });
    b = await startTestZone('zone-b', global, {
      store: bStore,
      keepStore: true,
      initialInventory: inventoryWith('reviews', 2),
    });
    await waitFor(() => seen.at(-1)?.zones.some((z) => z.zone === 'zone-b' && z.connected), {
      what: 'zone-b back',
    });
    // From its first appearance on, zone-b's service never left zone-a's catalog.
    const sinceFirst = seen.slice(seen.findIndex((c) => c.zones.some((z) => z.zone === 'zone-b')));
    expect(sinceFirst.length).toBeGreaterThan(2);
    for (const catalog of sinceFirst) {
      expect(catalog.zones.find((z) => z.zone === 'zone-b')?.services.map((svc) => svc.name)).toEqual([
        'reviews',
      ]);
    }

    // Gone for good: withdrawn once the grace period has passed, not before.
    await b.close();
    await bStore.close();
    const zoneStatus = await waitFor(async () => {
      const s = (await global.get('/apis/meshfed.io/v1alpha1/zones/zone-b')).json as {
        status?: { connected: boolean; disconnectedAt?: string };
      };
      return s.status?.connected === false ? s.status : undefined;
    });
    await waitFor(() => seen.at(-1)?.zones.every((z) => z.zone !== 'zone-b'), {
      what: 'zone-b withdrawn',
      timeoutMs: 25_000,
    });
    const withdrawnAt = Date.now();
    expect(withdrawnAt).toBeGreaterThanOrEqual(Date.parse(zoneStatus.disconnectedAt ?? '') + grace - 50);
  }, 60_000);
});

describe('KDS with a half-open connection', () => {
  it('notices a connection that went silent, on both ends, and recovers when the path is back', async () => {
    const kds: BareKds = later(
      await startBareKds({ settings: { keepalive: { timeMs: 300, timeoutMs: 300 } } }),
    );
    const proxy: TcpProxy = later(await startTcpProxy(kds.server.address));
    await kds.put(pa('before'));
    const zone = later(
      await startTestZone(
        'zone-h',
        {
          cp: { kdsAddress: proxy.address, caCertPem: kds.cp.caCertPem },
          zoneToken: (z) => kds.zoneToken(z),
        },
        {
          keepalive: { timeMs: 300, timeoutMs: 300 },
          welcomeTimeoutMs: 1000,
        },
      ),
    );
    await zone.client.ready();
    await waitFor(() => kds.server.connectedZones().includes('zone-h'));

    proxy.freeze();
    await waitFor(() => !kds.server.connectedZones().includes('zone-h'), {
      what: 'global drops the silent stream',
    });
    await waitFor(() => !zone.client.connected, { what: 'the zone notices too' });
    const status = await waitFor(
      async () => {
        const zoneObject = await kds.store.get({ kind: 'Zone', namespace: '', name: 'zone-h' });
        return zoneObject?.status?.connected === false ? zoneObject.status : undefined;
      },
      { what: 'Zone status disconnected' },
    );
    expect(status.disconnectReason).toEqual(expect.any(String));

    proxy.thaw();
    await kds.put(pa('after'));
    await waitFor(async () => (await zone.synced('PeerAuthentication')).includes('demo/after'), {
      what: 'resynced after the path came back',
      timeoutMs: 15_000,
    });
  });
});

describe('KDS with a zone that does not read', () => {
  function bigPolicy(i: number): Resource {
    return {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: `big-${i}`, namespace: 'demo' },
      spec: {
        action: 'ALLOW',
        // Random text: gzip cannot shrink it, so the bytes really queue up.
        rules: [{ from: [{ source: { principals: [randomBytes(12_000).toString('base64')] } }] }],
      },
    };
  }

  it('drops a zone that stops reading while another zone gets every change', async () => {
    const kds: BareKds = later(
      await startBareKds({
        settings: { sendQueueBytes: 2 * 1024 * 1024, stallTimeoutMs: 3000, chunkBytes: 64 * 1024 },
      }),
    );
    const healthy = later(await startTestZone('zone-ok', kds));
    await healthy.client.ready();
    const { token } = await kds.zoneToken('zone-stuck');
    const stuck = openRawStream(kds, token, { read: false });
    cleanups.push(async () => stuck.close());
    stuck.write(hello('zone-stuck'));
    await waitFor(() => kds.server.connectedZones().includes('zone-stuck'));

    const total = 1500;
    for (let i = 0; i < total; i++) await kds.put(bigPolicy(i));
    await waitFor(async () => (await healthy.synced('AuthorizationPolicy')).length === total, {
      what: 'the healthy zone has every policy',
      timeoutMs: 20_000,
    });
    await waitFor(() => !kds.server.connectedZones().includes('zone-stuck'), { what: 'stuck zone dropped' });
    expect(await metricValue(kds.metrics, 'meshfed_kds_streams_dropped_total', { reason: 'stalled' })).toBe(
      1,
    );
    // Its queue overflowed first (memory stays bounded) and was replaced by a pending full resync.
    expect(await metricValue(kds.metrics, 'meshfed_kds_queue_overflows_total')).toBeGreaterThanOrEqual(1);
    const zoneObject = await waitFor(async () => {
      const z = await kds.store.get({ kind: 'Zone', namespace: '', name: 'zone-stuck' });
      return z?.status?.connected === false ? z : undefined;
    });
    expect(String(zoneObject.status?.disconnectReason)).toMatch(
      /^MESHFED_ERR_RESOURCE_EXHAUSTED: zone zone-stuck read nothing for \d+ s while \d+ bytes waited for it/,
    );
    expect(healthy.client.connected).toBe(true);

    // When it finally reads, it learns why it was cut off.
    stuck.call.resume();
    const status = await stuck.status;
    expect(status.meshCode).toBe('MESHFED_ERR_RESOURCE_EXHAUSTED');
  });
});

describe('KDS when global goes away', () => {
  it('zones keep serving, a zone restarted meanwhile serves from its store, and a restarted global resyncs with nothing lost', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshfed-kds-restart-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const kdsPort = await freePort();
    const options = {
      port: 0,
      kdsPort,
      dataDir: join(dir, 'global'),
      storeUrl: `file://${join(dir, 'global', 'store')}`,
    };
    let cp = await startGlobalCp({ ...options, kds: { statusIntervalMs: 50, leaseMs: 1500 } });
    let global = globalHandle(cp, (await readFile(cp.adminTokenFile, 'utf8')).trim(), dir);
    const aStoreDir = join(dir, 'zone-a');
    let aStore = await MemoryStore.open({ dataDir: aStoreDir });
    const { token: tokenA } = await global.zoneToken('zone-a');
    let a = await startTestZone('zone-a', global, { store: aStore, keepStore: true, token: tokenA });
    const b = later(await startTestZone('zone-b', global));
    await global.apply(peerAuthentication('one'));
    await global.apply(peerAuthentication('two'));
    for (const zone of [a, b]) {
      await waitFor(async () => (await zone.synced('PeerAuthentication')).join() === 'demo/one,demo/two');
    }

    await cp.close();
    await waitFor(() => !a.client.connected && !b.client.connected, { what: 'zones see global gone' });
    // Still serving: the zone stores hold policy and trust.
    expect(await b.synced('PeerAuthentication')).toEqual(['demo/one', 'demo/two']);

    // A zone CP restarted while global is down is ready from its store at once.
    await a.close();
    await aStore.close();
    aStore = await MemoryStore.open({ dataDir: aStoreDir });
    a = await startTestZone('zone-a', global, { store: aStore, keepStore: true, token: tokenA });
    cleanups.push(async () => {
      await a.close();
      await aStore.close();
    });
    await a.client.ready();
    expect(a.client.connected).toBe(false);
    expect(await a.synced('PeerAuthentication')).toEqual(['demo/one', 'demo/two']);
    expect((await aStore.get({ kind: SECRET_KIND, namespace: '', name: 'zone-ca' }))?.spec.source).toBe(
      'global',
    );

    // Global back on the same store and port: zones resume (delta) and follow new changes.
    cp = await startGlobalCp({ ...options, kds: { statusIntervalMs: 50, leaseMs: 1500 } });
    global = globalHandle(cp, global.admin, dir);
    cleanups.push(() => cp.close());
    await waitFor(() => a.client.connected && b.client.connected, {
      what: 'zones reconnected',
      timeoutMs: 15_000,
    });
    await global.apply(peerAuthentication('three'));
    for (const zone of [a, b]) {
      await waitFor(
        async () => (await zone.synced('PeerAuthentication')).join() === 'demo/one,demo/three,demo/two',
        {
          what: `${zone.name} has all three`,
        },
      );
    }
    const metrics = await global.get('/metrics');
    expect(metrics.status).toBe(200);
  });
});

describe('KDS replica leases', () => {
  it("marks the zones of a replica whose lease expired disconnected, from the lease's expiry", async () => {
    const kds: BareKds = later(await startBareKds());
    const expiredAt = new Date(Date.now() - 5000).toISOString();
    await kds.put({
      apiVersion: 'internal.meshfed.io/v1',
      kind: 'MeshfedKdsReplica',
      metadata: { name: 'dead-replica' },
      spec: { address: '10.0.0.9:5685', renewedAt: expiredAt, expiresAt: expiredAt },
    });
    const zone = await kds.store.create({
      apiVersion: 'meshfed.io/v1alpha1',
      kind: 'Zone',
      metadata: { name: 'orphan' },
      spec: { enabled: true },
    });
    await kds.store.update({
      ...zone,
      status: { connected: true, replica: 'dead-replica', session: 's-1', appliedRevision: 7 },
    });
    const status = await waitFor(
      async () => {
        const z = await kds.store.get({ kind: 'Zone', namespace: '', name: 'orphan' });
        return z?.status?.connected === false ? z.status : undefined;
      },
      { what: 'orphan marked disconnected' },
    );
    expect(status).toMatchObject({
      connected: false,
      disconnectedAt: expiredAt,
      disconnectReason: 'global replica dead-replica stopped renewing its lease',
      appliedRevision: 7,
    });
    // Its own lease is alive and renewed.
    const own = await kds.store.get({ kind: 'MeshfedKdsReplica', namespace: '', name: kds.server.replicaId });
    expect(Date.parse(String(own?.spec.expiresAt))).toBeGreaterThan(Date.now());
  });
});
