/**
 * zone-a client → gateway (zone-b) → zone-b proxy → app, with real
 * certificates from one root and two zone intermediates. The gateway holds
 * no key: taps on both of its sides see only ciphertext, identical on both
 * sides, while the app sees the client's SPIFFE identity. Every kind of
 * connection the gateway must refuse is refused with its metric reason and
 * without a byte reaching the zone.
 */

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { startGateway, type GatewayHandle } from '../../eastwest-gateway/index.js';
import type { GatewaySnapshot } from '../../core/mesh/snapshot.js';
import { waitFor } from '../common/wait.js';
import {
  createMeshPki,
  issuerOf,
  meshCall,
  metricValue,
  rawExchange,
  startApp,
  startTap,
  startZoneProxy,
  tlsAttempt,
  type Leaf,
  type MeshPki,
  type Tap,
  type ZoneProxyStandIn,
} from './gateway-fixtures.js';

let pki: MeshPki;
let frontend: Leaf;
let orders: Leaf;
let app: Awaited<ReturnType<typeof startApp>>;
let zoneProxy: ZoneProxyStandIn;
let upstreamTap: Tap;
let clientTap: Tap;
let gateway: GatewayHandle;

const ORDERS_SNI = '_.8080.orders.demo.svc.mesh';

function snapshot(endpointPort: number): GatewaySnapshot {
  return {
    type: 'gateway/v1',
    zone: 'zone-b',
    services: [
      {
        name: 'orders',
        namespace: 'demo',
        ports: [8080],
        clusters: [
          {
            subset: '_',
            endpoints: [{ address: '127.0.0.1', port: endpointPort, healthy: true, workload: 'orders-1' }],
          },
          {
            subset: 'v1',
            endpoints: [{ address: '127.0.0.1', port: endpointPort, healthy: true, workload: 'orders-1' }],
          },
        ],
      },
      {
        name: 'billing',
        namespace: 'demo',
        ports: [8080],
        clusters: [
          {
            subset: '_',
            endpoints: [{ address: '127.0.0.1', port: endpointPort, healthy: false, workload: 'billing-1' }],
          },
        ],
      },
    ],
    notExported: ['ledger.demo'],
  };
}

beforeAll(async () => {
  pki = createMeshPki();
  frontend = pki.leaf(pki.zoneA, 'demo', 'frontend');
  orders = pki.leaf(pki.zoneB, 'demo', 'orders');
  app = await startApp();
  zoneProxy = await startZoneProxy(pki, orders, app.port);
  upstreamTap = await startTap(zoneProxy.port);
  gateway = await startGateway({
    host: '127.0.0.1',
    port: 0,
    adminPort: 0,
    processMetrics: false,
    snapshot: snapshot(upstreamTap.port),
  });
  clientTap = await startTap(gateway.port);
});

afterAll(async () => {
  await clientTap?.close();
  await gateway?.close();
  await upstreamTap?.close();
  await zoneProxy?.close();
  await app?.close();
});

