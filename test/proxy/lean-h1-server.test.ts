/**
 * The lean HTTP/1.1 server on a real socket, with a real `node:http`
 * server behind it for what it hands over: framing of what it writes
 * (length, chunked, HEAD, 204, trailers, Date and Connection headers),
 * keep-alive and pipelining, bodies split across reads, a client that
 * leaves mid-body, idle connections closed, and every request it does not
 * take — chunked, partial, malformed, oversized — answered by `node:http`
 * as before.
 */

import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import net from 'node:net';
import { LeanH1Server } from '../../proxy/http/lean-h1/lean-server.js';
import type { LeanRequest } from '../../proxy/http/lean-h1/lean-request.js';
import type { LeanResponse } from '../../proxy/http/lean-h1/lean-response.js';
import { createHttp1Server } from '../../proxy/http/http-servers.js';
import { handOverToHttp1 } from '../../proxy/http/protocol-sniff.js';
import { waitFor } from '../common/wait.js';

type Handler = (req: LeanRequest, res: LeanResponse) => void;

const limits = { maxHeaderBytes: 4096, headersTimeoutMs: 2000, keepAliveTimeoutMs: 300 };
let handler: Handler;
let lean: LeanH1Server;
let server: net.Server;
let port: number;
/** Every server-side socket, so that nothing outlives the suite. */
const accepted = new Set<net.Socket>();
/** Requests node:http answered (after a hand-over). */
const nodeSeen: string[] = [];

