/**
 * Bad input never crashes the proxy and never hurts other requests:
 * malformed HTTP → 400, oversized headers → 431, a slowloris client is cut
 * by the header timeout (408), a client that disconnects mid-body frees
 * everything it held, garbage on the mTLS port is refused and counted, and
 * a soak of all of it leaves the heap where it was.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { waitFor } from '../common/wait.js';
import {
  createTestMesh,
  keepAlive,
  metricValue,
  request,
  scrape,
  serviceVia,
  startApp,
  startMeshProxy,
  type TestApp,
  type TestProxy,
} from './proxy-harness.js';

const mesh = createTestMesh();
const NS = 'edge';
const serverW = { workload: 'api', namespace: NS };
const clientW = { workload: 'web', namespace: NS };

let app: TestApp;
let server: TestProxy;
let client: TestProxy;
const aborted: string[] = [];

/** No request is active on either proxy, nor towards the server proxy's cluster. */
async function requestsSettled(): Promise<boolean> {
  const stats = async (proxy: TestProxy): Promise<Record<string, number>> =>
    (await (await fetch(`${proxy.admin}/stats?format=json`)).json()) as Record<string, number>;
  const [outbound, inbound] = await Promise.all([stats(client), stats(server)]);
  return (
    outbound['downstream_rq_active.outbound'] === 0 &&
    outbound[`cluster.outbound|80||api.${NS}.svc.cluster.local.upstream_rq_active`] === 0 &&
    inbound['downstream_rq_active.inbound'] === 0
  );
}

beforeAll(async () => {
  app = await startApp('api', (req, res, body) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`got ${body.length}\n`);
  });
  app.server.on('request', (req: http.IncomingMessage) =>
    req.on('aborted', () => aborted.push(req.url ?? '')),
  );
  const limits = { headersTimeoutMs: 400, maxHeaderBytes: 8 * 1024 };
  server = await startMeshProxy(
    mesh,
    serverW,
    { inboundPorts: [{ port: 80, targetPort: app.port, protocol: 'http', mtls: 'PERMISSIVE' }] },
    { limits },
  );
  client = await startMeshProxy(
    mesh,
    clientW,
    { services: [serviceVia('api', NS, server, serverW)] },
    { limits },
  );
});

afterAll(async () => {
  keepAlive.destroy();
  await client?.close();
  await server?.close();
  await app?.close();
});

/** Writes raw bytes and collects what comes back until the connection closes. */
function raw(port: number, payload: string | Buffer, closeAfterMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const timer = setTimeout(() => socket.destroy(), closeAfterMs);
    socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(data);
    });
    socket.write(payload);
  });
}

function ok(): Promise<number> {
  return request(client.handle.ports.outbound, 'api', '/ok').then((a) => a.status);
}