describe('cross-zone mTLS through the gateway', () => {
  test('the certificates come from one root through two zone intermediates', () => {
    expect(issuerOf(frontend.chainPem)).toContain('zone-a');
    expect(issuerOf(orders.chainPem)).toContain('zone-b');
  });

  test('the app sees the zone-a client identity and the client verifies the zone-b server identity', async () => {
    const result = await meshCall(pki, frontend, gateway.port, ORDERS_SNI, orders.spiffeId, 'one order');
    expect(result).toEqual({
      status: 200,
      body: 'app-reply:one order',
      seenPeer: frontend.spiffeId,
      serverId: orders.spiffeId,
    });
    expect(app.requests.at(-1)).toMatchObject({ method: 'POST', url: '/orders', peer: frontend.spiffeId });
    expect(zoneProxy.peers.at(-1)).toBe(frontend.spiffeId);
  });

  test('a subset SNI routes to the subset', async () => {
    const result = await meshCall(
      pki,
      frontend,
      gateway.port,
      'v1.8080.orders.demo.svc.mesh',
      orders.spiffeId,
      'v1',
    );
    expect(result.status).toBe(200);
    expect(result.seenPeer).toBe(frontend.spiffeId);
  });

  test('taps on both sides of the gateway see no plaintext, and the same bytes', async () => {
    // Earlier connections' last records must not land in this test's capture.
    await waitFor(() => gateway.activeConnections === 0, { what: 'earlier connections to close' });
    clientTap.reset();
    upstreamTap.reset();
    const secret = `order-secret-${randomBytes(12).toString('hex')}`;
    const result = await meshCall(pki, frontend, clientTap.port, ORDERS_SNI, orders.spiffeId, secret);
    expect(result.body).toBe(`app-reply:${secret}`);
    expect(app.requests.at(-1)?.body).toBe(secret);

    const wire = [clientTap.forward(), clientTap.backward(), upstreamTap.forward(), upstreamTap.backward()];
    // The taps did record the session: the ClientHello's SNI is the one plaintext the gateway reads.
    expect(clientTap.forward().length).toBeGreaterThan(500);
    expect(clientTap.forward().toString('latin1')).toContain(ORDERS_SNI);
    for (const bytes of wire) {
      const text = bytes.toString('latin1');
      expect(text).not.toContain(secret);
      expect(text).not.toContain('POST /orders');
      expect(text).not.toContain('app-reply');
      expect(text).not.toContain(frontend.spiffeId.slice('spiffe://'.length) + '\r\n');
    }
    // The gateway forwarded exactly what it received, both ways: it neither decrypted nor re-encrypted.
    // (The last TLS records, close_notify, may still be crossing when the response ends.)
    await waitFor(
      () =>
        upstreamTap.forward().equals(clientTap.forward()) &&
        upstreamTap.backward().equals(clientTap.backward()),
      { what: 'both taps to hold the same byte streams', timeoutMs: 5000 },
    );
  });

  test('forwarded connections and bytes are counted', async () => {
    const before = await metricValue(gateway.adminPort, 'meshfed_gateway_forwarded_connections_total', {
      service: 'orders.demo',
    });
    const bytesBefore = await metricValue(gateway.adminPort, 'meshfed_gateway_bytes_total', {
      direction: 'in',
    });
    await meshCall(pki, frontend, gateway.port, ORDERS_SNI, orders.spiffeId, 'x'.repeat(10_000));
    expect(
      await metricValue(gateway.adminPort, 'meshfed_gateway_forwarded_connections_total', {
        service: 'orders.demo',
      }),
    ).toBe(before + 1);
    const bytesAfter = await metricValue(gateway.adminPort, 'meshfed_gateway_bytes_total', {
      direction: 'in',
    });
    expect(bytesAfter - bytesBefore).toBeGreaterThan(10_000);
  });

  test('a client without a mesh certificate gets through the gateway but is refused by the zone-b proxy', async () => {
    // The gateway cannot check identities (it sees no plaintext); the destination proxy does.
    const before = app.requests.length;
    const anonymous = { ...frontend, keyPem: '', chainPem: '' };
    await expect(
      meshCall(pki, anonymous, gateway.port, ORDERS_SNI, orders.spiffeId, 'anon'),
    ).rejects.toThrow();
    expect(app.requests.length).toBe(before);
  });
});

describe('refusals: closed before a byte is forwarded, counted by reason', () => {
  const cases: Array<[string, string, () => Promise<unknown>]> = [
    ['a non-mesh SNI', 'non-mesh-sni', () => tlsAttempt(gateway.port, 'orders.example.com')],
    [
      'a mesh SNI for a service this zone does not export',
      'unknown-service',
      () => tlsAttempt(gateway.port, '_.8080.payments.demo.svc.mesh'),
    ],
    [
      'a mesh SNI for a service pinned to this zone',
      'not-exported',
      () => tlsAttempt(gateway.port, '_.8080.ledger.demo.svc.mesh'),
    ],
    [
      'a mesh SNI with a port the service does not have',
      'unknown-port',
      () => tlsAttempt(gateway.port, '_.9999.orders.demo.svc.mesh'),
    ],
    [
      'a mesh SNI with an unknown subset',
      'unknown-subset',
      () => tlsAttempt(gateway.port, 'v9.8080.orders.demo.svc.mesh'),
    ],
    [
      'a service with no healthy endpoint',
      'no-healthy-endpoint',
      () => tlsAttempt(gateway.port, '_.8080.billing.demo.svc.mesh'),
    ],
    ['a ClientHello without SNI', 'no-sni', () => tlsAttempt(gateway.port, undefined)],
    [
      'plain HTTP',
      'not-tls',
      () => rawExchange(gateway.port, [Buffer.from('GET /orders HTTP/1.1\r\nHost: orders\r\n\r\n')]),
    ],
    [
      'a truncated hello followed by FIN',
      'hello-incomplete',
      () => rawExchange(gateway.port, [Buffer.from([22, 3, 1, 0, 200, 1])], { endAfter: true }),
    ],
  ];

  test.each(cases)('%s is refused (%s)', async (_name, reason, attempt) => {
    await waitFor(() => gateway.activeConnections === 0, { what: 'earlier connections to close' });
    upstreamTap.reset();
    const before = await metricValue(gateway.adminPort, 'meshfed_gateway_refused_connections_total', {
      reason,
    });
    const result = (await attempt()) as { secure?: boolean; received?: Buffer };
    expect(result.secure ?? false).toBe(false);
    if (result.received !== undefined) expect(result.received.length).toBe(0);
    expect(
      await metricValue(gateway.adminPort, 'meshfed_gateway_refused_connections_total', { reason }),
    ).toBe(before + 1);
    // Nothing reached the zone: no connection to the endpoint, not one byte.
    expect(upstreamTap.connections()).toBe(0);
    expect(upstreamTap.forward().length).toBe(0);
  });

  test('after all those refusals the gateway still routes', async () => {
    const result = await meshCall(pki, frontend, gateway.port, ORDERS_SNI, orders.spiffeId, 'still here');
    expect(result.body).toBe('app-reply:still here');
  });
});
