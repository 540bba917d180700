/**
 * The sidecar with a real zone control plane: certificates from the zone
 * CA (key generated locally, CSR, SPIFFE ID from the proxy token), config
 * over MDS, and policies applied to the zone reaching the data path.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startProxy, type ProxyHandle } from '../../proxy/index.js';
import { service, startTestZoneCp, workload, type TestZoneCp } from '../common/zone-cp.js';
import { waitFor } from '../common/wait.js';
import { keepAlive, request, startApp, type TestApp } from './proxy-harness.js';

const NS = 'bookinfo';
let zone: TestZoneCp;
let app: TestApp;
let reviews: ProxyHandle;
let productpage: ProxyHandle;

async function proxyFor(name: string, certTtlSeconds?: number): Promise<ProxyHandle> {
  const token = await zone.issueProxyToken({ workload: name, namespace: NS, serviceAccount: name });
  return startProxy({
    workload: name,
    namespace: NS,
    proxyId: `${name}-1`,
    ports: { outbound: 0, inbound: 0, admin: 0, metrics: 0 },
    inboundHost: '127.0.0.1',
    metricsHost: '127.0.0.1',
    zoneCp: {
      address: zone.cp.grpcAddress,
      caPem: zone.cp.caPem,
      token,
      ...(certTtlSeconds === undefined ? {} : { certTtlSeconds }),
    },
  });
}

beforeAll(async () => {
  zone = await startTestZoneCp({ zone: 'zone-a', pushDebounceMs: 20 });
  app = await startApp('reviews-v1');
  reviews = await proxyFor('reviews');
  productpage = await proxyFor('productpage');
  const reviewsWorkload = workload('reviews', NS, {
    inboundPort: reviews.ports.inbound,
    ports: { http: app.port },
    labels: { app: 'reviews', version: 'v1' },
  });
  const productpageWorkload = workload('productpage', NS, {
    inboundPort: productpage.ports.inbound,
    ports: { http: 1 },
  });
  zone.discovery?.set([
    service('reviews', NS, [reviewsWorkload]),
    service('productpage', NS, [productpageWorkload]),
  ]);
  await waitFor(() => (reviews.ready() && productpage.ready()) || undefined, {
    what: 'both proxies ready (certificate + snapshot)',
    timeoutMs: 15_000,
  });
}, 30_000);

afterAll(async () => {
  keepAlive.destroy();
  await productpage?.close();
  await reviews?.close();
  await app?.close();
  await zone?.close();
});

describe('with a real zone CP', () => {
  it('gets a certificate from the zone CA and its config over MDS, and serves traffic over mTLS', async () => {
    const certs = (await (await fetch(`http://127.0.0.1:${productpage.ports.admin}/certs`)).json()) as {
      spiffeId: string;
    };
    expect(certs.spiffeId).toBe(`spiffe://cluster.local/ns/${NS}/sa/productpage`);
    const answer = await waitFor(
      async () => {
        const a = await request(productpage.ports.outbound, 'reviews', '/reviews/1');
        return a.status === 200 ? a : undefined;
      },
      { what: 'a 200 through both proxies' },
    );
    expect(answer.body).toBe('reviews-v1\n');
    const seen = app.requests.find((r) => r.url === '/reviews/1');
    expect(seen?.headers['x-forwarded-client-cert']).toContain(
      `URI=spiffe://cluster.local/ns/${NS}/sa/productpage`,
    );
  });

  it('applies a VirtualService and an AuthorizationPolicy pushed by the zone', async () => {
    await zone.apply(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: ${NS}
spec:
  hosts: [reviews]
  http:
    - match:
        - headers:
            end-user:
              exact: jason
      fault:
        abort:
          percentage:
            value: 100
          httpStatus: 418
      route:
        - destination:
            host: reviews
    - route:
        - destination:
            host: reviews
`);
    await waitFor(
      async () =>
        (await request(productpage.ports.outbound, 'reviews', '/', { headers: { 'end-user': 'jason' } }))
          .status === 418 || undefined,
      { what: 'the fault route to reach the client proxy' },
    );
    expect((await request(productpage.ports.outbound, 'reviews', '/')).status).toBe(200);

    await zone.apply(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-post
  namespace: ${NS}
spec:
  selector:
    matchLabels:
      app: reviews
  action: DENY
  rules:
    - to:
        - operation:
            methods: [POST]
`);
    await waitFor(
      async () =>
        (await request(productpage.ports.outbound, 'reviews', '/p', { method: 'POST', body: 'x' })).status ===
          403 || undefined,
      { what: 'the deny policy to reach the server proxy' },
    );
    expect((await request(productpage.ports.outbound, 'reviews', '/g')).status).toBe(200);
  });
});

describe('certificate renewal from the zone CA', () => {
  it('renews at half-life and fails no request while it does', async () => {
    const detailsApp = await startApp('details');
    // 8 s certificates: renewed at half-life, with room for a slow CSR round trip on a loaded host.
    const details = await proxyFor('details', 8);
    try {
      const w = workload('details', NS, {
        inboundPort: details.ports.inbound,
        ports: { http: detailsApp.port },
        labels: { app: 'details' },
      });
      const current = zone.discovery?.services() ?? [];
      zone.discovery?.set([...current.filter((s) => s.name !== 'details'), service('details', NS, [w])]);
      await waitFor(
        async () =>
          (details.ready() &&
            (await request(productpage.ports.outbound, 'details', '/warm')).status === 200) ||
          undefined,
        { what: 'details reachable' },
      );
      const serials = new Set<string>();
      let failures = 0;
      let requests = 0;
      // Until a renewal has been seen (and enough requests made), or 25 s.
      const deadline = Date.now() + 25_000;
      while (Date.now() < deadline && (serials.size < 2 || requests < 50)) {
        const answers = await Promise.all(
          Array.from({ length: 4 }, () => request(productpage.ports.outbound, 'details', '/renewal')),
        );
        requests += answers.length;
        failures += answers.filter((a) => a.status !== 200).length;
        const certs = (await (await fetch(`http://127.0.0.1:${details.ports.admin}/certs`)).json()) as {
          chain: Array<{ serial: string }>;
        };
        serials.add(certs.chain[0]?.serial ?? '');
      }
      expect(requests).toBeGreaterThan(50);
      expect(failures).toBe(0);
      // Renewed at half-life (~4 s): a second serial well before the 25 s are up.
      expect(serials.size).toBeGreaterThanOrEqual(2);
    } finally {
      await details.close();
      await detailsApp.close();
    }
  }, 60_000);
});
