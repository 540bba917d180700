/**
 * The gateway fed by a real zone control plane over MDS: its table follows
 * the zone's discovery (a workload appearing, turning unhealthy) and the
 * Mesh's residency pins, it ACKs
 * what it applies, and a connection through it reaches the zone's "proxy"
 * with the caller's identity intact.
 */

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startGateway, type GatewayHandle } from '../../eastwest-gateway/index.js';
import { http } from '../common/http.js';
import { waitFor } from '../common/wait.js';
import { service, startTestZoneCp, workload, type TestZoneCp } from '../common/zone-cp.js';
import {
  createMeshPki,
  meshCall,
  metricValue,
  startApp,
  startZoneProxy,
  tlsAttempt,
  type Leaf,
  type MeshPki,
  type ZoneProxyStandIn,
} from './gateway-fixtures.js';

let zone: TestZoneCp;
let gateway: GatewayHandle;
let pki: MeshPki;
let frontend: Leaf;
let orders: Leaf;
let app: Awaited<ReturnType<typeof startApp>>;
let zoneProxy: ZoneProxyStandIn;

const SNI = '_.80.orders.demo.svc.mesh';

function setOrders(healthy: boolean): void {
  const endpoint = workload('orders-1', 'demo', {
    inboundPort: zoneProxy.port,
    healthy,
    serviceAccount: 'orders',
  });
  zone.discovery?.set([service('orders', 'demo', [endpoint])]);
}

interface TableDump {
  version: string | null;
  routes: Array<{ sni: string; endpoints: unknown[] }>;
  notExported: string[];
}

async function dump(): Promise<TableDump> {
  const res = await fetch(`http://127.0.0.1:${gateway.adminPort}/config_dump`);
  return (await res.json()) as TableDump;
}

function meshWithPins(pinned: string[]): string {
  return `apiVersion: meshfed.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec: {routing: {pinnedServices: ${JSON.stringify(pinned)}}}
`;
}

beforeAll(async () => {
  pki = createMeshPki();
  frontend = pki.leaf(pki.zoneA, 'demo', 'frontend');
  orders = pki.leaf(pki.zoneB, 'demo', 'orders');
  app = await startApp();
  zoneProxy = await startZoneProxy(pki, orders, app.port);
  zone = await startTestZoneCp({ zone: 'zone-b', pushDebounceMs: 20 });
  const token = await zone.issueProxyToken({
    workload: 'eastwest-gateway',
    namespace: 'istio-system',
    serviceAccount: 'eastwest-gateway',
    role: 'gateway',
  });
  const tokenFile = path.join(zone.dir, 'gateway-token');
  writeFileSync(tokenFile, token, { mode: 0o600 });
  gateway = await startGateway({
    host: '127.0.0.1',
    port: 0,
    adminPort: 0,
    processMetrics: false,
    mds: { address: zone.cp.grpcAddress, caPem: zone.cp.caPem, tokenFile, proxyId: 'gateway-zone-b-test' },
  });
}, 30_000);

afterAll(async () => {
  await gateway?.close();
  await zone?.close();
  await zoneProxy?.close();
  await app?.close();
});

describe('the gateway on MDS', () => {
  test('ready once the zone pushed a table, and the zone records the ACK', async () => {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${gateway.adminPort}/ready`)).status === 200, {
      what: 'the first gateway snapshot',
    });
    const record = await waitFor(
      async () => {
        const answer = await http(`${zone.cp.restUrl}/inspect/proxies/gateway-zone-b-test`, {
          token: zone.admin,
        });
        const r = answer.json as
          { kind?: string; connected?: boolean; lastAck?: { version: string } } | undefined;
        return answer.status === 200 && r?.lastAck !== undefined ? r : undefined;
      },
      { what: 'the zone to record the gateway ACK' },
    );
    expect(record).toMatchObject({ kind: 'gateway', connected: true, credential: 'proxy-token' });
    // The version the zone saw ACKed is the one the gateway routes with.
    expect(record.lastAck?.version).toBe((await dump()).version);
  });

  test('a workload discovered in the zone becomes routable, and the caller identity crosses', async () => {
    setOrders(true);
    await waitFor(async () => (await dump()).routes.some((r) => r.sni === SNI && r.endpoints.length === 1), {
      what: 'orders in the gateway table',
    });
    const result = await meshCall(pki, frontend, gateway.port, SNI, orders.spiffeId, 'via mds');
    expect(result).toMatchObject({ status: 200, body: 'app-reply:via mds', seenPeer: frontend.spiffeId });
  });

  test('when the zone reports the endpoint unhealthy the gateway refuses (no-healthy-endpoint)', async () => {
    setOrders(false);
    await waitFor(async () => (await dump()).routes.some((r) => r.sni === SNI && r.endpoints.length === 0), {
      what: 'the unhealthy endpoint to leave the table',
    });
    const before = await metricValue(gateway.adminPort, 'meshfed_gateway_refused_connections_total', {
      reason: 'no-healthy-endpoint',
    });
    const attempt = await tlsAttempt(gateway.port, SNI);
    expect(attempt.secure).toBe(false);
    expect(
      await metricValue(gateway.adminPort, 'meshfed_gateway_refused_connections_total', {
        reason: 'no-healthy-endpoint',
      }),
    ).toBe(before + 1);
  });

  test('a service the Mesh pins to its zone leaves the table and is refused as not-exported; unpinned, it is back', async () => {
    setOrders(true);
    await zone.apply(meshWithPins(['orders.demo']));
    await waitFor(async () => (await dump()).notExported.includes('orders.demo'), {
      what: 'orders listed as not exported',
    });
    expect((await dump()).routes.some((r) => r.sni === SNI)).toBe(false);
    const before = await metricValue(gateway.adminPort, 'meshfed_gateway_refused_connections_total', {
      reason: 'not-exported',
    });
    expect((await tlsAttempt(gateway.port, SNI)).secure).toBe(false);
    expect(
      await metricValue(gateway.adminPort, 'meshfed_gateway_refused_connections_total', {
        reason: 'not-exported',
      }),
    ).toBe(before + 1);

    await zone.apply(meshWithPins([]));
    await waitFor(async () => (await dump()).routes.some((r) => r.sni === SNI && r.endpoints.length === 1), {
      what: 'orders routable again',
    });
    const result = await meshCall(pki, frontend, gateway.port, SNI, orders.spiffeId, 'unpinned');
    expect(result).toMatchObject({ status: 200, body: 'app-reply:unpinned' });
  });
});
