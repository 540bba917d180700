/**
 * The lean HTTP/2 client (proxy/upstream/upstream-h2-pool) against
 * nghttp2, the HTTP/2 of Node's own server: one connection for many
 * requests, bodies past the flow-control windows, trailers, the peer's
 * MAX_CONCURRENT_STREAMS, GOAWAY while requests are in flight, resets, and
 * the failure kinds retries depend on.
 */

import { afterEach, describe, expect, it } from '@jest/globals';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { settingsFrame } from '../../../core/h2/frames.js';
import { UpstreamFailure } from '../../../proxy/upstream/upstream-attempt.js';
import { H2Pool } from '../../../proxy/upstream/upstream-h2-pool.js';
import type { PoolSettings } from '../../../proxy/upstream/upstream-pool-types.js';
import { poolSettings } from '../../common/pool-settings.js';
import { Recorder } from '../../common/attempt-recorder.js';
import { freePort } from '../../../core/free-port.js';

const cleanup: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function settings(port: number, extra: Partial<PoolSettings> = {}): PoolSettings {
  return poolSettings(port, { h2: true, ...extra });
}

interface Upstream {
  port: number;
  /** Streams the server has received. */
  streams: number;
  sessions: http2.ServerHttp2Session[];
  server: http2.Http2Server;
}

