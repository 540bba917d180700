/**
 * Resilience through real proxies: retries (counted by the upstream),
 * per-try and route timeouts (504 UT), fault injection, mirroring, circuit
 * breaking (503 UO), outlier ejection and recovery, locality failover to
 * another zone, upstream resets (503 UC).
 */

import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import type { EndpointConfig, IstioObject } from '../../core/mesh/snapshot.js';
import { mirrorsInFlight } from '../../proxy/outbound/outbound-mirror.js';
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
  type AppHandler,
  type TestApp,
  type TestProxy,
} from './proxy-harness.js';

const mesh = createTestMesh();
const NS = 'shop';

interface Backend {
  app: TestApp;
  proxy: TestProxy;
  endpoint: EndpointConfig;
}

const started: Array<{ close(): Promise<void> }> = [];

async function backend(
  workload: string,
  handler?: AppHandler,
  zone = 'zone-a',
  labels: Record<string, string> = {},
): Promise<Backend> {
  const app = await startApp(workload, handler);
  const w = {
    workload,
    namespace: NS,
    serviceAccount: 'backend',
    zone,
    labels: { app: 'backend', ...labels },
  };
  const proxy = await startTestProxy(
    mesh,
    w,
    sidecarSnapshot({
      ...w,
      roots: [mesh.rootPem],
      inboundPorts: [{ port: 8080, targetPort: app.port, protocol: 'http', mtls: 'STRICT' }],
    }),
  );
  started.push(proxy, app);
  return { app, proxy, endpoint: sidecarEndpoint(proxy.handle.ports.inbound, w) };
}

let client: TestProxy;
const clientW = { workload: 'frontend', namespace: NS, zone: 'zone-a' };

function configure(
  endpoints: EndpointConfig[],
  http: IstioObject[] = [],
  trafficPolicy: IstioObject = {},
  subsets: Record<string, EndpointConfig[]> = {},
): void {
  client.handle.applySnapshot(
    sidecarSnapshot({
      ...clientW,
      roots: [mesh.rootPem],
      services: [
        {
          name: 'backend',
          namespace: NS,
          ports: [{ name: 'http', port: 8080, protocol: 'http' }],
          http,
          clusters: [
            { subset: '_', trafficPolicy, endpoints },
            ...Object.entries(subsets).map(([subset, eps]) => ({ subset, trafficPolicy, endpoints: eps })),
          ],
        },
      ],
    }),
  );
}

function get(
  path = '/',
  headers: Record<string, string> = {},
  method = 'GET',
  body?: string,
): ReturnType<typeof request> {
  return request(client.handle.ports.outbound, 'backend:8080', path, {
    headers,
    method,
    ...(body === undefined ? {} : { body }),
  });
}

function failing(status: number, times: number): AppHandler {
  let calls = 0;
  return (_req, res) => {
    calls++;
    if (calls <= times) {
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(`failure ${calls}\n`);
    } else {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
    }
  };
}

function slow(ms: number): AppHandler {
  return (_req, res) => {
    const t = setTimeout(() => res.end('slow\n'), ms);
    res.on('close', () => clearTimeout(t));
  };
}

/** A plain endpoint straight to a port of this host (no server proxy): the app sees exactly what the client proxy sends. */
function plainEndpoint(port: number): EndpointConfig {
  return {
    address: '127.0.0.1',
    port,
    via: 'plaintext',
    zone: 'zone-a',
    weight: 1,
    healthy: true,
    labels: { app: 'backend' },
    workload: 'plain',
    identities: [],
  };
}

/** An app on a raw node:http server, for answers a recorded app cannot give (before the body ends, a dropped socket). */
async function rawApp(handler: http.RequestListener): Promise<{ port: number; server: http.Server }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  started.push({
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
  return { port: (server.address() as AddressInfo).port, server };
}

/** POSTs `body` through the client proxy in two writes, `pauseMs` apart; resolves with the status. */
function postInTwoParts(path: string, body: Buffer, split: number, pauseMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: client.handle.ports.outbound,
        method: 'POST',
        path,
        headers: { host: 'backend:8080', 'content-length': body.length },
        agent: keepAlive,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.write(body.subarray(0, split));
    if (split >= body.length) req.end();
    else setTimeout(() => req.end(body.subarray(split)), pauseMs);
  });
}

