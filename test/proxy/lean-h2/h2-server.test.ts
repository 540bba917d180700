/**
 * The lean HTTP/2 server (proxy/http/lean-h2) against nghttp2, the HTTP/2
 * of Node's own client: requests and bodies in both directions past the
 * flow-control windows, trailers, many streams on one connection, HEAD,
 * oversized and malformed heads, bodies that disagree with their
 * content-length; and against raw frames for what a well-behaved client
 * never sends (a wrong preface, oversized frames, a reset flood, window
 * overflow), each answered with the RFC's error while other connections
 * keep working.
 */

import { afterEach, describe, expect, it } from '@jest/globals';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import type { LeanRequest } from '../../../proxy/http/lean-h1/lean-request.js';
import { H2ErrorCode } from '../../../core/h2/h2-errors.js';
import type { H2Response } from '../../../proxy/http/lean-h2/h2-response.js';
import { LeanH2Server } from '../../../proxy/http/lean-h2/h2-server.js';
import { CLIENT_PREFACE, FrameType, frameHeader, settingsFrame } from '../../../core/h2/frames.js';
import { HpackEncoder } from '../../../core/h2/hpack.js';

const LIMITS = { maxHeaderBytes: 16 * 1024, headersTimeoutMs: 5000, keepAliveTimeoutMs: 5000 };

/** The test app: answers by path, the way the proxy's exchanges use a response. */
function app(req: LeanRequest, res: H2Response): void {
  // /hold: the body is never read and no answer comes (an upstream that is slow to take it).
  if (req.url === '/hold') return;
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    if (req.url === '/huge') {
      // All at once, as many streams' first chunks together would: the write queue takes it.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(Buffer.alloc(16 * 1024 * 1024, 7));
      return;
    }
    if (req.url === '/big') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const part = Buffer.alloc(64 * 1024, 7);
      const parts = 48;
      let sent = 0;
      const pump = (): void => {
        while (sent < parts) {
          sent++;
          if (sent === parts) {
            res.end(part);
            return;
          }
          if (!res.write(part)) {
            res.once('drain', pump);
            return;
          }
        }
      };
      pump();
      return;
    }
    if (req.url === '/trailers') {
      res.writeHead(200, { 'content-type': 'application/grpc' });
      res.write(Buffer.from('message'));
      res.addTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' });
      res.end();
      return;
    }
    res.writeHead(200, {
      ...(req.url === '/dated' ? { date: 'Mon, 01 Jan 2001 00:00:00 GMT' } : {}),
      'x-method': req.method,
      'x-authority': String(req.headers[':authority']),
      'x-cookie': String(req.headers.cookie ?? ''),
      'x-length': String(body.length),
      'content-length': String(body.length),
    });
    res.end(body);
  });
}

const cleanup: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function start(limits = LIMITS): Promise<{ port: number; server: LeanH2Server }> {
  const server = new LeanH2Server(limits, app);
  const tcp = net.createServer((socket) => server.accept(socket, undefined));
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => {
    server.destroy();
    return new Promise<void>((resolve) => tcp.close(() => resolve()));
  });
  return { port: (tcp.address() as AddressInfo).port, server };
}

function connect(port: number): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  cleanup.push(() => {
    session.destroy();
  });
  return session;
}

interface Reply {
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  trailers?: http2.IncomingHttpHeaders;
}

function request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    const chunks: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    stream.on('response', (h) => (head = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ headers: head, body: Buffer.concat(chunks), trailers }));
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
}