async function upstream(
  handler: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void,
  options: http2.ServerOptions = {},
): Promise<Upstream> {
  const server = http2.createServer(options);
  const sessions: http2.ServerHttp2Session[] = [];
  const up: Upstream = { port: 0, streams: 0, sessions, server };
  server.on('session', (s) => sessions.push(s));
  server.on('stream', (stream, headers) => {
    up.streams++;
    stream.on('error', () => undefined);
    handler(stream, headers);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => {
    for (const s of sessions) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  up.port = (server.address() as AddressInfo).port;
  return up;
}

function pool(port: number, extra: Partial<PoolSettings> = {}): H2Pool {
  const p = new H2Pool(settings(port, extra), undefined);
  cleanup.push(() => p.destroy());
  return p;
}

/** Echoes method, path, authority and body; `/slow` answers after 100 ms. */
function echo(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => {
    const reply = (): void => {
      if (stream.destroyed) return;
      stream.respond(
        {
          ':status': 200,
          'x-method': String(headers[':method']),
          'x-path': String(headers[':path']),
          'x-authority': String(headers[':authority']),
          'x-custom': String(headers['x-custom'] ?? ''),
        },
        { waitForTrailers: headers[':path'] === '/trailers' },
      );
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.concat(chunks));
    };
    if (headers[':path'] === '/slow') setTimeout(reply, 100);
    else reply();
  });
}

function send(
  p: H2Pool,
  method: string,
  path: string,
  body?: Buffer,
  headers: Record<string, string> = {},
): Recorder {
  const r = new Recorder();
  const a = p.open(r, method, path, 'svc.ns:80', { ...headers });
  if (body !== undefined) a.write(body);
  a.end();
  return r;
}

describe('lean HTTP/2 client with a Node (nghttp2) server', () => {
  it('sends the request head and body and reads the response, many requests on one connection', async () => {
    const up = await upstream(echo);
    const p = pool(up.port);
    const results = await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) => send(p, 'POST', `/echo/${i}`, Buffer.from(`b${i}`), { 'x-custom': 'yes' }).done,
      ),
    );
    for (const [i, r] of results.entries()) {
      expect(r.status).toBe(200);
      expect(r.headers?.['x-path']).toBe(`/echo/${i}`);
      expect(r.headers?.['x-authority']).toBe('svc.ns:80');
      expect(r.headers?.['x-custom']).toBe('yes');
      expect(r.body?.toString()).toBe(`b${i}`);
    }
    expect(up.sessions.length).toBe(1);
    expect(p.connections()).toBe(1);
  });

  it('sends a request without a body as one HEADERS frame with END_STREAM', async () => {
    let endAfterHeaders: boolean | undefined;
    const up = await upstream((stream, headers) => {
      endAfterHeaders = stream.endAfterHeaders;
      echo(stream, headers);
    });
    const r = await send(pool(up.port), 'GET', '/x').done;
    expect(r.status).toBe(200);
    expect(endAfterHeaders).toBe(true);
  });

  it('moves a body larger than the windows both ways', async () => {
    const up = await upstream(echo);
    const body = Buffer.alloc(3 * 1024 * 1024 + 5, 9);
    const r = await send(pool(up.port), 'PUT', '/echo', body).done;
    expect(r.body?.length).toBe(body.length);
    expect(r.body?.equals(body)).toBe(true);
  });

  it('hands response trailers to the attempt', async () => {
    const up = await upstream(echo);
    const r = await send(pool(up.port), 'POST', '/trailers', Buffer.from('x')).done;
    expect(r.trailers).toMatchObject({ 'grpc-status': '0' });
  });

  it("keeps to the server's MAX_CONCURRENT_STREAMS by opening more connections", async () => {
    const up = await upstream(echo, { settings: { maxConcurrentStreams: 2 } });
    const p = pool(up.port);
    // The first request learns the setting; the rest must respect it.
    await send(p, 'GET', '/x').done;
    const results = await Promise.all(Array.from({ length: 6 }, () => send(p, 'GET', '/slow').done));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(up.sessions.length).toBeGreaterThanOrEqual(3);
  });

  it('finishes in-flight requests after GOAWAY and sends new ones on a new connection', async () => {
    const up = await upstream(echo);
    const p = pool(up.port);
    await send(p, 'GET', '/x').done;
    const inFlight = send(p, 'GET', '/slow');
    await waitUntil(() => up.streams === 2);
    (up.sessions[0] as http2.ServerHttp2Session).close();
    // The response follows the GOAWAY on the same connection: by then the client has read it.
    expect((await inFlight.done).status).toBe(200);
    const after = await send(p, 'GET', '/x').done;
    expect(after.status).toBe(200);
    expect(up.sessions.length).toBe(2);
  });

  it('reports streams past the last one a GOAWAY names as REFUSED_STREAM (safe to send again)', async () => {
    const up = await upstream(echo);
    const p = pool(up.port);
    await send(p, 'GET', '/x').done;
    const caught = send(p, 'GET', '/slow');
    await waitUntil(() => up.streams === 2);
    // Stream 1 was the first request; stream 3 is in flight and the GOAWAY says only 1 was processed.
    (up.sessions[0] as http2.ServerHttp2Session).goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
    const outcome = await caught.done;
    expect(outcome.failure?.kind).toBe(UpstreamFailure.REFUSED_STREAM);
  });

  it('reports a stream the server resets as RESET, and REFUSED_STREAM as such', async () => {
    const up = await upstream((stream, headers) => {
      if (headers[':path'] === '/refuse') stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      else stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    });
    const p = pool(up.port);
    const reset = await send(p, 'GET', '/x').done;
    expect(reset.failure?.kind).toBe(UpstreamFailure.RESET);
    const refused = await send(p, 'GET', '/refuse').done;
    expect(refused.failure?.kind).toBe(UpstreamFailure.REFUSED_STREAM);
  });

  it('reports a request lost with a reused connection that closed without GOAWAY as a stale connection', async () => {
    let streams = 0;
    const sockets: net.Socket[] = [];
    const up = await upstream((stream, headers) => {
      // The first request is answered; the connection then dies under the second, no GOAWAY, no answer.
      if (++streams === 1) echo(stream, headers);
      else for (const socket of sockets) socket.destroy();
    });
    up.server.on('connection', (socket: net.Socket) => sockets.push(socket));
    const p = pool(up.port);
    expect((await send(p, 'GET', '/x').done).status).toBe(200);
    const lost = await send(p, 'GET', '/x').done;
    expect(lost.failure?.kind).toBe(UpstreamFailure.STALE_CONNECTION);
    // On a connection that never carried anything before, the same loss is a reset.
    const fresh = await send(pool(up.port), 'GET', '/x').done;
    expect(fresh.failure?.kind).toBe(UpstreamFailure.RESET);
  });

  it('reports a connection that cannot be made as CONNECT', async () => {
    const port = await freePort();
    const r = await send(pool(port), 'GET', '/x').done;
    expect(r.failure?.kind).toBe(UpstreamFailure.CONNECT);
  });

  it('cancels the stream when the attempt is aborted, and the connection stays usable', async () => {
    let cancelled = false;
    const up = await upstream((stream, headers) => {
      if (headers[':path'] === '/hang') {
        stream.on('close', () => (cancelled = stream.rstCode === http2.constants.NGHTTP2_CANCEL));
        return;
      }
      echo(stream, headers);
    });
    const p = pool(up.port);
    const r = new (Recorder as new () => Recorder)();
    const a = p.open(r, 'GET', '/hang', 'svc', {});
    a.end();
    await new Promise((resolve) => setTimeout(resolve, 30));
    a.abort();
    await waitUntil(() => cancelled);
    expect((await send(p, 'GET', '/x').done).status).toBe(200);
    expect(up.sessions.length).toBe(1);
  });

  it('closes a connection that has had no stream for idleTimeout, and opens a new one for the next request', async () => {
    const up = await upstream(echo);
    const p = pool(up.port, { idleTimeoutMs: 200 });
    expect((await send(p, 'GET', '/x').done).status).toBe(200);
    expect(p.connections()).toBe(1);
    await waitUntil(() => p.connections() === 0);
    expect((await send(p, 'GET', '/x').done).status).toBe(200);
    expect(up.sessions.length).toBe(2);
  });

  it('keeps a complete response whole when the server resets the stream after it (an early answer)', async () => {
    // The server answers before the request body is in and resets the rest (RFC 9113 8.1).
    const up = await upstream((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('early answer');
    });
    const p = pool(up.port);
    const recorders = Array.from({ length: 30 }, () => {
      const r = new Recorder();
      const a = p.open(r, 'POST', '/early', 'svc', {});
      a.write(Buffer.alloc(1024));
      return r;
    });
    const outcomes = await Promise.all(recorders.map((r) => r.done));
    for (const o of outcomes) {
      expect(o.aborted).toBeUndefined();
      expect(o.body?.toString()).toBe('early answer');
    }
  });

  it('refuses a server that offers push (ENABLE_PUSH 1), failing the request', async () => {
    const raw = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.write(settingsFrame([[0x2, 1]])));
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => raw.close(() => resolve())));
    const r = await send(pool((raw.address() as AddressInfo).port), 'GET', '/x').done;
    expect(r.failure?.kind).toBe(UpstreamFailure.RESET);
    expect(r.failure?.err.message).toMatch(/ENABLE_PUSH/);
  });

  it('fails an attempt whose headers HTTP/2 cannot carry, without sending it', async () => {
    const up = await upstream(echo);
    const r = await send(pool(up.port), 'GET', '/x', undefined, { 'x-bad': 'a\r\nb' }).done;
    expect(r.failure?.kind).toBe(UpstreamFailure.RESET);
    expect(r.failure?.err.message).toMatch(/x-bad/);
  });
});

async function waitUntil(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in 5 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