/** The client proxy's access log lines. */
const clientLog: string[] = [];

beforeAll(async () => {
  client = await startTestProxy(mesh, clientW, undefined, {
    accessLog: true,
    accessLogSink: (lines) => clientLog.push(...lines.trim().split('\n')),
  });
});

afterEach(async () => {
  while (started.length > 0) await started.pop()?.close();
});

afterAll(async () => {
  keepAlive.destroy();
  await client?.close();
});

describe('retries', () => {
  it('retries 5xx as configured: the upstream sees 1 + attempts requests, the app gets the last answer (URX)', async () => {
    const b = await backend('always-503', failing(503, 1_000));
    configure(
      [b.endpoint],
      [{ route: [{ destination: { host: 'backend' } }], retries: { attempts: 3, retryOn: '5xx' } }],
    );
    const answer = await get('/r1');
    expect(answer.status).toBe(503);
    expect(b.app.requests.filter((r) => r.url === '/r1')).toHaveLength(4);
    const text = await scrape(client.metrics);
    expect(
      metricValue(text, 'istio_requests_total', {
        reporter: 'source',
        response_code: '503',
        response_flags: 'URX',
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('succeeds when a retry does, and replays the request body', async () => {
    const b = await backend('flaky', failing(502, 2));
    configure(
      [b.endpoint],
      [{ route: [{ destination: { host: 'backend' } }], retries: { attempts: 3, retryOn: 'gateway-error' } }],
    );
    const answer = await get('/r2', { 'content-type': 'text/plain' }, 'POST', 'payload-123');
    expect(answer.status).toBe(200);
    const seen = b.app.requests.filter((r) => r.url === '/r2');
    expect(seen).toHaveLength(3);
    expect(seen.map((r) => r.body)).toEqual(['payload-123', 'payload-123', 'payload-123']);
  });

  it('a request that waited in the pending queue while its body arrived sends all of it', async () => {
    const seen: Array<{ bytes: number; first: number }> = [];
    let releaseHold: () => void = () => undefined;
    let holding = false;
    const app = await rawApp((req, res) => {
      if (req.url === '/hold') {
        holding = true;
        releaseHold = () => res.end('held');
        req.resume();
        return;
      }
      let bytes = 0;
      let first = -1;
      req.on('data', (c: Buffer) => {
        if (first < 0) first = c[0] ?? -1;
        bytes += c.length;
      });
      req.on('end', () => {
        seen.push({ bytes, first });
        res.end('ok');
      });
    });
    // One connection: the POST waits behind /hold, and its 4 MiB body (past the 1 MiB replay
    // copy) arrives meanwhile.
    configure([plainEndpoint(app.port)], [], {
      connectionPool: { tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 10 } },
    });
    const held = get('/hold');
    await waitFor(() => holding || undefined, { what: 'the app to hold the only connection' });
    const body = Buffer.alloc(4 * 1024 * 1024, 0x61);
    body[0] = 0x5a;
    const posted = postInTwoParts('/big', body, body.length, 0);
    // Long enough for the whole body to reach the proxy while the POST is queued.
    await new Promise((resolve) => setTimeout(resolve, 300));
    releaseHold();
    expect((await held).status).toBe(200);
    expect(await posted).toBe(200);
    expect(seen).toEqual([{ bytes: body.length, first: 0x5a }]);
  });

  it('a POST whose connection drops after the app read it is not sent again', async () => {
    let posts = 0;
    const app = await rawApp((req, res) => {
      if (req.method !== 'POST') {
        res.end('warm');
        return;
      }
      posts++;
      // The app took the request and died handling it: no answer, the connection just closes.
      req.resume();
      req.on('end', () => setTimeout(() => req.socket.destroy(), 50));
    });
    configure([plainEndpoint(app.port)]);
    // Warm keep-alive connections to the app, so the POST goes out on a reused one.
    await Promise.all([get('/warm'), get('/warm'), get('/warm')]);
    const answer = await get('/charge', { 'content-type': 'text/plain' }, 'POST', 'pay 10');
    expect(answer.status).toBe(503);
    expect(posts).toBe(1);
  });

  it('does not retry when retryOn does not cover the status', async () => {
    const b = await backend('teapot', failing(500, 1_000));
    configure(
      [b.endpoint],
      [{ route: [{ destination: { host: 'backend' } }], retries: { attempts: 3, retryOn: 'gateway-error' } }],
    );
    expect((await get('/r3')).status).toBe(500);
    expect(b.app.requests.filter((r) => r.url === '/r3')).toHaveLength(1);
  });

  it("applies Istio's default retry (2 retries of 503) when the route sets none", async () => {
    const b = await backend('default-retry', failing(503, 2));
    configure([b.endpoint]);
    expect((await get('/r4')).status).toBe(200);
    expect(b.app.requests.filter((r) => r.url === '/r4')).toHaveLength(3);
  });

  it('a per-try timeout answers 504 UT after the last try; each try reached the upstream', async () => {
    const b = await backend('sleepy', slow(5_000));
    configure(
      [b.endpoint],
      [
        {
          route: [{ destination: { host: 'backend' } }],
          retries: { attempts: 2, perTryTimeout: '500ms', retryOn: '5xx' },
        },
      ],
    );
    const answer = await get('/t1');
    expect(answer.status).toBe(504);
    expect(answer.body).toContain('upstream request timeout');
    await waitFor(() => b.app.requests.filter((r) => r.url === '/t1').length === 3 || undefined, {
      what: '3 tries at the app',
    });
  });

  it('the route timeout answers 504 with flag UT', async () => {
    const b = await backend('sleepy2', slow(5_000));
    configure(
      [b.endpoint],
      [{ route: [{ destination: { host: 'backend' } }], timeout: '200ms', retries: { attempts: 0 } }],
    );
    const answer = await get('/t2');
    expect(answer.status).toBe(504);
    const text = await scrape(client.metrics);
    expect(
      metricValue(text, 'istio_requests_total', {
        reporter: 'source',
        response_code: '504',
        response_flags: 'UT',
      }),
    ).toBeGreaterThanOrEqual(1);
  });
});

describe('fault injection', () => {
  it('aborts every request with the configured status (FI) without reaching the upstream', async () => {
    const b = await backend('fault-target');
    configure(
      [b.endpoint],
      [
        {
          fault: { abort: { percentage: { value: 100 }, httpStatus: 500 } },
          route: [{ destination: { host: 'backend' } }],
        },
      ],
    );
    for (let i = 0; i < 5; i++) expect((await get('/f1')).status).toBe(500);
    expect(b.app.requests).toHaveLength(0);
    const text = await scrape(client.metrics);
    expect(
      metricValue(text, 'istio_requests_total', { response_code: '500', response_flags: 'FI' }),
    ).toBeGreaterThanOrEqual(5);
  });

  it('aborts about the configured share of requests', async () => {
    const b = await backend('fault-half');
    configure(
      [b.endpoint],
      [
        {
          fault: { abort: { percentage: { value: 50 }, httpStatus: 503 } },
          route: [{ destination: { host: 'backend' } }],
          retries: { attempts: 0 },
        },
      ],
    );
    let aborted = 0;
    for (let i = 0; i < 400; i++) if ((await get('/f2')).status === 503) aborted++;
    // Binomial(400, 0.5): σ = 10; ±4σ.
    expect(aborted).toBeGreaterThanOrEqual(160);
    expect(aborted).toBeLessThanOrEqual(240);
    expect(b.app.requests).toHaveLength(400 - aborted);
  });

  it('delays requests by the fixed delay (DI) and then forwards them', async () => {
    const b = await backend('fault-delay');
    configure(
      [b.endpoint],
      [
        {
          fault: { delay: { percentage: { value: 100 }, fixedDelay: '300ms' } },
          route: [{ destination: { host: 'backend' } }],
        },
      ],
    );
    const started = Date.now();
    const answer = await get('/f3');
    expect(answer.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(b.app.requests).toHaveLength(1);
    const text = await scrape(client.metrics);
    expect(
      metricValue(text, 'istio_requests_total', { response_code: '200', response_flags: 'DI' }),
    ).toBeGreaterThanOrEqual(1);
  });
});

describe('mirroring', () => {
  it('sends a copy to the mirror (Host -shadow, same body) while the answer comes from the primary', async () => {
    const v1 = await backend('httpbin-v1', undefined, 'zone-a', { version: 'v1' });
    const v2 = await backend('httpbin-v2', (_req, res) => {
      res.writeHead(500);
      res.end('mirror answers are ignored');
    });
    configure(
      [v1.endpoint, v2.endpoint],
      [
        {
          route: [{ destination: { host: 'backend', subset: 'v1' }, weight: 100 }],
          mirror: { host: 'backend', subset: 'v2' },
          mirrorPercentage: { value: 100 },
        },
      ],
      {},
      { v1: [v1.endpoint], v2: [v2.endpoint] },
    );
    const answer = await get('/m1', { 'content-type': 'text/plain' }, 'POST', 'mirrored body');
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('httpbin-v1\n');
    const copy = await waitFor(() => v2.app.requests.find((r) => r.url === '/m1'), {
      what: 'the mirrored request',
    });
    expect(copy.headers.host).toBe('backend-shadow:8080');
    expect(copy.body).toBe('mirrored body');
    expect(v1.app.requests.filter((r) => r.url === '/m1')).toHaveLength(1);
  });

  it('sends no mirror when the primary answers before the body is in', async () => {
    const mirrored: Array<{ bytes: number; length: string | undefined }> = [];
    const primary = await rawApp((req, res) => {
      // Too large: refused on sight, as an upload limit would.
      res.writeHead(413, { 'content-length': '0', connection: 'close' });
      res.end();
      req.resume();
    });
    const shadow = await rawApp((req, res) => {
      // Counted on arrival: a cut mirror never ends.
      mirrored.push({ bytes: 0, length: req.headers['content-length'] });
      req.resume();
      req.on('end', () => res.end());
    });
    configure(
      [plainEndpoint(primary.port), plainEndpoint(shadow.port)],
      [
        {
          route: [{ destination: { host: 'backend', subset: 'v1' } }],
          mirror: { host: 'backend', subset: 'v2' },
          mirrorPercentage: { value: 100 },
        },
      ],
      {},
      { v1: [plainEndpoint(primary.port)], v2: [plainEndpoint(shadow.port)] },
    );
    expect(await postInTwoParts('/upload', Buffer.alloc(300_000, 0x62), 1000, 300)).toBe(413);
    // A mirror with the cut body was sent when the client's upload ended, after the 413.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(mirrored).toEqual([]);
    expect(mirrorsInFlight()).toBe(0);
  });
});

describe('circuit breaking', () => {
  it('overflows with 503 UO beyond maxConnections + http1MaxPendingRequests', async () => {
    // Slow enough that all six are in flight before the first answer, even on a loaded host.
    const b = await backend('httpbin-cb', slow(2000));
    configure([b.endpoint], [{ route: [{ destination: { host: 'backend' } }], retries: { attempts: 0 } }], {
      connectionPool: {
        tcp: { maxConnections: 1 },
        http: { http1MaxPendingRequests: 1, maxRequestsPerConnection: 1 },
      },
    });
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => get(`/cb${i}`)));
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(statuses.filter((s) => s === 503)).toHaveLength(4);
    expect(answers.find((a) => a.status === 503)?.body).toContain('overflow');
    const text = await scrape(client.metrics);
    expect(
      metricValue(text, 'istio_requests_total', { response_code: '503', response_flags: 'UO' }),
    ).toBeGreaterThanOrEqual(4);
    expect(metricValue(text, 'meshfed_proxy_upstream_overflow_total')).toBeGreaterThanOrEqual(4);
    // With the burst gone, requests pass again.
    expect((await get('/cb-after')).status).toBe(200);
  });
});

describe('outlier detection', () => {
  it('ejects an endpoint after consecutive 5xx and lets it back after the ejection time', async () => {
    let healthy = false;
    const bad = await backend('bad', (_req, res) => {
      res.writeHead(healthy ? 200 : 500);
      res.end(healthy ? 'bad-recovered\n' : 'boom\n');
    });
    const good = await backend('good');
    configure(
      [bad.endpoint, good.endpoint],
      [{ route: [{ destination: { host: 'backend' } }], retries: { attempts: 0 } }],
      {
        loadBalancer: { simple: 'ROUND_ROBIN' },
        outlierDetection: {
          consecutive5xxErrors: 2,
          interval: '50ms',
          // Outlasts the 20 requests below on a loaded CI host.
          baseEjectionTime: '4s',
          maxEjectionPercent: 100,
        },
      },
    );
    // Round robin: the bad endpoint gets every other request until it has failed twice.
    for (let i = 0; i < 6; i++) await get('/o');
    expect(bad.app.requests).toHaveLength(2);
    const text = await scrape(client.metrics);
    expect(metricValue(text, 'meshfed_proxy_outlier_ejected_endpoints')).toBe(1);
    const before = bad.app.requests.length;
    for (let i = 0; i < 20; i++) expect((await get('/o')).status).toBe(200);
    expect(bad.app.requests).toHaveLength(before);
    healthy = true;
    await waitFor(
      async () => {
        await get('/o');
        return bad.app.requests.length > before || undefined;
      },
      { what: 'the ejected endpoint to get traffic again', timeoutMs: 15_000 },
    );
    expect(metricValue(await scrape(client.metrics), 'meshfed_proxy_outlier_ejected_endpoints')).toBe(0);
  });
});

describe('locality', () => {
  it('prefers its own zone and fails over to the other zone when local endpoints are unhealthy, ejected or absent', async () => {
    let localFails = false;
    const local = await backend('local', (_req, res) => {
      res.writeHead(localFails ? 503 : 200);
      res.end(localFails ? 'down\n' : 'local\n');
    });
    const remote = await backend('remote', undefined, 'zone-b');
    const remoteEndpoint = { ...remote.endpoint, zone: 'zone-b', weight: 3 };
    const policy = {
      outlierDetection: {
        consecutive5xxErrors: 1,
        interval: '50ms',
        baseEjectionTime: '30s',
        maxEjectionPercent: 100,
      },
    };
    const route = [{ route: [{ destination: { host: 'backend' } }], retries: { attempts: 0 } }];
    configure([local.endpoint, remoteEndpoint], route, policy);
    for (let i = 0; i < 20; i++) expect((await get('/l')).body).toBe('local\n');
    expect(remote.app.requests).toHaveLength(0);

    // The zone CP marks the local endpoint unhealthy: traffic leaves the zone.
    configure([{ ...local.endpoint, healthy: false }, remoteEndpoint], route, policy);
    for (let i = 0; i < 5; i++) expect((await get('/l')).body).toBe('remote\n');

    // Healthy again, then ejected by outlier detection: traffic leaves the zone again.
    configure([local.endpoint, remoteEndpoint], route, policy);
    expect((await get('/l')).body).toBe('local\n');
    localFails = true;
    expect((await get('/l')).status).toBe(503);
    for (let i = 0; i < 5; i++) expect((await get('/l')).body).toBe('remote\n');

    // No local endpoint at all.
    configure([remoteEndpoint], route, policy);
    expect((await get('/l')).body).toBe('remote\n');
  });

  it('never leaves the zone when pinned, answering 503 UH instead', async () => {
    const remote = await backend('remote-pinned', undefined, 'zone-b');
    client.handle.applySnapshot(
      sidecarSnapshot({
        ...clientW,
        roots: [mesh.rootPem],
        services: [
          {
            name: 'backend',
            namespace: NS,
            ports: [{ name: 'http', port: 8080, protocol: 'http' }],
            clusters: [{ subset: '_', endpoints: [{ ...remote.endpoint, zone: 'zone-b' }] }],
            locality: { preferLocalZone: true, pinnedToZone: true },
          },
        ],
      }),
    );
    const answer = await get('/pinned');
    expect(answer.status).toBe(503);
    expect(answer.body).toContain('no healthy upstream');
    expect(remote.app.requests).toHaveLength(0);
  });
});

describe('upstream resets', () => {
  it('an app that resets answers 503 UC at the server proxy; the client proxy retries 503 by default', async () => {
    const b = await backend('resetter', (req) => req.socket.destroy());
    configure([b.endpoint], [{ route: [{ destination: { host: 'backend' } }], retries: { attempts: 0 } }]);
    const answer = await get('/reset');
    expect(answer.status).toBe(503);
    expect(answer.body).toContain('connection termination');
    expect(b.app.requests).toHaveLength(1);
    const server = await scrape(b.proxy.metrics);
    expect(
      metricValue(server, 'istio_requests_total', {
        reporter: 'destination',
        response_code: '503',
        response_flags: 'UC',
      }),
    ).toBe(1);
  });

  it('an upstream that resets the connection itself gives 503 UC, and retryOn reset recovers', async () => {
    let resets = 0;
    const raw = net.createServer((socket) => {
      socket.once('data', () => {
        resets++;
        socket.resetAndDestroy();
      });
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    started.push({ close: () => new Promise<void>((resolve) => raw.close(() => resolve())) });
    const rawPort = (raw.address() as net.AddressInfo).port;
    const plain: EndpointConfig = {
      address: '127.0.0.1',
      port: rawPort,
      via: 'plaintext',
      zone: 'zone-a',
      weight: 1,
      healthy: true,
      labels: {},
      identities: [],
    };
    configure([plain], [{ route: [{ destination: { host: 'backend' } }], retries: { attempts: 0 } }]);
    const answer = await get('/raw');
    expect(answer.status).toBe(503);
    expect(answer.body).toContain('reset reason: connection termination');
    const text = await scrape(client.metrics);
    expect(
      metricValue(text, 'istio_requests_total', {
        reporter: 'source',
        response_code: '503',
        response_flags: 'UC',
      }),
    ).toBeGreaterThanOrEqual(1);

    const good = await backend('after-reset');
    configure(
      [plain, good.endpoint],
      [{ route: [{ destination: { host: 'backend' } }], retries: { attempts: 2, retryOn: 'reset' } }],
      {
        loadBalancer: { simple: 'ROUND_ROBIN' },
      },
    );
    for (let i = 0; i < 4; i++) expect((await get('/raw2')).status).toBe(200);
    expect(resets).toBeGreaterThanOrEqual(2);
  });
});

describe('connections between proxies', () => {
  it('sends a request the HTTP/2 upstream refused (REFUSED_STREAM) again at once, outside the retry policy', async () => {
    let streams = 0;
    const h2app = http2.createServer();
    h2app.on('stream', (stream) => {
      stream.on('error', () => undefined);
      // The first stream is refused: the upstream says it did nothing with it.
      if (++streams === 1) stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      else {
        stream.respond({ ':status': 200 });
        stream.end('second stream answered');
      }
    });
    await new Promise<void>((resolve) => h2app.listen(0, '127.0.0.1', resolve));
    started.push({ close: () => new Promise<void>((resolve) => h2app.close(() => resolve())) });
    configure(
      [plainEndpoint((h2app.address() as AddressInfo).port)],
      [{ route: [{ destination: { host: 'backend' } }], retries: { attempts: 0 } }],
      { connectionPool: { http: { h2UpgradePolicy: 'UPGRADE' } } },
    );
    const answer = await get('/refused');
    expect(answer.body).toBe('second stream answered');
    expect(streams).toBe(2);
  });

  it('keeps one warm connection for sequential requests and resumes TLS sessions for new ones', async () => {
    const b = await backend('pooled');
    configure([b.endpoint], [{ route: [{ destination: { host: 'backend' } }] }]);
    for (let i = 0; i < 20; i++) expect((await get('/pool')).status).toBe(200);
    let text = await scrape(b.proxy.metrics);
    expect(metricValue(text, 'meshfed_proxy_inbound_tls_handshakes_total')).toBe(1);
    // One request per connection: every request is a new handshake, resumed after the first.
    configure([b.endpoint], [{ route: [{ destination: { host: 'backend' } }] }], {
      connectionPool: { http: { maxRequestsPerConnection: 1 } },
    });
    for (let i = 0; i < 10; i++) expect((await get('/fresh')).status).toBe(200);
    text = await scrape(b.proxy.metrics);
    expect(metricValue(text, 'meshfed_proxy_inbound_tls_handshakes_total')).toBe(11);
    expect(
      metricValue(text, 'meshfed_proxy_inbound_tls_handshakes_total', { resumed: 'true' }),
    ).toBeGreaterThanOrEqual(9);
    // A resumed handshake carries no certificate: the peer's identity still reaches the access log.
    const peers = await waitFor(
      () => {
        const lines = clientLog.filter((l) => l.includes('"path":"/fresh"'));
        return (
          lines.length === 10 && lines.map((l) => (JSON.parse(l) as { upstream_peer: string }).upstream_peer)
        );
      },
      { what: 'ten access log lines for /fresh' },
    );
    expect(new Set(peers)).toEqual(new Set([b.proxy.credentials.spiffeId]));
  });
});
