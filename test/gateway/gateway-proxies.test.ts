/**
 * The done-when chain with the real sidecar on both ends:
 *
 *   app A → zone-a proxy (outbound) ─tap─▶ zone-b gateway ─tap─▶ zone-b proxy (inbound, STRICT) → app B
 *
 * Certificates from one root and two zone intermediates. The zone-a proxy
 * reaches orders through its `via: gateway` endpoint with the mesh SNI; the
 * mTLS session is between the two proxies, so app B sees app A's SPIFFE ID
 * and neither tap sees a byte of the request or the response. Services
 * zone-a believes zone-b serves but zone-b's gateway does not route (unknown,
 * pinned to zone-b, no healthy endpoint) end in a 503 at the caller and the
 * gateway's refusal metric, with nothing reaching app B.
 */

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { startGateway, type GatewayHandle } from '../../eastwest-gateway/index.js';
import { waitFor } from '../common/wait.js';
import {
  createTestMesh,
  keepAlive,
  metricValue,
  request,
  scrape,
  sidecarEndpoint,
  sidecarSnapshot,
  spiffeOf,
  startApp,
  startTestProxy,
  type TestApp,
  type TestProxy,
} from '../proxy/proxy-harness.js';
import { metricValue as gatewayMetric, startTap, type Tap } from './gateway-fixtures.js';

let appB: TestApp;
let proxyB: TestProxy;
let proxyA: TestProxy;
let gateway: GatewayHandle;
let upstreamTap: Tap;
let clientTap: Tap;

beforeAll(async () => {
  const mesh = createTestMesh();
  const roots = [mesh.rootPem];
  appB = await startApp('orders');
  proxyB = await startTestProxy(
    mesh,
    { workload: 'orders-1', namespace: 'demo', serviceAccount: 'orders', zone: 'zone-b' },
    sidecarSnapshot({
      workload: 'orders-1',
      namespace: 'demo',
      serviceAccount: 'orders',
      zone: 'zone-b',
      roots,
      inboundPorts: [{ port: 80, targetPort: appB.port, protocol: 'http', mtls: 'STRICT' }],
      defaultMtls: 'STRICT',
    }),
  );
  upstreamTap = await startTap(proxyB.handle.ports.inbound);
  gateway = await startGateway({
    host: '127.0.0.1',
    port: 0,
    adminPort: 0,
    processMetrics: false,
    snapshot: {
      type: 'gateway/v1',
      zone: 'zone-b',
      services: [
        {
          name: 'orders',
          namespace: 'demo',
          ports: [80],
          clusters: [
            {
              subset: '_',
              endpoints: [
                { address: '127.0.0.1', port: upstreamTap.port, healthy: true, workload: 'orders-1' },
              ],
            },
          ],
        },
        {
          name: 'billing',
          namespace: 'demo',
          ports: [80],
          clusters: [
            {
              subset: '_',
              endpoints: [
                { address: '127.0.0.1', port: upstreamTap.port, healthy: false, workload: 'billing-1' },
              ],
            },
          ],
        },
      ],
      notExported: ['ledger.demo'],
    },
  });
  clientTap = await startTap(gateway.port);
  const viaGateway = sidecarEndpoint(
    clientTap.port,
    { workload: 'orders-1', namespace: 'demo', serviceAccount: 'orders', zone: 'zone-b' },
    { via: 'gateway', zone: 'zone-b', workload: undefined },
  );
  proxyA = await startTestProxy(
    mesh,
    { workload: 'frontend', namespace: 'demo', zone: 'zone-a' },
    sidecarSnapshot({
      workload: 'frontend',
      namespace: 'demo',
      zone: 'zone-a',
      roots,
      // payments, ledger and billing: zone-a believes zone-b serves them; zone-b's gateway knows better.
      services: ['orders', 'payments', 'ledger', 'billing'].map((name) => ({
        name,
        namespace: 'demo',
        clusters: [{ subset: '_', endpoints: [viaGateway] }],
      })),
    }),
  );
}, 30_000);

afterAll(async () => {
  keepAlive.destroy();
  await proxyA?.close();
  await clientTap?.close();
  await gateway?.close();
  await upstreamTap?.close();
  await proxyB?.close();
  await appB?.close();
});

describe('real proxies through the gateway', () => {
  test('app B sees app A’s identity; the gateway sees no plaintext', async () => {
    const secret = `secret-${randomBytes(12).toString('hex')}`;
    const answer = await request(proxyA.handle.ports.outbound, 'orders.demo', `/orders/${secret}`, {
      method: 'POST',
      body: `body-${secret}`,
      agent: false,
    });
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('orders\n');
    const seen = appB.requests.at(-1);
    expect(seen?.url).toBe(`/orders/${secret}`);
    expect(seen?.body).toBe(`body-${secret}`);
    expect(String(seen?.headers['x-forwarded-client-cert'])).toContain(`URI=${spiffeOf('demo', 'frontend')}`);

    // The proxies' mTLS session crossed the gateway: both taps saw it, the SNI in clear, nothing else.
    await waitFor(() => clientTap.forward().length > 500 && upstreamTap.forward().length > 500, {
      what: 'the taps to record the session',
    });
    expect(clientTap.forward().toString('latin1')).toContain('_.80.orders.demo.svc.mesh');
    for (const bytes of [
      clientTap.forward(),
      clientTap.backward(),
      upstreamTap.forward(),
      upstreamTap.backward(),
    ]) {
      const text = bytes.toString('latin1');
      expect(text).not.toContain(secret);
      expect(text).not.toContain('orders\n');
    }
    expect(
      await gatewayMetric(gateway.adminPort, 'meshfed_gateway_forwarded_connections_total', {
        service: 'orders.demo',
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  test.each([
    ['payments', 'unknown-service'],
    ['ledger', 'not-exported'],
    ['billing', 'no-healthy-endpoint'],
  ])(
    'a call to %s is refused at the gateway (%s): the caller gets a 503, app B nothing',
    async (service, reason) => {
      const before = await gatewayMetric(gateway.adminPort, 'meshfed_gateway_refused_connections_total', {
        reason,
      });
      const seen = appB.requests.length;
      const answer = await request(proxyA.handle.ports.outbound, `${service}.demo`, '/', { agent: false });
      expect(answer.status).toBe(503);
      expect(answer.body).toBe(
        'upstream connect error or disconnect/reset before headers. reset reason: connection failure\n',
      );
      // The caller's own telemetry says why: the upstream connection failed (UF), retried to no avail (URX).
      expect(
        metricValue(await scrape(proxyA.metrics), 'istio_requests_total', {
          reporter: 'source',
          destination_service_name: service,
          response_code: '503',
          response_flags: 'UF,URX',
        }),
      ).toBe(1);
      expect(
        await gatewayMetric(gateway.adminPort, 'meshfed_gateway_refused_connections_total', { reason }),
      ).toBeGreaterThan(before);
      expect(appB.requests.length).toBe(seen);
    },
  );
});
