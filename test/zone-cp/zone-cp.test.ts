import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../core/free-port.js';
import { MdsClient, type ReceivedSnapshot } from '../../core/mds/mds-client.js';
import type { SidecarSnapshot } from '../../core/mesh/snapshot.js';
import { MemoryStore } from '../../core/store/store-memory.js';
import { OriginGuardStore } from '../../zone-cp/api/origin-guard-store.js';
import type { ProxyRecord } from '../../zone-cp/mds/proxy-record.js';
import { startZoneCp } from '../../zone-cp/zone-cp.js';
import { http } from '../common/http.js';
import { startRedisServer, type RedisServer } from '../common/redis-server.js';
import { waitFor } from '../common/wait.js';
import { service, startTestZoneCp, workload, type TestZoneCp } from '../common/zone-cp.js';

const world = () => [
  service('web', 'shop', [workload('web-1', 'shop', { annotations: { 'meshfed.io/dependencies': 'cart' } })]),
  service('cart', 'shop', [workload('cart-1', 'shop')]),
];

describe('zone control plane process', () => {
  let zone: TestZoneCp;

  beforeAll(async () => {
    zone = await startTestZoneCp({ zone: 'zone-rest' });
    zone.discovery?.set(world());
  });

  afterAll(async () => {
    await zone?.close();
  });

  it('answers health, readiness, metrics and the trust bundle', async () => {
    expect((await http(`${zone.cp.restUrl}/healthz`)).status).toBe(200);
    const ready = await http(`${zone.cp.restUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.json).toMatchObject({ status: 'ready', zone: 'zone-rest', mode: 'standalone' });
    const metrics = await http(`${zone.cp.restUrl}/metrics`);
    expect(metrics.text).toMatch(/meshfed_zone_ca_ready\{[^}]*\} 1/);
    expect((await http(`${zone.cp.restUrl}/api/v1/trust-bundle`)).status).toBe(401);
    const bundle = await http(`${zone.cp.restUrl}/api/v1/trust-bundle`, { token: zone.admin });
    expect((bundle.json as { roots: string[] }).roots.join('')).toBe(zone.cp.caPem);
  });

  it('takes policies directly in standalone mode and requires a token for inspect', async () => {
    await zone.apply(`
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec: {host: cart, trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}}
`);
    const listed = await http(
      `${zone.cp.restUrl}/apis/networking.istio.io/v1beta1/namespaces/shop/destinationrules`,
      { token: zone.admin },
    );
    expect((listed.json as { items: unknown[] }).items).toHaveLength(1);
    expect((await http(`${zone.cp.restUrl}/inspect/proxies`)).status).toBe(401);
    const unknown = await http(`${zone.cp.restUrl}/inspect/proxies/nope/config`, { token: zone.admin });
    expect(unknown.status).toBe(404);
    expect((unknown.json as { code: string }).code).toBe('MESHFED_ERR_NOT_FOUND');
  });

  it('issues proxy tokens bound to this zone and refuses bad requests, naming the field', async () => {
    const issue = (body: Record<string, unknown>) =>
      http(`${zone.cp.restUrl}/api/v1/tokens`, {
        method: 'POST',
        token: zone.admin,
        contentType: 'application/json',
        body: JSON.stringify(body),
      });
    const ok = await issue({
      kind: 'proxy',
      name: 'web-1',
      workload: 'web-1',
      namespace: 'shop',
      serviceAccount: 'web',
      ttl: '1h',
    });
    expect(ok.status).toBe(201);
    expect(ok.json).toMatchObject({ kind: 'proxy', zone: 'zone-rest', name: 'web-1' });
    const wrongZone = await issue({ kind: 'proxy', workload: 'web-1', zone: 'zone-x' });
    expect(wrongZone.status).toBe(400);
    expect(wrongZone.json).toMatchObject({ field: 'zone', message: expect.stringMatching(/zone-x/) });
    const noWorkload = await issue({ kind: 'proxy', namespace: 'shop' });
    expect(noWorkload.json).toMatchObject({ field: 'workload' });
    const admin = await issue({ kind: 'admin' });
    expect(admin.status).toBe(400);
    expect(admin.json).toMatchObject({ field: 'kind' });
  });

  it('refuses bad options with a configuration error', async () => {
    await expect(
      startZoneCp({ zone: 'Zone_A', dataDir: zone.dir, storeUrl: 'memory://' }),
    ).rejects.toMatchObject({
      code: 'MESHFED_ERR_CONFIG',
      message: expect.stringMatching(/DNS-1123/),
    });
    const busy = Number(new URL(zone.cp.restUrl).port);
    await expect(
      startZoneCp({
        zone: 'zone-busy',
        dataDir: join(zone.dir, 'busy'),
        storeUrl: 'memory://',
        port: busy,
        grpcPort: 0,
        discovery: [{ name: 'static' }],
      }),
    ).rejects.toMatchObject({ code: 'MESHFED_ERR_CONFIG', message: expect.stringMatching(/already in use/) });
    await expect(
      startZoneCp({
        zone: 'zone-x',
        dataDir: join(zone.dir, 'x'),
        storeUrl: 'memory://',
        port: 0,
        grpcPort: 0,
        discovery: [{ name: 'no-such-source' }],
      }),
    ).rejects.toMatchObject({
      code: 'MESHFED_ERR_CONFIG',
      message: expect.stringMatching(/unknown discovery source "no-such-source"/),
    });
  });
});

describe('zone CP restart', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshfed-zone-restart-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps its CA and tokens across a restart; a proxy reconnects and is not sent the config it runs', async () => {
    // The restarted zone CP binds the same gRPC port while the client retries: one outside the
    // ephemeral range, so no outgoing socket can take it in between.
    const first = await startTestZoneCp({
      zone: 'zone-restart',
      storeUrl: `file://${join(dir, 'store')}`,
      dataDir: dir,
      grpcPort: await freePort(),
    });
    first.discovery?.set(world());
    const token = await first.issueProxyToken({
      workload: 'web-1',
      namespace: 'shop',
      serviceAccount: 'web',
    });
    const caPem = first.cp.caPem;
    const [host, portText] = first.cp.grpcAddress.split(':');
    const received: ReceivedSnapshot[] = [];
    const client = new MdsClient({
      address: first.cp.grpcAddress,
      caPem,
      credential: () => ({ token }),
      hello: { proxyId: 'web-1-proxy', kind: 'sidecar', workload: 'web-1', namespace: 'shop' },
      onSnapshot: (s) => {
        received.push(s);
      },
      initialBackoffMs: 50,
      maxBackoffMs: 200,
    });
    client.start();
    let second: TestZoneCp | undefined;
    try {
      await waitFor(() => received.length === 1 && client.appliedVersion !== '', { what: 'first snapshot' });
      expect((received[0]?.json as SidecarSnapshot).outbound.services.map((s) => s.name)).toEqual(['cart']);
      await first.cp.close();
      await waitFor(() => !client.connected, { what: 'the client to notice' });

      second = await startTestZoneCp({
        zone: 'zone-restart',
        storeUrl: `file://${join(dir, 'store')}`,
        dataDir: dir,
        grpcHost: host,
        grpcPort: Number(portText),
      });
      second.discovery?.set(world());
      expect(second.cp.caPem).toBe(caPem);
      const zone2 = second;
      const record = await waitFor(
        async () => {
          const answer = await http(`${zone2.cp.restUrl}/inspect/proxies`, { token: zone2.admin });
          return (answer.json as { proxies: ProxyRecord[] }).proxies.find(
            (p) => p.id === 'web-1-proxy' && p.connected,
          );
        },
        { what: 'the reconnect', timeoutMs: 15_000 },
      );
      expect(record.configVersion).toBe(received[0]?.version);
      expect(record.pushes).toBe(0);
      expect(received).toHaveLength(1);
    } finally {
      client.close();
      await second?.close();
      await first.cp.close();
    }
  });
});