/** What happened to a stream the server refused: its reset code. */
function resetCode(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<number> {
  return new Promise((resolve) => {
    const stream = session.request(headers, { endStream: body === undefined });
    stream.on('error', () => undefined);
    stream.on('data', () => undefined);
    stream.on('close', () => resolve(stream.rstCode ?? -1));
    if (body !== undefined) stream.end(body);
  });
}

describe('lean HTTP/2 server with a Node (nghttp2) client', () => {
  it('serves requests with and without bodies, carrying :authority, method and split cookies', async () => {
    const { port } = await start();
    const session = connect(port);
    const get = await request(session, {
      ':path': '/x',
      ':authority': 'svc.ns:8080',
      cookie: ['a=1', 'b=2'],
    });
    expect(get.headers[':status']).toBe(200);
    expect(get.headers['x-method']).toBe('GET');
    expect(get.headers['x-authority']).toBe('svc.ns:8080');
    expect(get.headers['x-cookie']).toBe('a=1; b=2');
    expect(get.headers.date).toMatch(/^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/);
    // A Date the handler gives (an upstream's) is kept, not doubled.
    const dated = await request(session, { ':path': '/dated' });
    expect(dated.headers.date).toBe('Mon, 01 Jan 2001 00:00:00 GMT');
    const post = await request(session, { ':method': 'POST', ':path': '/echo' }, Buffer.from('hello'));
    expect(post.body.toString()).toBe('hello');
    expect(post.headers['x-length']).toBe('5');
  });

  it('moves bodies larger than every flow-control window in both directions', async () => {
    const { port } = await start();
    const session = connect(port);
    const upload = Buffer.alloc(5 * 1024 * 1024 + 17);
    for (let i = 0; i < upload.length; i++) upload[i] = i % 251;
    const echoed = await request(session, { ':method': 'PUT', ':path': '/echo' }, upload);
    expect(echoed.body.equals(upload)).toBe(true);
    const big = await request(session, { ':path': '/big' });
    expect(big.body.length).toBe(48 * 64 * 1024);
  });

  it('sends trailers after the body', async () => {
    const { port } = await start();
    const reply = await request(connect(port), { ':path': '/trailers' });
    expect(reply.body.toString()).toBe('message');
    expect(reply.trailers).toMatchObject({ 'grpc-status': '0', 'grpc-message': 'ok' });
  });

  it('serves 300 concurrent streams on one connection', async () => {
    const { port, server } = await start();
    const session = connect(port);
    const replies = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        request(session, { ':method': 'POST', ':path': '/echo' }, Buffer.from(`body ${i}`)),
      ),
    );
    expect(replies.map((r) => r.body.toString())).toEqual(Array.from({ length: 300 }, (_, i) => `body ${i}`));
    expect(server.sessions.size).toBe(1);
  });

  it('answers HEAD with the head only', async () => {
    const { port } = await start();
    const reply = await request(connect(port), { ':method': 'HEAD', ':path': '/big' });
    expect(reply.headers[':status']).toBe(200);
    expect(reply.body.length).toBe(0);
  });

  it('answers 431 to a head over the limit and keeps serving the connection', async () => {
    const { port } = await start();
    const session = connect(port);
    const big = await request(session, { ':path': '/x', 'x-big': 'v'.repeat(40 * 1024) });
    expect(big.headers[':status']).toBe(431);
    const next = await request(session, { ':path': '/x' });
    expect(next.headers[':status']).toBe(200);
  });

  it('resets a stream whose body disagrees with its content-length, and serves the next', async () => {
    const { port } = await start();
    const session = connect(port);
    const longer = await resetCode(
      session,
      { ':method': 'POST', ':path': '/echo', 'content-length': '3' },
      Buffer.from('more than three'),
    );
    expect(longer).toBe(H2ErrorCode.PROTOCOL_ERROR);
    const shorter = await resetCode(
      session,
      { ':method': 'POST', ':path': '/echo', 'content-length': '30' },
      Buffer.from('short'),
    );
    expect(shorter).toBe(H2ErrorCode.PROTOCOL_ERROR);
    const next = await request(session, { ':method': 'POST', ':path': '/echo' }, Buffer.from('ok'));
    expect(next.body.toString()).toBe('ok');
  });
});

/** A raw client: sends bytes, collects the frames the server sends back. */
async function rawClient(
  port: number,
  options: { allowHalfOpen?: boolean } = {},
): Promise<{
  socket: net.Socket;
  frames: Array<{ type: number; flags: number; stream: number; payload: Buffer }>;
  closed: Promise<void>;
}> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: options.allowHalfOpen === true });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const frames: Array<{ type: number; flags: number; stream: number; payload: Buffer }> = [];
  let buf = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 9) {
      const length = buf.readUIntBE(0, 3);
      if (buf.length < 9 + length) break;
      frames.push({
        type: buf[3] as number,
        flags: buf[4] as number,
        stream: buf.readUInt32BE(5),
        payload: buf.subarray(9, 9 + length),
      });
      buf = buf.subarray(9 + length);
    }
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  cleanup.push(() => {
    socket.destroy();
  });
  return { socket, frames, closed };
}

/** Sends a PING and waits for its ACK: every frame the server sent before it has arrived. */
async function roundTrip(c: Awaited<ReturnType<typeof rawClient>>, tag: string): Promise<void> {
  c.socket.write(Buffer.concat([frameHeader(8, FrameType.PING, 0, 0), Buffer.from(tag.padEnd(8, '.'))]));
  await waitUntil(() =>
    c.frames.some((f) => f.type === FrameType.PING && f.flags === 1 && f.payload.toString().startsWith(tag)),
  );
}

