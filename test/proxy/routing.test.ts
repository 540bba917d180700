/**
 * VirtualService routing through real proxies and real mTLS: weighted
 * splits (the 90/10 canary and "1% of iPhone users"), header matches
 * (Bookinfo's jason), the app using the proxy as HTTP_PROXY, redirects,
 * rewrites, direct responses, header operations, unknown hosts.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import type { EndpointConfig, IstioObject } from '../../core/mesh/snapshot.js';
import {
  createTestMesh,
  keepAlive,
  request,
  sidecarEndpoint,
  sidecarSnapshot,
  startApp,
  startTestProxy,
  type ServiceSpec,
  type TestApp,
  type TestProxy,
} from './proxy-harness.js';

const mesh = createTestMesh();
const NS = 'bookinfo';

interface Backend {
  app: TestApp;
  proxy: TestProxy;
  endpoint: EndpointConfig;
}

async function backend(name: string, version: string): Promise<Backend> {
  const app = await startApp(`${name}-${version}`);
  const w = {
    workload: `${name}-${version}`,
    namespace: NS,
    serviceAccount: name,
    labels: { app: name, version },
  };
  const proxy = await startTestProxy(
    mesh,
    w,
    sidecarSnapshot({
      ...w,
      roots: [mesh.rootPem],
      inboundPorts: [{ port: 9080, targetPort: app.port, protocol: 'http', mtls: 'STRICT' }],
    }),
  );
  return { app, proxy, endpoint: sidecarEndpoint(proxy.handle.ports.inbound, w) };
}

function reviewsService(backends: Record<string, Backend>, http: IstioObject[]): ServiceSpec {
  return {
    name: 'reviews',
    namespace: NS,
    ports: [{ name: 'http', port: 9080, protocol: 'http' }],
    http,
    clusters: [
      { subset: '_', endpoints: Object.values(backends).map((b) => b.endpoint) },
      ...Object.entries(backends).map(([subset, b]) => ({ subset, endpoints: [b.endpoint] })),
    ],
  };
}

function count(bodies: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const b of bodies) out[b.trim()] = (out[b.trim()] ?? 0) + 1;
  return out;
}

/** `n` requests, `concurrency` at a time. */
async function many(n: number, concurrency: number, one: (i: number) => Promise<string>): Promise<string[]> {
  const out: string[] = new Array<string>(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await one(i);
      }
    }),
  );
  return out;
}