describe('zone CP on a Redis store', () => {
  let redis: RedisServer | undefined;
  beforeAll(async () => {
    try {
      redis = await startRedisServer();
    } catch (err) {
      process.stderr.write(`\n!!! SKIPPING the Redis zone CP test: ${(err as Error).message}\n\n`);
    }
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('compiles policies stored in Redis and pushes a change', async () => {
    if (redis === undefined) return;
    const zone = await startTestZoneCp({
      zone: 'zone-redis',
      storeUrl: `${redis.url}/0?prefix=zone-redis-${process.pid}-${Date.now()}`,
    });
    const received: ReceivedSnapshot[] = [];
    let client: MdsClient | undefined;
    try {
      zone.discovery?.set(world());
      const token = await zone.issueProxyToken({
        workload: 'web-1',
        namespace: 'shop',
        serviceAccount: 'web',
      });
      client = new MdsClient({
        address: zone.cp.grpcAddress,
        caPem: zone.cp.caPem,
        credential: () => ({ token }),
        hello: { proxyId: 'web-redis', kind: 'sidecar', workload: 'web-1', namespace: 'shop' },
        onSnapshot: (s) => {
          received.push(s);
        },
      });
      client.start();
      await waitFor(() => received.length === 1, { what: 'first snapshot' });
      await zone.apply(`
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec: {hosts: [cart], http: [{route: [{destination: {host: cart}}], timeout: 3s}]}
`);
      await waitFor(() => received.length === 2, { what: 'the pushed change' });
      const cart = (received[1]?.json as SidecarSnapshot).outbound.services[0];
      expect(cart?.http).toEqual([
        { route: [{ destination: { host: 'cart.shop.svc.cluster.local' } }], timeout: '3s' },
      ]);
    } finally {
      client?.close();
      await zone.close();
    }
  });
});

describe('OriginGuardStore', () => {
  it('refuses local writes to objects global owns and the reserved label, and passes the rest', async () => {
    const inner = new MemoryStore();
    const guard = new OriginGuardStore(inner, 'zone-a');
    const synced = await inner.create({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'from-global', namespace: 'shop', labels: { 'meshfed.io/origin': 'global' } },
      spec: { hosts: ['a'] },
    });
    await expect(guard.update({ ...synced, spec: { hosts: ['b'] } })).rejects.toMatchObject({
      code: 'MESHFED_ERR_FORBIDDEN',
      message: expect.stringMatching(/owned by the global control plane/),
    });
    await expect(
      guard.delete({ kind: 'VirtualService', namespace: 'shop', name: 'from-global' }),
    ).rejects.toMatchObject({
      code: 'MESHFED_ERR_FORBIDDEN',
    });
    await expect(
      guard.create({
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'sneaky', namespace: 'shop', labels: { 'meshfed.io/origin': 'global' } },
        spec: {},
      }),
    ).rejects.toMatchObject({ code: 'MESHFED_ERR_FORBIDDEN', field: 'metadata.labels.meshfed.io/origin' });
    const local = await guard.create({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'local', namespace: 'shop' },
      spec: {},
    });
    await guard.delete({ kind: 'VirtualService', namespace: 'shop', name: local.metadata.name });
    expect((await inner.list({ kind: 'VirtualService' })).items.map((o) => o.metadata.name)).toEqual([
      'from-global',
    ]);
    await inner.close();
  });
});