/** Answers with what the request was: method, url and body, so the client sees who parsed what. */
const echo: Handler = (req, res) => {
  const chunks: Buffer[] = [];
  const reply = (): void => {
    const body = `${req.method} ${req.url} ${Buffer.concat(chunks).toString()}`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  if (req.headers['content-length'] === undefined) reply();
  else {
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', reply);
  }
};

beforeAll(async () => {
  // node:http as the proxy's listeners make it (with the same header limit).
  const node = createHttp1Server(limits);
  node.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    nodeSeen.push(`${req.method ?? ''} ${req.url ?? ''}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () =>
      res.end(`node ${req.method ?? ''} ${req.url ?? ''} ${Buffer.concat(chunks).toString()}`),
    );
  });
  lean = new LeanH1Server(limits, {
    onRequest: (req, res) => handler(req, res),
    handOver: (socket, unread) => handOverToHttp1(socket, unread, node),
  });
  server = net.createServer((socket) => {
    accepted.add(socket);
    socket.once('close', () => accepted.delete(socket));
    lean.accept(socket, undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as net.AddressInfo).port;
});

afterEach(() => {
  handler = echo;
  nodeSeen.length = 0;
});

afterAll(async () => {
  lean.close();
  for (const socket of accepted) socket.destroy();
  await new Promise((resolve) => server.close(resolve));
});

/** A raw client: writes `parts` (pausing `gapMs` between them) and reads until `done` says so or the server closes. */
async function exchange(
  parts: Array<string | Buffer>,
  done: (text: string) => boolean,
  gapMs = 0,
): Promise<{ text: string; closed: boolean }> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  let text = '';
  let closed = false;
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => (text += chunk));
  socket.on('close', () => (closed = true));
  for (const part of parts) {
    socket.write(part);
    if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
  }
  await waitFor(() => done(text) || closed, { what: `an answer to ${JSON.stringify(parts).slice(0, 80)}` });
  socket.destroy();
  return { text, closed };
}

const count = (text: string, what: string): number => text.split(what).length - 1;
const get = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: a\r\n${extra}\r\n`;

describe('the lean HTTP/1.1 server', () => {
  beforeAll(() => {
    handler = echo;
  });

  it('answers keep-alive and pipelined requests in order, with Node’s Date and Connection headers', async () => {
    const post = 'POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello';
    const { text } = await exchange([get('/one') + post + get('/three')], (t) => t.includes('GET /three'));
    expect(count(text, 'HTTP/1.1 200 OK')).toBe(3);
    expect(text.indexOf('GET /one')).toBeLessThan(text.indexOf('POST /two hello'));
    expect(text.indexOf('POST /two hello')).toBeLessThan(text.indexOf('GET /three'));
    expect(text).toMatch(/\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n/);
    expect(text).toContain('\r\nConnection: keep-alive\r\nKeep-Alive: timeout=0\r\n');
    expect(nodeSeen).toEqual([]);
  });

  it('reads a content-length body that arrives in pieces', async () => {
    const { text } = await exchange(
      ['POST /parts HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhel', 'lo ', 'world'],
      (t) => t.includes('world'),
      20,
    );
    expect(text).toContain('POST /parts hello world');
  });

  it('frames a body without a length as chunked, with trailers; HEAD and 204 carry no body', async () => {
    handler = (req, res) => {
      if (req.url === '/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('abc');
        res.write(Buffer.alloc(20_000, 120));
        res.addTrailers({ 'x-checksum': 'ok' });
        res.end('z');
      } else if (req.url === '/empty') {
        res.writeHead(204, {});
        res.end();
      } else {
        res.writeHead(200, { 'content-length': 3 });
        res.end('abc');
      }
    };
    const chunked = await exchange([get('/chunked')], (t) => t.endsWith('\r\n0\r\nx-checksum: ok\r\n\r\n'));
    expect(chunked.text).toContain('Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4e20\r\n');
    expect(chunked.text).toContain('\r\n1\r\nz\r\n0\r\nx-checksum: ok\r\n\r\n');

    const head = await exchange(['HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n' + get('/empty')], (t) =>
      t.includes('204 No Content'),
    );
    // HEAD: the length of the body it would have had, no body, and the next response right after.
    expect(head.text).toMatch(
      /^HTTP\/1\.1 200 OK\r\ncontent-length: 3\r\n[^]*?\r\n\r\nHTTP\/1\.1 204 No Content\r\n/,
    );
    expect(head.text).not.toContain('abc');
    expect(head.text).not.toContain('Transfer-Encoding');
  });

  it('refuses a header value that would break the framing, as Node’s writeHead does', async () => {
    let thrown: unknown;
    handler = (_req, res) => {
      try {
        res.writeHead(200, { 'x-bad': 'a\r\nInjected: yes' });
      } catch (err) {
        thrown = err;
      }
      res.writeHead(502, { 'content-length': 0 });
      res.end();
    };
    const { text } = await exchange([get('/bad')], (t) => t.includes('\r\n\r\n'));
    expect(text).toMatch(/^HTTP\/1\.1 502 /);
    expect(text).not.toContain('Injected');
    expect((thrown as Error).message).toMatch(/invalid characters in the value of header x-bad/);
  });

  it('closes the connection after a response to Connection: close, and when the handler says so', async () => {
    const asked = await exchange([get('/bye', 'Connection: close\r\n') + get('/never')], () => false);
    expect(asked.closed).toBe(true);
    expect(asked.text).toContain('\r\nConnection: close\r\n');
    expect(count(asked.text, 'HTTP/1.1 200')).toBe(1);

    handler = (req, res) => {
      res.shouldKeepAlive = false;
      echo(req, res);
    };
    const draining = await exchange([get('/drain') + get('/never')], () => false);
    expect(draining.closed).toBe(true);
    expect(count(draining.text, 'HTTP/1.1 200')).toBe(1);
  });

  it('hands what it does not take to node:http, for the rest of the connection', async () => {
    // Chunked request body, then a plain request on the same connection: both node's.
    const chunked = 'POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';
    const first = await exchange([get('/lean') + chunked + get('/after')], (t) =>
      t.includes('node GET /after'),
    );
    expect(first.text).toContain('GET /lean');
    expect(first.text).toContain('node POST /c abc');
    expect(nodeSeen).toEqual(['POST /c', 'GET /after']);

    // A head cut in two: node waits for the rest.
    nodeSeen.length = 0;
    const split = await exchange(
      ['GET /slow HTTP/1.1\r\nHo', 'st: a\r\n\r\n'],
      (t) => t.includes('node GET'),
      30,
    );
    expect(split.text).toContain('node GET /slow');

    // Malformed and oversized: node's 400 and 431.
    const bad = await exchange(['GET /x HTTP/1.1\r\nHost: a\r\nBad Header: 1\r\n\r\n'], (t) =>
      t.includes('\r\n\r\n'),
    );
    expect(bad.text).toMatch(/^HTTP\/1\.1 400 Bad Request/);
    const big = await exchange([get('/big', `X-Big: ${'a'.repeat(8000)}\r\n`)], (t) =>
      t.includes('\r\n\r\n'),
    );
    expect(big.text).toMatch(/^HTTP\/1\.1 431 /);
  });

  it('tells the response, and the request, when the client leaves mid-body', async () => {
    let started = false;
    let closed = false;
    let requestClosed = false;
    handler = (req, res) => {
      started = true;
      req.on('data', () => undefined);
      req.on('close', () => (requestClosed = true));
      res.on('close', () => (closed = true));
    };
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('POST /gone HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc');
    await waitFor(() => started || undefined, { what: 'the request' });
    socket.destroy();
    await waitFor(() => (closed && requestClosed) || undefined, {
      what: 'close on the response and the request',
    });
  });

  it('stops reading a body nobody reads, and reads on once someone does', async () => {
    const size = 64 * 1024 * 1024;
    let request: LeanRequest | undefined;
    handler = (req) => (request = req);
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`POST /held HTTP/1.1\r\nHost: a\r\nContent-Length: ${size}\r\n\r\n`);
    const chunk = Buffer.alloc(256 * 1024, 97);
    let written = 0;
    const writeSome = async (until: number, stallMs: number): Promise<boolean> => {
      while (written < until) {
        const part = chunk.subarray(0, Math.min(chunk.length, until - written));
        written += part.length;
        if (socket.write(part)) continue;
        const drained = await Promise.race([
          new Promise<boolean>((resolve) => socket.once('drain', () => resolve(true))),
          new Promise<boolean>((resolve) => setTimeout(() => resolve(false), stallMs)),
        ]);
        if (!drained) return false;
      }
      return true;
    };
    // Nobody reads: once the kernel's buffers are full, writing stalls well short of the body.
    expect(await writeSome(size, 500)).toBe(false);
    expect(written).toBeLessThan(size / 2);
    let received = 0;
    request?.on('data', (c: Buffer) => (received += c.length));
    await new Promise((resolve) => socket.once('drain', resolve));
    // Reading resumed: the rest of the body goes through.
    expect(await writeSome(size, 10_000)).toBe(true);
    await waitFor(() => received === size || undefined, { what: 'the whole body' });
    socket.destroy();
  });

  it('ends a body of content-length 00, and keeps header names that are Object members as plain values', async () => {
    const zero = 'POST /zero HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\nConstructor: x\r\n\r\n';
    const { text } = await exchange([zero], (t) => t.includes('POST /zero'));
    expect(text).toContain('POST /zero ');
    handler = (req, res) => res.end(`${typeof req.headers.constructor} ${String(req.headers.constructor)}`);
    const named = await exchange([get('/n', 'Constructor: x\r\n')], (t) => t.includes('string'));
    expect(named.text).toContain('string x');
  });

  it('hands a repeated content-length to node:http, which refuses it', async () => {
    const twice = 'POST /twice HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc';
    const { text } = await exchange([twice], (t) => t.includes('\r\n\r\n'));
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
  });

  it('writes trailers after a large last chunk as latin1, and a coding it was given frames nothing', async () => {
    handler = (req, res) => {
      if (req.url === '/gzip') {
        res.writeHead(200, { 'transfer-encoding': 'gzip' });
        res.end('not really gzip');
        return;
      }
      res.writeHead(200, {});
      res.addTrailers({ 'x-name': 'caf\u00e9' });
      res.end(Buffer.alloc(20_000, 121));
    };
    const big = await exchange([get('/trailers')], (t) => t.endsWith('\r\n\r\n') && t.includes('x-name'));
    expect(big.text).toContain('\r\n0\r\nx-name: caf\u00e9\r\n\r\n');
    // A coding other than chunked: the body is delimited by the close, as Node does it.
    const gzip = await exchange([get('/gzip')], () => false);
    expect(gzip.closed).toBe(true);
    expect(gzip.text).toContain('\r\ntransfer-encoding: gzip\r\n');
    expect(gzip.text).toContain('\r\nConnection: close\r\n');
    expect(gzip.text.endsWith('\r\n\r\nnot really gzip')).toBe(true);
  });

  it('answering before the body: the rest is dropped and the connection serves the next request', async () => {
    // 70 KiB: all of it arrives (in two reads), none of it read, more than the 64 KiB a request holds
    // before the socket is paused; the answer comes later.
    handler = (req, res) => {
      if (req.url === '/early') setTimeout(() => res.end('early'), 100);
      else echo(req, res);
    };
    const body = Buffer.alloc(70 * 1024, 98);
    const early = `POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`;
    const { text } = await exchange([early, body, get('/next')], (t) => t.includes('GET /next'));
    expect(text).toContain('early');
    expect(text).toContain('GET /next');
  });

  it('with Connection: close, answering before the body ends the connection', async () => {
    handler = (_req, res) => res.end('refused');
    const head = 'POST /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 50000000\r\n\r\n';
    const { text, closed } = await exchange([head, Buffer.alloc(1024 * 1024, 99)], () => false);
    expect(closed).toBe(true);
    expect(text).toContain('refused');
    // The server's side of it is gone too, not left half-closed on a paused socket.
    await waitFor(() => accepted.size === 0 || undefined, { what: 'every server-side socket to close' });
  });

  it('closes idle keep-alive connections after the keep-alive timeout', async () => {
    const { text, closed } = await exchange([get('/idle')], () => false);
    expect(text).toContain('GET /idle');
    expect(closed).toBe(true);
  });
});