describe('routing', () => {
  const backends: Record<string, Backend> = {};
  let client: TestProxy;
  const clientW = { workload: 'productpage', namespace: NS };

  function apply(http: IstioObject[], extra: ServiceSpec[] = []): void {
    client.handle.applySnapshot(
      sidecarSnapshot({
        ...clientW,
        roots: [mesh.rootPem],
        services: [reviewsService(backends, http), ...extra],
      }),
    );
  }

  beforeAll(async () => {
    backends.v1 = await backend('reviews', 'v1');
    backends.v2 = await backend('reviews', 'v2');
    backends.v3 = await backend('reviews', 'v3');
    client = await startTestProxy(mesh, clientW, undefined);
  });

  afterAll(async () => {
    keepAlive.destroy();
    await client?.close();
    for (const b of Object.values(backends)) {
      await b.proxy.close();
      await b.app.close();
    }
  });

  it('splits 90/10 between subsets within tolerance over 2,000 requests', async () => {
    apply([
      {
        route: [
          { destination: { host: 'reviews.bookinfo.svc.cluster.local', subset: 'v1' }, weight: 90 },
          { destination: { host: 'reviews.bookinfo.svc.cluster.local', subset: 'v2' }, weight: 10 },
        ],
      },
    ]);
    const bodies = await many(
      2000,
      32,
      async () => (await request(client.handle.ports.outbound, 'reviews:9080', '/reviews/0')).body,
    );
    const counts = count(bodies);
    // Binomial(2000, 0.1): σ ≈ 13.4; ±4σ ≈ ±54 requests.
    expect(counts['reviews-v2']).toBeGreaterThanOrEqual(200 - 54);
    expect(counts['reviews-v2']).toBeLessThanOrEqual(200 + 54);
    expect((counts['reviews-v1'] ?? 0) + (counts['reviews-v2'] ?? 0)).toBe(2000);
    expect(counts['reviews-v3']).toBeUndefined();
  });

  it('sends 1% of iPhone users to the canary and no one else', async () => {
    apply([
      {
        match: [{ headers: { 'user-agent': { regex: '.*iPhone.*' } } }],
        route: [
          { destination: { host: 'reviews', subset: 'v2' }, weight: 1 },
          { destination: { host: 'reviews', subset: 'v1' }, weight: 99 },
        ],
      },
      { route: [{ destination: { host: 'reviews', subset: 'v1' } }] },
    ]);
    const iphone = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)';
    const bodies = await many(
      5000,
      32,
      async () =>
        (
          await request(client.handle.ports.outbound, 'reviews:9080', '/', {
            headers: { 'user-agent': iphone },
          })
        ).body,
    );
    const canary = count(bodies)['reviews-v2'] ?? 0;
    // Binomial(5000, 0.01): mean 50, σ ≈ 7; ±4σ.
    expect(canary).toBeGreaterThanOrEqual(22);
    expect(canary).toBeLessThanOrEqual(78);
    const others = await many(
      1000,
      32,
      async () =>
        (
          await request(client.handle.ports.outbound, 'reviews:9080', '/', {
            headers: { 'user-agent': 'curl/8.0' },
          })
        ).body,
    );
    expect(count(others)).toEqual({ 'reviews-v1': 1000 });
  });

  it("routes Bookinfo's end-user: jason to v2 and everyone else to v1", async () => {
    apply([
      {
        match: [{ headers: { 'end-user': { exact: 'jason' } } }],
        route: [{ destination: { host: 'reviews', subset: 'v2' } }],
      },
      { route: [{ destination: { host: 'reviews', subset: 'v1' } }] },
    ]);
    const port = client.handle.ports.outbound;
    expect((await request(port, 'reviews:9080', '/', { headers: { 'end-user': 'jason' } })).body).toBe(
      'reviews-v2\n',
    );
    expect((await request(port, 'reviews:9080', '/', { headers: { 'end-user': 'json' } })).body).toBe(
      'reviews-v1\n',
    );
    expect((await request(port, 'reviews:9080', '/')).body).toBe('reviews-v1\n');
  });

  it('matches uri prefix/regex, method and query parameters, first match wins', async () => {
    apply([
      {
        match: [{ uri: { prefix: '/api/v3' } }],
        route: [{ destination: { host: 'reviews', subset: 'v3' } }],
      },
      {
        match: [{ uri: { regex: '/items/[0-9]+' }, method: { exact: 'DELETE' } }],
        route: [{ destination: { host: 'reviews', subset: 'v2' } }],
      },
      {
        match: [{ queryParams: { canary: { exact: 'yes' } } }],
        route: [{ destination: { host: 'reviews', subset: 'v2' } }],
      },
      { route: [{ destination: { host: 'reviews', subset: 'v1' } }] },
    ]);
    const port = client.handle.ports.outbound;
    expect((await request(port, 'reviews:9080', '/api/v3/x')).body).toBe('reviews-v3\n');
    expect((await request(port, 'reviews:9080', '/items/42', { method: 'DELETE' })).body).toBe(
      'reviews-v2\n',
    );
    expect((await request(port, 'reviews:9080', '/items/42')).body).toBe('reviews-v1\n');
    expect((await request(port, 'reviews:9080', '/items/4x2', { method: 'DELETE' })).body).toBe(
      'reviews-v1\n',
    );
    expect((await request(port, 'reviews:9080', '/p?canary=yes')).body).toBe('reviews-v2\n');
    expect((await request(port, 'reviews:9080', '/p?canary=no')).body).toBe('reviews-v1\n');
  });

  it('works as an HTTP proxy (absolute-form URI) and by every alias', async () => {
    apply([]);
    const port = client.handle.ports.outbound;
    const viaProxy = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: 'http://reviews.bookinfo:9080/x?y=1', agent: false }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve(body));
        })
        .on('error', reject);
    });
    expect(viaProxy).toMatch(/^reviews-v[123]\n$/);
    for (const host of [
      'reviews',
      'reviews.bookinfo',
      'reviews.bookinfo.svc',
      'reviews.bookinfo.svc.cluster.local',
      'REVIEWS:9080',
    ]) {
      expect((await request(port, host, '/')).status).toBe(200);
    }
    const last = Object.values(backends)
      .flatMap((b) => b.app.requests)
      .find((r) => r.url === '/x?y=1');
    expect(last?.headers.host).toBe('reviews.bookinfo:9080');
  });

  it('answers 404 NR for hosts that are not mesh services and ports the service lacks', async () => {
    apply([]);
    const port = client.handle.ports.outbound;
    const unknown = await request(port, 'ratings:9080', '/');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toContain('no route');
    expect((await request(port, 'reviews:9999', '/')).status).toBe(404);
  });

  it('redirects, rewrites, answers directly and manipulates headers', async () => {
    apply([
      { match: [{ uri: { exact: '/old' } }], redirect: { uri: '/new', authority: 'reviews.bookinfo:9080' } },
      {
        match: [{ uri: { prefix: '/teapot' } }],
        directResponse: { status: 418, body: { string: 'short and stout' } },
      },
      {
        match: [{ uri: { prefix: '/v1api/' } }],
        rewrite: { uri: '/api/' },
        headers: {
          request: { set: { 'x-route': 'rewritten' }, remove: ['x-secret'] },
          response: { add: { 'x-served-by': 'mesh' } },
        },
        route: [{ destination: { host: 'reviews', subset: 'v1' } }],
      },
    ]);
    const port = client.handle.ports.outbound;
    const redirect = await request(port, 'reviews:9080', '/old');
    expect(redirect.status).toBe(301);
    expect(redirect.headers.location).toBe('http://reviews.bookinfo:9080/new');
    const teapot = await request(port, 'reviews:9080', '/teapot');
    expect(teapot.status).toBe(418);
    expect(teapot.body).toBe('short and stout');
    const rewritten = await request(port, 'reviews:9080', '/v1api/items?x=1', {
      headers: { 'x-secret': 's3cr3t' },
    });
    expect(rewritten.status).toBe(200);
    expect(rewritten.headers['x-served-by']).toBe('mesh');
    const seen = backends.v1?.app.requests.at(-1);
    expect(seen?.url).toBe('/api/items?x=1');
    expect(seen?.headers['x-route']).toBe('rewritten');
    expect(seen?.headers['x-secret']).toBeUndefined();
  });
});
