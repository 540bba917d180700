/**
 * Config and identity change under traffic: snapshots over MDS (from the
 * in-process MDS test server) are ACKed, bad ones NACKed with the reason
 * while the last good config keeps serving; swapping the config drops no
 * request in flight; rotating certificates under load fails no request.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { SidecarSnapshot } from '../../core/mesh/snapshot.js';
import { startMdsTestServer, type MdsTestServer } from '../common/mds-test-server.js';
import { zoneCpServerCredentials } from '../common/pki-fixtures.js';
import { waitFor } from '../common/wait.js';
import {
  createTestMesh,
  keepAlive,
  metricValue,
  request,
  scrape,
  sidecarEndpoint,
  sidecarSnapshot,
  startApp,
  startTestProxy,
  type TestApp,
  type TestProxy,
} from './proxy-harness.js';

const mesh = createTestMesh();
const NS = 'live';
const serverW = { workload: 'orders', namespace: NS };
const clientW = { workload: 'checkout', namespace: NS };

let app: TestApp;
let server: TestProxy;
let client: TestProxy;
let mds: MdsTestServer;

function clientSnapshot(http: unknown[] = []): SidecarSnapshot {
  return sidecarSnapshot({
    ...clientW,
    roots: [mesh.rootPem],
    services: [
      {
        name: 'orders',
        namespace: NS,
        http: http as SidecarSnapshot['outbound']['services'][number]['http'],
        clusters: [
          { subset: '_', endpoints: [sidecarEndpoint(server.handle.ports.inbound, serverW)] },
          { subset: 'v1', endpoints: [sidecarEndpoint(server.handle.ports.inbound, serverW)] },
        ],
      },
    ],
  });
}

function get(path: string): Promise<number> {
  return request(client.handle.ports.outbound, 'orders', path).then((a) => a.status);
}

beforeAll(async () => {
  app = await startApp('orders', (req, res) => {
    const delay = req.url?.startsWith('/slow') ? 400 : 0;
    setTimeout(() => res.end('orders\n'), delay);
  });
  server = await startTestProxy(
    mesh,
    serverW,
    sidecarSnapshot({
      ...serverW,
      roots: [mesh.rootPem],
      inboundPorts: [{ port: 80, targetPort: app.port, protocol: 'http', mtls: 'STRICT' }],
      defaultMtls: 'STRICT',
    }),
  );
  const zoneCp = zoneCpServerCredentials(mesh);
  mds = await startMdsTestServer({
    certChainPem: zoneCp.certChainPem,
    keyPem: zoneCp.keyPem,
    clientCaPem: mesh.rootPem,
  });
  client = await startTestProxy(mesh, clientW, undefined, {
    proxyId: 'checkout-1',
    zoneCp: { address: mds.address, caPem: mesh.rootPem, token: 'bootstrap-token' },
  });
});

afterAll(async () => {
  keepAlive.destroy();
  await client?.close();
  await server?.close();
  await mds?.close();
  await app?.close();
});

describe('MDS', () => {
  it('says Hello with its identity and bearer token, ACKs a good snapshot and serves it', async () => {
    const hello = await mds.waitForProxy('checkout-1');
    expect(hello).toMatchObject({ kind: 'sidecar', workload: 'checkout', namespace: NS });
    expect(mds.authorizationOf('checkout-1')).toBe('Bearer bootstrap-token');
    const [nonce] = mds.push({ json: clientSnapshot(), version: 'v-good-1' });
    expect(await mds.waitForResponse(nonce ?? '')).toMatchObject({ kind: 'ack', version: 'v-good-1' });
    expect(client.handle.version).toBe('v-good-1');
    expect(await get('/first')).toBe(200);
    expect((await fetch(`${client.admin}/ready`)).status).toBe(200);
  });

  it('NACKs a snapshot that fails validation, naming the field, and keeps the last good config', async () => {
    const bad = clientSnapshot([
      { match: [{ uri: { regex: '(?<=lookbehind)x' } }], route: [{ destination: { host: 'orders' } }] },
    ]);
    const [nonce] = mds.push({ json: bad, version: 'v-bad-regex' });
    const nack = await mds.waitForResponse(nonce ?? '');
    expect(nack.kind).toBe('nack');
    expect(nack.error).toContain('outbound.services[0].http[0].match[0].uri.regex');
    expect(nack.error).toContain('lookbehind');
    expect(client.handle.version).toBe('v-good-1');
    expect(await get('/after-nack')).toBe(200);

    const weights = clientSnapshot([
      {
        route: [
          { destination: { host: 'orders', subset: 'v1' }, weight: 60 },
          { destination: { host: 'orders' }, weight: 30 },
        ],
      },
    ]);
    const [n2] = mds.push({ json: weights, version: 'v-bad-weights' });
    expect((await mds.waitForResponse(n2 ?? '')).error).toContain('weights sum to 90');

    const [n3] = mds.push({
      json: { ...clientSnapshot(), type: 'gateway/v1' },
      type: 'gateway/v1',
      version: 'v-wrong-type',
    });
    expect(await mds.waitForResponse(n3 ?? '')).toMatchObject({
      kind: 'nack',
      error: expect.stringContaining('a sidecar takes sidecar/v1 snapshots, not gateway/v1'),
    });

    const [n4] = mds.push({ json: Buffer.from('{"type": "sidecar/v1", truncated'), version: 'v-garbage' });
    expect((await mds.waitForResponse(n4 ?? '')).kind).toBe('nack');

    expect(client.handle.version).toBe('v-good-1');
    expect(await get('/still-good')).toBe(200);
    const dump = (await (await fetch(`${client.admin}/config_dump`)).json()) as {
      version: string;
      lastRejected: { version: string };
    };
    expect(dump.version).toBe('v-good-1');
    const text = await scrape(client.metrics);
    expect(
      metricValue(text, 'meshfed_proxy_config_updates_total', { result: 'rejected' }),
    ).toBeGreaterThanOrEqual(3);
  });

  it('reconnects after the stream drops and keeps serving meanwhile', async () => {
    mds.disconnectAll();
    expect(await get('/during-disconnect')).toBe(200);
    await waitFor(() => mds.connectedProxies().includes('checkout-1') || undefined, {
      what: 'the proxy to reconnect',
      timeoutMs: 10_000,
    });
    const hellos = mds.hellos.filter((h) => h.proxy_id === 'checkout-1');
    expect(hellos.at(-1)?.current_version).toBe('v-good-1');
  });
});

describe('config swap under traffic', () => {
  it('drops no request in flight while snapshots change routes and clusters', async () => {
    const slow = Array.from({ length: 20 }, (_, i) => get(`/slow/${i}`));
    const fast: Array<Promise<number>> = [];
    for (let i = 0; i < 20; i++) {
      client.handle.applySnapshot(
        clientSnapshot(
          i % 2 === 0
            ? [{ route: [{ destination: { host: 'orders', subset: 'v1' } }] }]
            : [{ route: [{ destination: { host: 'orders' } }], timeout: '5s' }],
        ),
        `swap-${i}`,
      );
      fast.push(get(`/fast/${i}`));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const statuses = await Promise.all([...slow, ...fast]);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(statuses).toHaveLength(40);
    expect(client.handle.version).toBe('swap-19');
  });
});

describe('certificate rotation', () => {
  it('fails no request while both sides rotate their certificates under load', async () => {
    let failures = 0;
    let done = 0;
    let stop = false;
    const workers = Array.from({ length: 8 }, async () => {
      while (!stop) {
        try {
          const status = await get('/rotate');
          if (status !== 200) failures++;
        } catch {
          failures++;
        }
        done++;
      }
    });
    const serialsBefore = (
      (await (await fetch(`${server.admin}/certs`)).json()) as { chain: Array<{ serial: string }> }
    ).chain[0]?.serial;
    for (let i = 0; i < 10; i++) {
      await new Promise((resolve) => setTimeout(resolve, 60));
      client.handle.setCredentials(mesh.workload({ namespace: NS, serviceAccount: 'checkout' }));
      server.handle.setCredentials(mesh.workload({ namespace: NS, serviceAccount: 'orders' }));
    }
    // Enough requests across the rotations, however slow the host (a fixed window was not).
    await waitFor(() => done >= 150, { what: '150 requests across the rotations', timeoutMs: 20_000 });
    stop = true;
    await Promise.all(workers);
    expect(failures).toBe(0);
    const serialAfter = (
      (await (await fetch(`${server.admin}/certs`)).json()) as { chain: Array<{ serial: string }> }
    ).chain[0]?.serial;
    expect(serialAfter).not.toBe(serialsBefore);
  });

  it('refuses credentials it cannot use, naming why, and keeps the current ones', () => {
    const good = mesh.workload({ namespace: NS, serviceAccount: 'checkout' });
    const other = mesh.workload({ namespace: NS, serviceAccount: 'other' });
    expect(() => client.handle.setCredentials({ ...good, keyPem: other.keyPem })).toThrow(/does not match/);
    expect(() => client.handle.setCredentials({ ...good, certChainPem: 'garbage' })).toThrow(/certChainPem/);
  });
});