function goawayCode(frames: Array<{ type: number; payload: Buffer }>): number | undefined {
  const goaway = frames.find((f) => f.type === FrameType.GOAWAY);
  return goaway?.payload.readUInt32BE(4);
}

function headersFrame(stream: number, fields: string[], flags: number): Buffer {
  const block = new HpackEncoder().encode(fields);
  return Buffer.concat([frameHeader(block.length, FrameType.HEADERS, flags, stream), block]);
}

const GET = [':method', 'GET', ':scheme', 'http', ':path', '/x', ':authority', 'a'];
const POST = [':method', 'POST', ':scheme', 'http', ':path', '/echo', ':authority', 'a'];

describe('lean HTTP/2 server against frames a client should not send', () => {
  it('closes a connection that does not start with the preface', async () => {
    const { port } = await start();
    const c = await rawClient(port);
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.closed;
    expect(goawayCode(c.frames)).toBe(H2ErrorCode.PROTOCOL_ERROR);
  });

  it('answers PING, refuses an oversized frame with FRAME_SIZE_ERROR, and serves other connections meanwhile', async () => {
    const { port } = await start();
    const c = await rawClient(port);
    c.socket.write(Buffer.concat([CLIENT_PREFACE, settingsFrame([])]));
    c.socket.write(Buffer.concat([frameHeader(8, FrameType.PING, 0, 0), Buffer.from('12345678')]));
    await waitUntil(() => c.frames.some((f) => f.type === FrameType.PING && f.flags === 1));
    expect(c.frames.find((f) => f.type === FrameType.PING)?.payload.toString()).toBe('12345678');
    c.socket.write(frameHeader(20_000, FrameType.DATA, 0, 1));
    c.socket.write(Buffer.alloc(20_000));
    await c.closed;
    expect(goawayCode(c.frames)).toBe(H2ErrorCode.FRAME_SIZE_ERROR);
    const ok = await request(connect(port), { ':path': '/x' });
    expect(ok.headers[':status']).toBe(200);
  });

  it('refuses a stream-window overflow with FLOW_CONTROL_ERROR on that stream only', async () => {
    const { port } = await start();
    const c = await rawClient(port);
    c.socket.write(Buffer.concat([CLIENT_PREFACE, settingsFrame([]), headersFrame(1, GET, 0x4)]));
    const update = Buffer.alloc(4);
    update.writeUInt32BE(0x7fff_ffff);
    c.socket.write(Buffer.concat([frameHeader(4, FrameType.WINDOW_UPDATE, 0, 1), update]));
    await waitUntil(() => c.frames.some((f) => f.type === FrameType.RST_STREAM));
    const rst = c.frames.find((f) => f.type === FrameType.RST_STREAM);
    expect(rst?.stream).toBe(1);
    expect(rst?.payload.readUInt32BE(0)).toBe(H2ErrorCode.FLOW_CONTROL_ERROR);
    expect(c.socket.destroyed).toBe(false);
  });

  it('lets a long-lived connection cancel requests among its others, however many it has cancelled', async () => {
    const { port, server } = await start();
    const session = connect(port);
    for (let i = 0; i < 1200; i++) {
      const cancelled = session.request({ ':path': '/hold' }, { endStream: false });
      cancelled.on('error', () => undefined);
      cancelled.close(http2.constants.NGHTTP2_CANCEL);
      const ok = await request(session, { ':path': '/x' });
      expect(ok.headers[':status']).toBe(200);
    }
    expect(server.sessions.size).toBe(1);
  }, 30_000);

  it('ends a connection whose requests are mostly malformed bodies it makes us reset (MadeYouReset)', async () => {
    const { port } = await start();
    const c = await rawClient(port);
    const encoder = new HpackEncoder();
    const frames: Buffer[] = [CLIENT_PREFACE, settingsFrame([])];
    for (let i = 0; i < 600; i++) {
      const id = 1 + 2 * i;
      const block = encoder.encode([...POST, 'content-length', '1']);
      frames.push(frameHeader(block.length, FrameType.HEADERS, 0x4, id), block);
      // Two bytes where one was declared: we must reset the stream.
      frames.push(frameHeader(2, FrameType.DATA, 0x1, id), Buffer.from('no'));
    }
    c.socket.write(Buffer.concat(frames));
    await c.closed;
    expect(goawayCode(c.frames)).toBe(H2ErrorCode.ENHANCE_YOUR_CALM);
  });

  it('ends a flood of empty CONTINUATION frames', async () => {
    const { port } = await start();
    const c = await rawClient(port);
    const block = new HpackEncoder().encode(GET);
    const frames: Buffer[] = [CLIENT_PREFACE, settingsFrame([])];
    frames.push(frameHeader(block.length, FrameType.HEADERS, 0, 1), block);
    const empty = frameHeader(0, FrameType.CONTINUATION, 0, 1);
    for (let i = 0; i < 100_000; i++) frames.push(empty);
    c.socket.write(Buffer.concat(frames));
    await c.closed;
    expect(goawayCode(c.frames)).toBe(H2ErrorCode.ENHANCE_YOUR_CALM);
  });

  it('ignores DATA on a stream it has closed instead of answering each frame', async () => {
    const { port } = await start();
    const c = await rawClient(port);
    c.socket.write(Buffer.concat([CLIENT_PREFACE, settingsFrame([]), headersFrame(1, GET, 0x5)]));
    // The answer to /x is one HEADERS frame with END_STREAM: stream 1 is closed on both sides.
    await waitUntil(() => c.frames.some((f) => f.type === FrameType.HEADERS && (f.flags & 1) === 1));
    const late: Buffer[] = [];
    for (let i = 0; i < 100; i++) late.push(frameHeader(0, FrameType.DATA, 0, 1));
    c.socket.write(Buffer.concat(late));
    await roundTrip(c, 'late');
    expect(c.frames.filter((f) => f.type === FrameType.RST_STREAM)).toEqual([]);
    expect(c.socket.destroyed).toBe(false);
  });

  it('answers a PING while a large download waits in its socket', async () => {
    const { port } = await start();
    const c = await rawClient(port);
    const open = Buffer.alloc(4);
    open.writeUInt32BE(0x7fff_ffff - 65_535);
    c.socket.write(
      Buffer.concat([
        CLIENT_PREFACE,
        settingsFrame([[0x4, 0x7fff_ffff]]),
        frameHeader(4, FrameType.WINDOW_UPDATE, 0, 0),
        open,
        headersFrame(1, [...GET.slice(0, 4), ':path', '/huge', ':authority', 'a'], 0x5),
      ]),
    );
    // Not reading: 16 MiB fills the socket buffers and the server's write queue.
    c.socket.pause();
    await new Promise((resolve) => setTimeout(resolve, 300));
    c.socket.write(Buffer.concat([frameHeader(8, FrameType.PING, 0, 0), Buffer.from('waiting.')]));
    c.socket.resume();
    // The answer queues behind the download: wait for it, or for the GOAWAY that would refuse it.
    await waitUntil(
      () =>
        c.frames.some((f) => f.type === FrameType.PING && f.flags === 1) ||
        goawayCode(c.frames) !== undefined,
    );
    expect(c.frames.some((f) => f.type === FrameType.PING && f.flags === 1)).toBe(true);
    expect(goawayCode(c.frames)).toBeUndefined();
  });

  it('stops giving connection window once unread request bodies reach it', async () => {
    const { port } = await start();
    const c = await rawClient(port);
    const encoder = new HpackEncoder();
    const opening: Buffer[] = [CLIENT_PREFACE, settingsFrame([])];
    const streams = [1, 3, 5, 7, 9, 11, 13, 15];
    for (const id of streams) {
      const block = encoder.encode([...GET.slice(0, 4), ':path', '/hold', ':authority', 'a']);
      opening.push(frameHeader(block.length, FrameType.HEADERS, 0x4, id), block);
    }
    c.socket.write(Buffer.concat(opening));
    // The server's own window grants (SETTINGS and WINDOW_UPDATEs) decide how much may be sent.
    let sent = 0;
    let connectionWindow = 65_535;
    const streamWindow = new Map(streams.map((id) => [id, 65_535]));
    const chunk = Buffer.alloc(16_384);
    let seen = 0;
    for (let idle = 0; idle < 5;) {
      for (; seen < c.frames.length; seen++) {
        const f = c.frames[seen] as { type: number; stream: number; payload: Buffer };
        if (f.type === FrameType.WINDOW_UPDATE) {
          const inc = f.payload.readUInt32BE(0);
          if (f.stream === 0) connectionWindow += inc;
          else streamWindow.set(f.stream, (streamWindow.get(f.stream) ?? 0) + inc);
        } else if (f.type === FrameType.SETTINGS && f.payload.length > 0) {
          for (let at = 0; at < f.payload.length; at += 6) {
            if (f.payload.readUInt16BE(at) === 0x4) {
              const delta = f.payload.readUInt32BE(at + 2) - 65_535;
              for (const id of streams) streamWindow.set(id, (streamWindow.get(id) ?? 0) + delta);
            }
          }
        }
      }
      let progressed = false;
      for (const id of streams) {
        const room = Math.min(connectionWindow, streamWindow.get(id) ?? 0, chunk.length);
        if (room < chunk.length) continue;
        c.socket.write(Buffer.concat([frameHeader(chunk.length, FrameType.DATA, 0, id), chunk]));
        connectionWindow -= chunk.length;
        streamWindow.set(id, (streamWindow.get(id) ?? 0) - chunk.length);
        sent += chunk.length;
        progressed = true;
      }
      if (progressed) idle = 0;
      else {
        idle++;
        await roundTrip(c, `w${idle}`);
      }
    }
    // Eight streams could take 1 MiB each; the connection takes its 4 MiB window and 2 MiB more.
    expect(sent).toBeGreaterThan(3 * 1024 * 1024);
    expect(sent).toBeLessThanOrEqual(6 * 1024 * 1024);
    expect(c.socket.destroyed).toBe(false);
  }, 20_000);

  it('closes a connection whose client never closes its side, after GOAWAY', async () => {
    const { port, server } = await start({ ...LIMITS, keepAliveTimeoutMs: 200 });
    const c = await rawClient(port, { allowHalfOpen: true });
    c.socket.write(Buffer.concat([CLIENT_PREFACE, settingsFrame([])]));
    // Idle: GOAWAY after 200 ms, then the server lets go even though the client keeps its side open.
    await waitUntil(() => goawayCode(c.frames) === H2ErrorCode.NO_ERROR);
    await waitUntil(() => server.sessions.size === 0);
  });

  it('refuses a :path that is not a path (absolute form), so that authority and host cannot disagree', async () => {
    const { port } = await start();
    const c = await rawClient(port);
    const fields = [
      ':method',
      'GET',
      ':scheme',
      'http',
      ':path',
      'http://admin.internal/secret',
      ':authority',
      'a',
    ];
    c.socket.write(Buffer.concat([CLIENT_PREFACE, settingsFrame([]), headersFrame(1, fields, 0x5)]));
    await waitUntil(() => c.frames.some((f) => f.type === FrameType.RST_STREAM));
    expect(c.frames.find((f) => f.type === FrameType.RST_STREAM)?.payload.readUInt32BE(0)).toBe(
      H2ErrorCode.PROTOCOL_ERROR,
    );
  });

  it('ends a rapid-reset flood with ENHANCE_YOUR_CALM', async () => {
    const { port } = await start();
    const c = await rawClient(port);
    const encoder = new HpackEncoder();
    const frames: Buffer[] = [CLIENT_PREFACE, settingsFrame([])];
    const rst = Buffer.alloc(4);
    rst.writeUInt32BE(H2ErrorCode.CANCEL);
    for (let i = 0; i < 1100; i++) {
      const id = 1 + 2 * i;
      const block = encoder.encode(GET);
      frames.push(frameHeader(block.length, FrameType.HEADERS, 0x4, id), block);
      frames.push(frameHeader(4, FrameType.RST_STREAM, 0, id), rst);
    }
    c.socket.write(Buffer.concat(frames));
    await c.closed;
    expect(goawayCode(c.frames)).toBe(H2ErrorCode.ENHANCE_YOUR_CALM);
  });

  it('refuses DATA on a stream never opened, and HEADERS with an upper-case name', async () => {
    const { port } = await start();
    const bad = await rawClient(port);
    bad.socket.write(
      Buffer.concat([CLIENT_PREFACE, settingsFrame([]), headersFrame(1, [...GET, 'X-Upper', '1'], 0x5)]),
    );
    await waitUntil(() => bad.frames.some((f) => f.type === FrameType.RST_STREAM));
    expect(bad.frames.find((f) => f.type === FrameType.RST_STREAM)?.payload.readUInt32BE(0)).toBe(
      H2ErrorCode.PROTOCOL_ERROR,
    );
    bad.socket.write(Buffer.concat([frameHeader(2, FrameType.DATA, 0, 9), Buffer.from('hi')]));
    await bad.closed;
    expect(goawayCode(bad.frames)).toBe(H2ErrorCode.PROTOCOL_ERROR);
  });
});

async function waitUntil(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in 5 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