describe('malformed requests', () => {
  it('answers 400 to garbage on the outbound and the inbound port, and keeps serving', async () => {
    const out = await raw(client.handle.ports.outbound, 'THIS IS NOT HTTP\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.1 400 /);
    const inb = await raw(
      server.handle.ports.inbound,
      'GET / HTTP/1.1\r\nHost: api\r\nContent-Length: nope\r\n\r\n',
    );
    expect(inb).toMatch(/^HTTP\/1\.1 400 /);
    expect(await ok()).toBe(200);
    const text = await scrape(client.metrics);
    expect(
      metricValue(text, 'meshfed_proxy_downstream_errors_total', { reason: 'bad_request' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('answers 431 to oversized headers', async () => {
    const big = `GET / HTTP/1.1\r\nHost: api\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`;
    expect(await raw(client.handle.ports.outbound, big)).toMatch(/^HTTP\/1\.1 431 /);
    expect(await ok()).toBe(200);
  });

  it('answers 400 to a request without a usable Host', async () => {
    expect(await raw(client.handle.ports.outbound, 'GET / HTTP/1.1\r\nConnection: close\r\n\r\n')).toMatch(
      /^HTTP\/1\.1 400 /,
    );
  });

  it('refuses TLS garbage on the mTLS port without a crash', async () => {
    const garbage = Buffer.concat([
      Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05]),
      Buffer.from('hello, not a ClientHello at all'),
    ]);
    expect(await raw(server.handle.ports.inbound, garbage, 1000)).not.toContain('HTTP/1.1 200');
    const text = await scrape(server.metrics);
    expect(metricValue(text, 'meshfed_proxy_inbound_refused_total')).toBeGreaterThanOrEqual(1);
    expect(await ok()).toBe(200);
  });
});

describe('slow and vanishing clients', () => {
  it('cuts a slowloris client with 408 after the header timeout while others are served', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: client.handle.ports.outbound });
    let data = '';
    let closed = false;
    socket.on('data', (d: Buffer) => (data += d.toString()));
    socket.on('close', () => (closed = true));
    socket.on('error', () => undefined);
    socket.write('GET / HTTP/1.1\r\nHost: api\r\n');
    const drip = setInterval(() => {
      if (!socket.destroyed) socket.write('X-Slow: 1\r\n');
    }, 50);
    try {
      for (let i = 0; i < 5; i++) expect(await ok()).toBe(200);
      await waitFor(() => closed || undefined, { what: 'the slow client to be cut', timeoutMs: 5000 });
      expect(data).toMatch(/^HTTP\/1\.1 408 /);
    } finally {
      clearInterval(drip);
      socket.destroy();
    }
    const text = await scrape(client.metrics);
    expect(
      metricValue(text, 'meshfed_proxy_downstream_errors_total', { reason: 'header_timeout' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('frees everything a client held when it disconnects mid-body', async () => {
    for (let i = 0; i < 20; i++) {
      const socket = net.connect({ host: '127.0.0.1', port: client.handle.ports.outbound });
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write(`POST /abort-${i} HTTP/1.1\r\nHost: api\r\nContent-Length: 1000000\r\n\r\n`);
      socket.write(Buffer.alloc(64 * 1024, 97));
      await new Promise((resolve) => setTimeout(resolve, 5));
      socket.destroy();
    }
    await waitFor(requestsSettled, {
      what: 'every counter back to zero',
    });
    // The half-sent bodies never completed at the app.
    expect(app.requests.filter((r) => r.url.startsWith('/abort-'))).toHaveLength(0);
    const text = await scrape(client.metrics);
    expect(
      metricValue(text, 'istio_requests_total', { reporter: 'source', response_flags: 'DC' }),
    ).toBeGreaterThanOrEqual(1);
    expect(await ok()).toBe(200);
  });
});

describe('soak', () => {
  it('keeps the heap flat over thousands of good, bad and abandoned requests', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const round = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const kind = i % 4;
        if (kind === 0) await raw(client.handle.ports.outbound, 'BROKEN\r\n\r\n');
        else if (kind === 1) {
          const socket = net.connect({ host: '127.0.0.1', port: client.handle.ports.outbound });
          await new Promise((resolve) => socket.once('connect', resolve));
          socket.write('POST /soak HTTP/1.1\r\nHost: api\r\nContent-Length: 100000\r\n\r\nabc');
          await new Promise((resolve) => setTimeout(resolve, 1));
          socket.destroy();
        } else {
          expect(await ok()).toBe(200);
        }
      }
    };
    // Measured once the abandoned requests are gone from both proxies, not after a guessed pause.
    const settled = { what: 'every request to finish', timeoutMs: 10_000 };
    await round(400);
    await waitFor(requestsSettled, settled);
    gc();
    const before = process.memoryUsage().heapUsed;
    await round(2000);
    await waitFor(requestsSettled, settled);
    gc();
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    // Two proxies, the app and the clients share this heap: a leak of even 1 KiB per request would show as 2 MB.
    expect(grown).toBeLessThan(2 * 1024 * 1024);
  }, 120_000);
});
