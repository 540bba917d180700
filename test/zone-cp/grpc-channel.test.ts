/**
 * The workload side's gRPC channel (core/grpc/grpc-channel.ts) against a
 * real HTTP/2 TLS server that answers each path the way a server, or a
 * broken one, can: what a caller sees is the status gRPC defines for each
 * (the zone CP's own grpc-js server is covered by the MDS and CA suites).
 */

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { generateKeyPairSync } from 'node:crypto';
import http2, { type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { requestCertificate } from '../../core/ca/ca-client.js';
import { zoneCallMetadata, zoneChannel } from '../../core/ca/zone-channel.js';
import type { GrpcCall } from '../../core/grpc/grpc-channel.js';
import { GrpcCode, GrpcStatusError } from '../../core/grpc/grpc-codes.js';
import { encodeGrpcFrame, GrpcFrameDecoder } from '../../core/grpc/grpc-frames.js';
import { MdsClient } from '../../core/mds/mds-client.js';
import { createTestMesh } from '../common/pki-fixtures.js';
import { waitFor } from '../common/wait.js';
import { freePort } from '../../core/free-port.js';

const mesh = createTestMesh();
const zoneCert = mesh.workload({
  namespace: 'meshfed',
  serviceAccount: 'zone-cp',
  dnsNames: ['meshfed-zone-cp'],
});
const strangerCert = mesh.workload({ namespace: 'web', serviceAccount: 'www', dnsNames: ['www.example'] });

const GRPC = { ':status': 200, 'content-type': 'application/grpc' };

/** What each path does; `seen` keeps the request headers of the last call. */
const seen: { headers?: IncomingHttpHeaders } = {};
function answer(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  seen.headers = headers;
  // A reset or a client's cancel surfaces here too; the client's view is what is checked.
  stream.on('error', () => undefined);
  const path = headers[':path'];
  if (path === '/t/echo') {
    stream.respond(GRPC, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    // Each message back, split across two writes to cross chunk boundaries.
    stream.on('data', (chunk: Buffer) => {
      stream.write(chunk.subarray(0, 3));
      stream.write(chunk.subarray(3));
    });
    stream.on('end', () => stream.end());
  } else if (path === '/t/refuse') {
    stream.respond(
      { ...GRPC, 'grpc-status': '16', 'grpc-message': 'no%20token%3A%20bad' },
      { endStream: true },
    );
  } else if (path === '/t/http503') {
    stream.respond({ ':status': 503 }, { endStream: true });
  } else if (path === '/t/compressed') {
    stream.respond(GRPC);
    stream.write(Buffer.from([1, 0, 0, 0, 1, 7]));
  } else if (path === '/t/huge') {
    stream.respond(GRPC);
    stream.write(Buffer.from([0, 0x10, 0, 0, 0]));
  } else if (path === '/t/reset') {
    stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
  } else if (path === '/t/cut') {
    stream.respond(GRPC, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(encodeGrpcFrame(Buffer.from('whole')).subarray(0, 7));
  } else if (path === '/t/silent') {
    stream.respond(GRPC);
  } else if (path === '/t/no-status') {
    stream.respond(GRPC);
    stream.end(encodeGrpcFrame(Buffer.from('x')));
  } else if (path === '/t/odd-code') {
    stream.respond({ ...GRPC, 'grpc-status': '99', 'grpc-message': 'from the future' }, { endStream: true });
  } else if (path === '/t/html') {
    stream.respond({ ':status': 200, 'content-type': 'text/html' });
    stream.end('<html></html>');
  } else if (path === '/t/two') {
    stream.respond(GRPC, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(Buffer.concat([encodeGrpcFrame(Buffer.from('1')), encodeGrpcFrame(Buffer.from('2'))]));
  } else if (path === '/t/drop') {
    stream.respond(GRPC);
    stream.write(encodeGrpcFrame(Buffer.from('partial answer')), () => stream.session?.destroy());
  } else if (path === '/t/goaway') {
    stream.respond(GRPC);
    // Going away without ending the call: a server that dies right after its GOAWAY.
    stream.session?.goaway();
  }
}

async function startServer(cert: { certChainPem: string; keyPem: string }): Promise<Http2SecureServer> {
  const server = http2.createSecureServer({ cert: cert.certChainPem, key: cert.keyPem });
  server.on('stream', answer);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

let zone: Http2SecureServer;
let stranger: Http2SecureServer;
const addressOf = (s: Http2SecureServer): string => `127.0.0.1:${(s.address() as AddressInfo).port}`;

beforeAll(async () => {
  zone = await startServer(zoneCert);
  stranger = await startServer(strangerCert);
});
afterAll(async () => {
  await new Promise((resolve) => zone.close(resolve));
  await new Promise((resolve) => stranger.close(resolve));
});

/** How a call ends: 'end' (status OK), or its status error's code and details. */
function endOf(call: GrpcCall): Promise<'end' | { code: number; details: string }> {
  return new Promise((resolve) => {
    call.on('end', () => resolve('end'));
    call.on('error', (err: GrpcStatusError) => resolve({ code: err.code, details: err.details }));
  });
}

/** How a unary call to `path` ends: the response, or the status error's code and details. */
/** How a stream on `path` ends on a channel that pings every 50 ms and waits 50 ms for each answer. */
async function endOfShortKeepaliveStream(
  address: string,
  path: string,
): Promise<'end' | { code: number; details: string }> {
  const channel = zoneChannel(address, mesh.rootPem, undefined, { keepaliveMs: 50, keepaliveTimeoutMs: 50 });
  try {
    return await endOf(channel.stream(path));
  } finally {
    channel.close();
  }
}

async function unary(
  path: string,
  address = addressOf(zone),
  deadlineMs = 5000,
): Promise<Buffer | { code: number; details: string }> {
  const channel = zoneChannel(address, mesh.rootPem, { token: 't0k3n' });
  try {
    return await channel.unary(path, Buffer.from('hello'), zoneCallMetadata({ token: 't0k3n' }), deadlineMs);
  } catch (err) {
    if (!(err instanceof GrpcStatusError)) throw err;
    return { code: err.code, details: err.details };
  } finally {
    channel.close();
  }
}

describe('gRPC channel', () => {
  test('a call carries gRPC headers and the token, and gets its message back across chunk boundaries', async () => {
    expect(await unary('/t/echo')).toEqual(Buffer.from('hello'));
    expect(seen.headers).toMatchObject({
      ':method': 'POST',
      ':authority': 'meshfed-zone-cp',
      'content-type': 'application/grpc',
      te: 'trailers',
      authorization: 'Bearer t0k3n',
    });
    expect(seen.headers?.['grpc-timeout']).toBe('5000m');
  });

  test('a stream delivers every message in order and ends on status OK', async () => {
    const channel = zoneChannel(addressOf(zone), mesh.rootPem, undefined);
    const call = channel.stream('/t/echo');
    const received: string[] = [];
    call.on('data', (m: Buffer) => received.push(m.toString()));
    const ended = endOf(call);
    for (const word of ['one', 'two', 'three']) call.write(Buffer.from(word));
    call.end();
    expect(await ended).toBe('end');
    expect(received).toEqual(['one', 'two', 'three']);
    channel.close();
  });

  test.each([
    ['/t/refuse', GrpcCode.UNAUTHENTICATED, 'no token: bad'],
    ['/t/http503', GrpcCode.UNAVAILABLE, 'the server answered HTTP 503'],
    ['/t/compressed', GrpcCode.INTERNAL, 'the server sent a compressed message; none was asked for'],
    [
      '/t/huge',
      GrpcCode.RESOURCE_EXHAUSTED,
      'received a message of 268435456 bytes, more than the limit of 4194304',
    ],
    ['/t/reset', GrpcCode.UNAVAILABLE, 'the server reset the stream (HTTP/2 error 7)'],
    ['/t/cut', GrpcCode.INTERNAL, 'the call ended inside a message'],
    ['/t/silent', GrpcCode.DEADLINE_EXCEEDED, 'deadline exceeded'],
    ['/t/no-status', GrpcCode.INTERNAL, 'the server ended the call without a gRPC status'],
    ['/t/odd-code', GrpcCode.UNKNOWN, 'the server sent grpc-status 99: from the future'],
    ['/t/html', GrpcCode.UNKNOWN, 'the server answered with content-type text/html, not gRPC'],
    ['/t/two', GrpcCode.INTERNAL, 'the server sent more than one response'],
    ['/t/drop', GrpcCode.UNAVAILABLE, 'the connection dropped'],
  ])('%s ends the call with status %i and why', async (path, code, details) => {
    // The deadline counts from the call's start, TLS handshake included: only the silent
    // server is meant to run it out, so the others get room for a slow handshake.
    const deadlineMs = path === '/t/silent' ? 300 : 5000;
    expect(await unary(path, addressOf(zone), deadlineMs)).toEqual({ code, details });
  });

  test('an unreachable server, or one that is not a zone control plane, is UNAVAILABLE with the reason', async () => {
    const nobody = await unary('/t/echo', `127.0.0.1:${await freePort()}`);
    expect(nobody).toMatchObject({
      code: GrpcCode.UNAVAILABLE,
      details: expect.stringMatching(/ECONNREFUSED/),
    });
    const other = await unary('/t/echo', addressOf(stranger));
    expect(other).toMatchObject({
      code: GrpcCode.UNAVAILABLE,
      details: expect.stringMatching(/is not a meshfed zone control plane/),
    });
  });
});

test('a server that stops answering keepalive pings loses the connection, and its calls end UNAVAILABLE', async () => {
  // Speaks just enough HTTP/2 to be connected to (its SETTINGS, an ACK of the client's), then nothing.
  const mute = tls.createServer(
    { cert: zoneCert.certChainPem, key: zoneCert.keyPem, ALPNProtocols: ['h2'] },
    (socket) => {
      socket.on('error', () => undefined);
      socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0]));
      socket.resume();
    },
  );
  await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
  const ended = await endOfShortKeepaliveStream(
    `127.0.0.1:${(mute.address() as AddressInfo).port}`,
    '/t/echo',
  );
  expect(ended).toEqual({
    code: GrpcCode.UNAVAILABLE,
    details: 'the server did not answer a keepalive ping within 50 ms',
  });
  await new Promise((resolve) => mute.close(resolve));
});

test('a server that accepts the connection but never answers is given up on after the connect timeout', async () => {
  const accepted: net.Socket[] = [];
  const silent = net.createServer((socket) => accepted.push(socket.on('error', () => undefined)));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const channel = zoneChannel(address, mesh.rootPem, undefined, { connectTimeoutMs: 100 });
  const call = channel.stream('/t/echo');
  const ended = await endOf(call);
  expect(ended).toEqual({
    code: GrpcCode.UNAVAILABLE,
    details: expect.stringContaining(`no connection to ${address} within 100 ms`),
  });
  channel.close();
  for (const socket of accepted) socket.destroy();
  await new Promise((resolve) => silent.close(resolve));
});

test('a listener that cancels the call gets no further message', async () => {
  const channel = zoneChannel(addressOf(zone), mesh.rootPem, undefined);
  // Two messages arrive in one chunk; the first one's listener cancels.
  const call = channel.stream('/t/two');
  const received: string[] = [];
  const ended = new Promise<number>((resolve) =>
    call.on('error', (err: GrpcStatusError) => resolve(err.code)),
  );
  call.on('data', (m: Buffer) => {
    received.push(m.toString());
    call.cancel();
  });
  call.end();
  expect(await ended).toBe(GrpcCode.CANCELLED);
  expect(received).toEqual(['1']);
  channel.close();
});

test('an MDS client given an address that is not one fails and retries, without throwing', async () => {
  const client = new MdsClient({
    address: '::1:5678',
    caPem: mesh.rootPem,
    credential: () => ({ token: 't' }),
    hello: { proxyId: 'p', kind: 'gateway' },
    onSnapshot: () => undefined,
    initialBackoffMs: 10_000,
  });
  client.start();
  expect(client.lastError?.message).toMatch(
    /^MDS stream to ::1:5678: not an address \(host:port or \[v6\]:port\): "::1:5678"/,
  );
  client.close();
});

test('a certificate request to an address that is not one rejects with a MeshError', async () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await expect(
    requestCertificate({
      address: '::1:5678',
      caPem: mesh.rootPem,
      credential: { token: 't' },
      privateKey,
      publicKey,
    }),
  ).rejects.toMatchObject({
    name: 'MeshError',
    code: 'MESHFED_ERR_UNAVAILABLE',
    message: expect.stringMatching(/^certificate request to ::1:5678 failed: UNAVAILABLE: not an address/),
  });
});

test('a channel closed while it connects lets go of its connection at once', async () => {
  let connected = false;
  let closed = false;
  const silent = net.createServer((socket) => {
    connected = true;
    socket.on('error', () => undefined).on('close', () => (closed = true));
    socket.resume();
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const channel = zoneChannel(`127.0.0.1:${(silent.address() as AddressInfo).port}`, mesh.rootPem, undefined);
  const call = channel.stream('/t/echo');
  call.on('error', () => undefined);
  await waitFor(() => connected || undefined, { what: 'the connection' });
  channel.close();
  await waitFor(() => closed || undefined, { what: 'the server to see the connection closed' });
  await new Promise((resolve) => silent.close(resolve));
});

test('calls left open after a GOAWAY end UNAVAILABLE after one keepalive period', async () => {
  const ended = await endOfShortKeepaliveStream(addressOf(zone), '/t/goaway');
  expect(ended).toEqual({
    code: GrpcCode.UNAVAILABLE,
    details: 'the server went away (GOAWAY) and did not end its calls',
  });
});

describe('gRPC message framing', () => {
  test('messages come out whole and in order however the bytes are split', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 8 }),
        (messages, cuts) => {
          const wire = Buffer.concat(messages.map((m) => encodeGrpcFrame(Buffer.from(m))));
          const decoder = new GrpcFrameDecoder(1024);
          const out: Buffer[] = [];
          for (let at = 0, i = 0; at < wire.length; i++) {
            const size = cuts[i % cuts.length] as number;
            out.push(...decoder.push(wire.subarray(at, at + size)));
            at += size;
          }
          expect(out.map((b) => [...b])).toEqual(messages.map((m) => [...m]));
          expect(decoder.partialBytes).toBe(0);
        },
      ),
    );
  });
});
