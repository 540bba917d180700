import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  createTestMesh,
  keepAlive,
  request,
  serviceVia,
  startApp,
  startMeshProxy,
  type TestApp,
  type TestProxy,
} from './proxy-harness.js';

describe('smoke', () => {
  const mesh = createTestMesh();
  let app: TestApp;
  let server: TestProxy;
  let client: TestProxy;

  beforeAll(async () => {
    app = await startApp('reviews-v1');
    const serverW = { workload: 'reviews-v1', namespace: 'bookinfo', serviceAccount: 'reviews' };
    server = await startMeshProxy(mesh, serverW, {
      inboundPorts: [{ port: 9080, targetPort: app.port, protocol: 'http', mtls: 'STRICT' }],
      defaultMtls: 'STRICT',
    });
    const clientW = { workload: 'productpage', namespace: 'bookinfo' };
    client = await startMeshProxy(mesh, clientW, {
      services: [
        serviceVia('reviews', 'bookinfo', server, serverW, {
          ports: [{ name: 'http', port: 9080, protocol: 'http' }],
        }),
      ],
    });
  });

  afterAll(async () => {
    keepAlive.destroy();
    await client?.close();
    await server?.close();
    await app?.close();
  });

  it('goes app → proxy → mTLS → proxy → app', async () => {
    const answer = await request(client.handle.ports.outbound, 'reviews:9080', '/hello');
    expect(answer.body).toBe('reviews-v1\n');
    expect(answer.status).toBe(200);
    expect(app.requests[0]?.headers['x-forwarded-client-cert']).toContain(
      'URI=spiffe://cluster.local/ns/bookinfo/sa/productpage',
    );
  });
});
