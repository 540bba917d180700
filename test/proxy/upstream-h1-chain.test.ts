/**
 * The lean HTTP/1.1 client end to end: client proxy → mTLS → server proxy
 * → an app that answers with exact bytes. Framings the client must relay
 * unchanged through both hops (chunked with trailers, until-close, a large
 * content-length body), request bodies in both framings, and a malformed
 * answer that must become 503 UC rather than reach the caller.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import {
  createTestMesh,
  keepAlive,
  metricValue,
  request,
  scrape,
  serviceVia,
  startMeshProxy,
  type TestProxy,
} from './proxy-harness.js';

const mesh = createTestMesh();
const NS = 'lean';
const serverW = { workload: 'raw', namespace: NS };
const clientW = { workload: 'caller', namespace: NS };
const BIG = Buffer.alloc(8 * 1024 * 1024 + 17, 'x');

let raw: net.Server;
let server: TestProxy;
let client: TestProxy;
const bodies: Array<{ framing: string; body: string }> = [];

function answer(socket: net.Socket, head: string, body: string): void {
  const path = head.split(' ')[1] ?? '/';
  if (path === '/chunked') {
    socket.write(
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n' +
        '4\r\nwiki\r\n5\r\npedia\r\n0\r\nx-checksum: abc123\r\n\r\n',
    );
  } else if (path === '/until-close') {
    socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it, until the end');
  } else if (path === '/big') {
    socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${BIG.length}\r\n\r\n`);
    socket.write(BIG);
  } else if (path === '/garbage') {
    socket.write('HTTP/1.1 2OO OK\r\n\r\n');
  } else {
    const framing = /transfer-encoding: chunked/i.test(head) ? 'chunked' : 'length';
    bodies.push({ framing, body });
    socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
  }
}

/** A raw app: reads a head and a body (content-length or chunked, simple cases), answers by path. */
function rawApp(): net.Server {
  return net.createServer((socket) => {
    socket.on('error', () => undefined);
    let buf = '';
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end);
        const rest = buf.slice(end + 4);
        const cl = /content-length: (\d+)/i.exec(head);
        if (cl !== null) {
          const n = Number(cl[1]);
          if (rest.length < n) return;
          buf = rest.slice(n);
          answer(socket, head, rest.slice(0, n));
        } else if (/transfer-encoding: chunked/i.test(head)) {
          const last = rest.indexOf('0\r\n\r\n');
          if (last < 0) return;
          let body = '';
          let pos = 0;
          while (pos < last) {
            const eol = rest.indexOf('\r\n', pos);
            const size = parseInt(rest.slice(pos, eol), 16);
            body += rest.slice(eol + 2, eol + 2 + size);
            pos = eol + 2 + size + 2;
          }
          buf = rest.slice(last + 5);
          answer(socket, head, body);
        } else {
          buf = rest;
          answer(socket, head, '');
        }
      }
    });
  });
}

beforeAll(async () => {
  raw = rawApp();
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  const appPort = (raw.address() as AddressInfo).port;
  server = await startMeshProxy(mesh, serverW, {
    inboundPorts: [{ port: 8080, targetPort: appPort, protocol: 'http', mtls: 'STRICT' }],
  });
  client = await startMeshProxy(mesh, clientW, {
    services: [
      serviceVia('raw', NS, server, serverW, { ports: [{ name: 'http', port: 8080, protocol: 'http' }] }),
    ],
  });
});

afterAll(async () => {
  keepAlive.destroy();
  await client?.close();
  await server?.close();
  await new Promise<void>((resolve) => raw.close(() => resolve()));
});

/** GET through the client proxy, with the response trailers. */
function getWithTrailers(
  path: string,
): Promise<{ status: number; body: Buffer; trailers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port: client.handle.ports.outbound, path, headers: { host: 'raw:8080' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), trailers: res.trailers }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
  });
}

describe('lean HTTP/1.1 client through two proxies', () => {
  it('relays a chunked body and its trailers through both hops', async () => {
    const r = await getWithTrailers('/chunked');
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('wikipedia');
    expect(r.trailers['x-checksum']).toBe('abc123');
  });

  it('relays a body framed by the connection closing', async () => {
    const r = await getWithTrailers('/until-close');
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('all of it, until the end');
  });

  it('relays an 8 MiB content-length body byte for byte to a client that pauses', async () => {
    const body = await new Promise<Buffer>((resolve, reject) => {
      const req = http.get(
        {
          host: '127.0.0.1',
          port: client.handle.ports.outbound,
          path: '/big',
          headers: { host: 'raw:8080' },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let paused = false;
          res.on('data', (c: Buffer) => {
            chunks.push(c);
            if (!paused) {
              // Stop reading for a moment: both proxies must hold back rather than buffer 8 MiB.
              paused = true;
              res.pause();
              setTimeout(() => res.resume(), 50);
            }
          });
          res.on('end', () => resolve(Buffer.concat(chunks)));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
    });
    expect(body.length).toBe(BIG.length);
    expect(body.equals(BIG)).toBe(true);
  });

  it('keeps serving after a client goes away in the middle of a body', async () => {
    await new Promise<void>((resolve, reject) => {
      const req = http.get(
        {
          host: '127.0.0.1',
          port: client.handle.ports.outbound,
          path: '/big',
          headers: { host: 'raw:8080' },
        },
        (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        },
      );
      req.on('error', (err) =>
        (err as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(err),
      );
    });
    for (let i = 0; i < 3; i++) {
      const r = await getWithTrailers('/chunked');
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('wikipedia');
    }
  });

  it('sends request bodies with a length or chunked, as the caller framed them', async () => {
    bodies.length = 0;
    const withLength = await request(client.handle.ports.outbound, 'raw:8080', '/echo', {
      method: 'POST',
      body: 'sized body',
    });
    expect(withLength.body).toBe('sized body');
    const chunked = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: client.handle.ports.outbound,
          path: '/echo',
          method: 'POST',
          headers: { host: 'raw:8080' },
          agent: keepAlive,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (c: string) => (text += c));
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      req.write('streamed ');
      setImmediate(() => req.end('in two parts'));
    });
    expect(chunked).toBe('streamed in two parts');
    expect(bodies).toEqual([
      { framing: 'length', body: 'sized body' },
      { framing: 'chunked', body: 'streamed in two parts' },
    ]);
  });

  it('answers 503 UC for a malformed upstream response, and keeps serving', async () => {
    const bad = await request(client.handle.ports.outbound, 'raw:8080', '/garbage');
    expect(bad.status).toBe(503);
    expect(bad.body).not.toContain('2OO');
    const text = await scrape(server.metrics);
    expect(
      metricValue(text, 'istio_requests_total', {
        reporter: 'destination',
        response_code: '503',
        response_flags: 'UC',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect((await getWithTrailers('/chunked')).status).toBe(200);
  });
});
