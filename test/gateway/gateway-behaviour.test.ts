/**
 * The gateway's TCP behaviour with raw ClientHellos and plain TCP upstreams
 * that record every byte: split hellos, half-close both ways, backpressure,
 * drain, timeouts, connection limits, least-connections balancing, passive
 * ejection with retry, snapshot swaps and NACKs, readiness.
 */

import { afterEach, describe, expect, jest, test } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { isMeshError } from '../../core/errors.js';
import type { GatewaySnapshot } from '../../core/mesh/snapshot.js';
import { startGateway, type GatewayHandle, type GatewayOptions } from '../../eastwest-gateway/index.js';
import { freePort } from '../../core/free-port.js';
import { isListening } from '../common/ports.js';
import { waitFor } from '../common/wait.js';
import {
  deadPort,
  exportedMetric,
  metricValue,
  rawExchange,
  startRecorder,
  type Closable,
  type RecordedConnection,
  type RecorderServer,
} from './gateway-fixtures.js';
import { buildHelloMessage, frameRecords } from './hello-builder.js';

const SNI = '_.9080.reviews.bookinfo.svc.mesh';
const HELLO = frameRecords(buildHelloMessage({ serverName: SNI }));

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

function track<T extends Closable>(thing: T): T {
  cleanups.push(() => thing.close());
  return thing;
}

function reviews(
  ports: Array<number | { port: number; healthy?: boolean; address?: string }>,
): GatewaySnapshot {
  return {
    type: 'gateway/v1',
    zone: 'zone-b',
    services: [
      {
        name: 'reviews',
        namespace: 'bookinfo',
        ports: [9080],
        clusters: [
          {
            subset: '_',
            endpoints: ports.map((p, i) => {
              const e = typeof p === 'number' ? { port: p } : p;
              return {
                address: e.address ?? '127.0.0.1',
                port: e.port,
                healthy: e.healthy ?? true,
                workload: `reviews-${i}`,
              };
            }),
          },
        ],
      },
    ],
  };
}

/**
 * A gateway on port 0. Spare upstream connections are off unless a test turns
 * them on: most tests here count the connections each upstream accepted.
 */
async function gatewayWith(options: GatewayOptions): Promise<GatewayHandle> {
  const gateway = await startGateway({
    host: '127.0.0.1',
    port: 0,
    adminPort: 0,
    processMetrics: false,
    ...options,
    limits: { preconnectIdleMs: 0, ...options.limits },
  });
  cleanups.push(() => gateway.destroy());
  return gateway;
}

interface Client {
  socket: net.Socket;
  received(): Buffer;
  /** Bytes received so far (without joining them, for polling large transfers). */
  receivedBytes(): number;
  closed: Promise<void>;
  isClosed(): boolean;
  ended(): boolean;
}

/**
 * A raw client through the gateway; `first` is written at once unless
 * `dribble` (one byte per write). It answers a FIN with its own unless
 * `keepOpen`, so a connection the gateway closes is seen closed.
 */
async function connect(
  port: number,
  first: Buffer = HELLO,
  options: { dribble?: boolean; localAddress?: string; keepOpen?: boolean } = {},
): Promise<Client> {
  const socket = net.connect({
    port,
    host: '127.0.0.1',
    allowHalfOpen: true,
    noDelay: true,
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
  });
  cleanups.push(() => void socket.destroy());
  const chunks: Buffer[] = [];
  let bytes = 0;
  let closed = false;
  let ended = false;
  socket.on('data', (c: Buffer) => {
    chunks.push(c);
    bytes += c.length;
  });
  socket.on('end', () => {
    ended = true;
    if (!options.keepOpen) socket.end();
  });
  socket.on('error', () => undefined);
  const closedPromise = new Promise<void>((resolve) =>
    socket.on('close', () => {
      closed = true;
      resolve();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  if (options.dribble) {
    for (const byte of first) {
      await new Promise<void>((resolve) => socket.write(Buffer.from([byte]), () => resolve()));
      await new Promise((resolve) => setImmediate(resolve));
    }
  } else if (first.length > 0) {
    socket.write(first);
  }
  return {
    socket,
    received: () => Buffer.concat(chunks),
    receivedBytes: () => bytes,
    closed: closedPromise,
    isClosed: () => closed,
    ended: () => ended,
  };
}

async function acceptedBy(recorder: RecorderServer, count: number): Promise<RecordedConnection> {
  await waitFor(() => recorder.accepted.length >= count, { what: `upstream connection #${count}` });
  const c = recorder.accepted[count - 1];
  if (c === undefined) throw new Error('no such connection');
  return c;
}

/**
 * `sender` writes 96 MiB towards `receiver` through the gateway while the
 * receiver has stopped reading: once the kernel's and the gateway's buffers
 * are full the sender must stop flushing (without backpressure the gateway
 * would read everything into memory). Then the receiver resumes and every
 * byte arrives.
 */
async function expectBackpressure(flow: {
  sender: net.Socket;
  receiver: net.Socket;
  received: () => number;
}): Promise<void> {
  const total = 96 * 1024 * 1024;
  flow.receiver.pause();
  const block = Buffer.alloc(1024 * 1024, 0x5a);
  for (let i = 0; i < total / block.length; i++) flow.sender.write(block);
  let last = -1;
  let stable = 0;
  await waitFor(
    () => {
      const flushed = total - flow.sender.writableLength;
      stable = flushed === last ? stable + 1 : 0;
      last = flushed;
      return stable >= 5;
    },
    { what: 'the sender to stop flushing', timeoutMs: 20_000, intervalMs: 100 },
  );
  expect(total - flow.sender.writableLength).toBeLessThan(48 * 1024 * 1024);
  flow.receiver.resume();
  await waitFor(() => flow.received() === total, { timeoutMs: 30_000, what: 'all bytes at the receiver' });
}

describe('forwarding', () => {
  test('a ClientHello written one byte per segment is routed and forwarded byte for byte', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]) });
    const client = await connect(gateway.port, HELLO, { dribble: true });
    client.socket.write('after-hello');
    const upstream = await acceptedBy(recorder, 1);
    await waitFor(() => upstream.received().length === HELLO.length + 'after-hello'.length);
    expect(upstream.received().equals(Buffer.concat([HELLO, Buffer.from('after-hello')]))).toBe(true);
  });

  test('a ClientHello fragmented over many small TLS records, each written on its own, is routed and forwarded byte for byte', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]) });
    // 7-byte fragments: the SNI extension itself is cut across several records.
    const fragmented = frameRecords(buildHelloMessage({ serverName: SNI }), 7);
    const client = await connect(gateway.port, Buffer.alloc(0));
    for (let at = 0; at < fragmented.length; at += 12) {
      // One 12-byte record (5 of header, 7 of hello) per write, a loop turn apart.
      await new Promise<void>((resolve) =>
        client.socket.write(fragmented.subarray(at, at + 12), () => resolve()),
      );
      await new Promise((resolve) => setImmediate(resolve));
    }
    const upstream = await acceptedBy(recorder, 1);
    await waitFor(() => upstream.receivedBytes() === fragmented.length, { what: 'the whole hello upstream' });
    expect(upstream.received().equals(fragmented)).toBe(true);
    client.socket.end();
    await client.closed;
  });

  test('client half-close: the FIN crosses, and the upstream can still answer', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]) });
    const client = await connect(gateway.port);
    client.socket.end('request-body');
    await client.closed;
    // The recorder answers only after it saw the FIN, so this reply proves both directions of the half-close.
    expect(client.received().toString()).toBe(`bye:${HELLO.length + 'request-body'.length}`);
    expect(recorder.accepted[0]?.ended()).toBe(true);
  });

  test('upstream half-close: the client gets the FIN and can keep sending', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]) });
    const client = await connect(gateway.port, HELLO, { keepOpen: true });
    const upstream = await acceptedBy(recorder, 1);
    upstream.socket.end('server-done');
    await waitFor(() => client.ended(), { what: 'the FIN at the client' });
    expect(client.received().toString()).toBe('server-done');
    client.socket.write('late-data');
    await waitFor(() => upstream.received().toString('latin1').endsWith('late-data'), {
      what: 'late data upstream',
    });
    client.socket.end();
    await client.closed;
  });

  test('bulk data arrives intact both ways', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]) });
    const client = await connect(gateway.port);
    const upstream = await acceptedBy(recorder, 1);
    const up = randomBytes(8 * 1024 * 1024);
    const down = randomBytes(8 * 1024 * 1024);
    client.socket.write(up);
    upstream.socket.write(down);
    await waitFor(() => upstream.received().length === HELLO.length + up.length, { timeoutMs: 20_000 });
    await waitFor(() => client.received().length === down.length, { timeoutMs: 20_000 });
    const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(digest(upstream.received().subarray(HELLO.length))).toBe(digest(up));
    expect(digest(client.received())).toBe(digest(down));
  });

  test('a slow trickle to a client that stopped reading arrives intact (the relay queues, then resumes)', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]) });
    const client = await connect(gateway.port);
    const upstream = await acceptedBy(recorder, 1);
    // Once the client's kernel buffers are full, each small upstream read is
    // queued in the gateway while it goes on reading (the queue stays under the
    // high-water mark for a while): a read buffer reused while a queued write
    // still points into it would corrupt what arrives.
    client.socket.pause();
    const down = randomBytes(48 * 1024 * 1024);
    for (let at = 0; at < down.length; at += 8 * 1024) {
      for (let piece = at; piece < at + 8 * 1024; piece += 1024)
        upstream.socket.write(down.subarray(piece, piece + 1024));
      await new Promise((resolve) => setImmediate(resolve));
    }
    client.socket.resume();
    await waitFor(() => client.received().length === down.length, {
      timeoutMs: 30_000,
      what: 'all bytes at the client',
    });
    const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(digest(client.received())).toBe(digest(down));
  });

  test('connections one after another reuse one relay read buffer instead of allocating their own', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]) });
    const allocations = jest.spyOn(Buffer, 'allocUnsafeSlow');
    try {
      for (let i = 1; i <= 20; i++) {
        const client = await connect(gateway.port);
        const upstream = await acceptedBy(recorder, i);
        upstream.socket.end('answer');
        await waitFor(() => client.ended());
        client.socket.end();
        await client.closed;
        await waitFor(() => gateway.activeConnections === 0);
      }
      // Off-heap allocations count towards V8's next full GC: one per connection
      // meant a mark-compact pause every few hundred connections.
      expect(allocations.mock.calls.length).toBeLessThanOrEqual(2);
    } finally {
      allocations.mockRestore();
    }
  });
});

describe('backpressure, both ways', () => {
  test('backpressure: a client that stops reading stops the gateway reading from the upstream', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]) });
    const client = await connect(gateway.port);
    const upstream = await acceptedBy(recorder, 1);
    await expectBackpressure({
      sender: upstream.socket,
      receiver: client.socket,
      received: client.receivedBytes,
    });
  }, 60_000);

  test('an upstream that stops reading stops the gateway reading from the client', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]) });
    const client = await connect(gateway.port);
    const upstream = await acceptedBy(recorder, 1);
    await waitFor(() => upstream.receivedBytes() === HELLO.length, { what: 'the hello upstream' });
    await expectBackpressure({
      sender: client.socket,
      receiver: upstream.socket,
      received: () => upstream.receivedBytes() - HELLO.length,
    });
  }, 60_000);
});

describe('live connection counts', () => {
  test('connections accepted, open, and open per service are exported as they change', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]) });
    // Each series must be exported (a missing one reads undefined, not 0).
    const sample = async (): Promise<Array<number | undefined>> => [
      await exportedMetric(gateway.adminPort, 'meshfed_gateway_connections_total'),
      await exportedMetric(gateway.adminPort, 'meshfed_gateway_active_connections'),
      await exportedMetric(gateway.adminPort, 'meshfed_gateway_service_active_connections', {
        service: 'reviews.bookinfo',
      }),
    ];
    expect(await sample()).toEqual([0, 0, 0]);
    const clients = [await connect(gateway.port), await connect(gateway.port)];
    await acceptedBy(recorder, 2);
    // A third connection still reading its hello is open, but not yet anyone's.
    const undecided = await connect(gateway.port, HELLO.subarray(0, 10));
    // The per-service count rises when the upstream connect completes.
    await waitFor(async () => JSON.stringify(await sample()) === '[3,3,2]', {
      what: '3 accepted, 3 open, 2 of them to reviews',
    });
    for (const c of [...clients, undecided]) {
      c.socket.end();
      await c.closed;
    }
    await waitFor(async () => JSON.stringify(await sample()) === '[3,0,0]', {
      what: 'every connection closed, counted once',
    });
  });
});

describe('drain', () => {
  test('close() stops accepting and reports not ready, but open connections finish', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]) });
    const client = await connect(gateway.port);
    const upstream = await acceptedBy(recorder, 1);
    const closed = gateway.close();
    let closeDone = false;
    void closed.then(() => (closeDone = true));
    const ready = await fetch(`http://127.0.0.1:${gateway.adminPort}/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ ready: false, reason: 'draining' });
    await waitFor(async () => !(await isListening(gateway.port)), { what: 'the listener to close' });
    // The open connection still works both ways.
    client.socket.write('during-drain');
    await waitFor(() => upstream.received().toString('latin1').endsWith('during-drain'));
    upstream.socket.write('reply');
    await waitFor(() => client.received().toString() === 'reply');
    expect(closeDone).toBe(false);
    client.socket.end();
    await client.closed;
    await closed;
    expect(client.received().toString()).toBe(`replybye:${HELLO.length + 'during-drain'.length}`);
    expect(await isListening(gateway.adminPort)).toBe(false);
  });

  test('connections still open at the drain deadline are cut', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({
      snapshot: reviews([recorder.port]),
      limits: { drainTimeoutMs: 200 },
    });
    const client = await connect(gateway.port);
    await acceptedBy(recorder, 1);
    await gateway.close();
    await client.closed;
    expect(gateway.activeConnections).toBe(0);
  });
});

describe('timeouts and limits', () => {
  test('a ClientHello that does not complete in time is refused (hello-timeout)', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({
      snapshot: reviews([recorder.port]),
      limits: { helloTimeoutMs: 150 },
    });
    const client = await connect(gateway.port, HELLO.subarray(0, 20));
    await client.closed;
    expect(
      await metricValue(gateway.adminPort, 'meshfed_gateway_refused_connections_total', {
        reason: 'hello-timeout',
      }),
    ).toBe(1);
    expect(recorder.accepted.length).toBe(0);
  });

  test('an idle connection is closed on both sides after the idle timeout', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({
      snapshot: reviews([recorder.port]),
      limits: { idleTimeoutMs: 1500 },
    });
    const client = await connect(gateway.port);
    const upstream = await acceptedBy(recorder, 1);
    await client.closed;
    // Polled, not awaited as an event: the upstream side may have closed before anyone listened.
    await waitFor(() => upstream.socket.destroyed, { what: 'the upstream side closed' });
    await waitFor(() => gateway.activeConnections === 0, { what: 'the gateway to drop the connection' });
  });

  test('per-source limit: the third connection from one address is refused, another address is not', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({
      snapshot: reviews([recorder.port]),
      limits: { maxConnectionsPerSource: 2 },
    });
    const a = await connect(gateway.port, HELLO.subarray(0, 10));
    await connect(gateway.port, HELLO.subarray(0, 10));
    await waitFor(() => gateway.activeConnections === 2);
    const refused = await connect(gateway.port, HELLO.subarray(0, 10));
    await refused.closed;
    expect(
      await metricValue(gateway.adminPort, 'meshfed_gateway_refused_connections_total', {
        reason: 'limit-source',
      }),
    ).toBe(1);
    const other = await connect(gateway.port, HELLO.subarray(0, 10), { localAddress: '127.0.0.2' });
    await waitFor(() => gateway.activeConnections === 3, { what: 'a connection from 127.0.0.2' });
    expect(other.isClosed()).toBe(false);
    // A slot freed is a slot available again.
    a.socket.destroy();
    await waitFor(() => gateway.activeConnections === 2);
    const again = await connect(gateway.port);
    await waitFor(() => recorder.accepted.length === 1, { what: 'the new connection to be forwarded' });
    expect(again.isClosed()).toBe(false);
  });

  test('total limit: connections over the limit are refused whatever their source', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]), limits: { maxConnections: 2 } });
    await connect(gateway.port, HELLO.subarray(0, 10));
    await connect(gateway.port, HELLO.subarray(0, 10), { localAddress: '127.0.0.2' });
    await waitFor(() => gateway.activeConnections === 2);
    const refused = await connect(gateway.port, HELLO, { localAddress: '127.0.0.3' });
    await refused.closed;
    expect(
      await metricValue(gateway.adminPort, 'meshfed_gateway_refused_connections_total', {
        reason: 'limit-total',
      }),
    ).toBe(1);
    expect(recorder.accepted.length).toBe(0);
  });
});

describe('load balancing and passive ejection', () => {
  test('least connections spreads open connections evenly and fills the emptiest endpoint first', async () => {
    const recorders = [
      track(await startRecorder()),
      track(await startRecorder()),
      track(await startRecorder()),
    ];
    const gateway = await gatewayWith({ snapshot: reviews(recorders.map((r) => r.port)) });
    const clients: Client[] = [];
    for (let i = 0; i < 6; i++) {
      clients.push(await connect(gateway.port));
      await waitFor(() => recorders.reduce((n, r) => n + r.accepted.length, 0) === i + 1);
    }
    expect(recorders.map((r) => r.accepted.length)).toEqual([2, 2, 2]);
    // Close both connections on the first endpoint: the next two go there.
    const first = recorders[0] as RecorderServer;
    for (const c of first.accepted) c.socket.destroy();
    await waitFor(() => gateway.activeConnections === 4);
    for (let i = 0; i < 2; i++) {
      await connect(gateway.port);
      await waitFor(() => first.accepted.length === 3 + i, {
        what: `connection ${i} on the emptied endpoint`,
      });
    }
    expect(recorders.map((r) => r.accepted.length)).toEqual([4, 2, 2]);
  });

  test('an endpoint that refuses connects is ejected, and the connection is retried on another', async () => {
    const recorder = track(await startRecorder());
    const dead = await deadPort();
    const gateway = await gatewayWith({
      snapshot: reviews([dead, recorder.port]),
      lbPolicy: 'round-robin',
      limits: { baseEjectionMs: 60_000 },
    });
    for (let i = 1; i <= 5; i++) {
      const client = await connect(gateway.port);
      client.socket.end('hi');
      await client.closed;
      expect(client.received().toString()).toBe(`bye:${HELLO.length + 2}`);
    }
    expect(recorder.accepted.length).toBe(5);
    // One failed connect ejected the dead endpoint; round robin never tried it again.
    expect(
      await metricValue(gateway.adminPort, 'meshfed_gateway_upstream_connect_failures_total', {
        service: 'reviews.bookinfo',
      }),
    ).toBe(1);
    expect(await metricValue(gateway.adminPort, 'meshfed_gateway_endpoint_ejections_total')).toBe(1);
    const dump = (await (await fetch(`http://127.0.0.1:${gateway.adminPort}/config_dump`)).json()) as {
      routes: Array<{ endpoints: Array<{ port: number; ejectedForMs: number }> }>;
    };
    const ejected = dump.routes[0]?.endpoints.find((e) => e.port === dead);
    expect(ejected?.ejectedForMs).toBeGreaterThan(0);
  });

  test('an ejected endpoint is tried again when its ejection ends, ejected twice as long while it keeps refusing, and back in full service once it answers', async () => {
    const healthy = track(await startRecorder());
    // Outside the ephemeral range: no outgoing connection takes this port before the endpoint comes up on it.
    const flaky = await freePort();
    const gateway = await gatewayWith({
      snapshot: reviews([flaky, healthy.port]),
      lbPolicy: 'round-robin',
      limits: { baseEjectionMs: 150, maxEjectionMs: 1000 },
    });
    interface FlakyState {
      ejectedForMs: number;
      consecutiveEjections: number;
      lastEjectionMs: number;
    }
    const flakyState = async (): Promise<FlakyState> => {
      const dump = (await (await fetch(`http://127.0.0.1:${gateway.adminPort}/config_dump`)).json()) as {
        routes: Array<{ endpoints: Array<FlakyState & { port: number }> }>;
      };
      const endpoint = dump.routes[0]?.endpoints.find((e) => e.port === flaky);
      if (endpoint === undefined) throw new Error('the flaky endpoint is missing from /config_dump');
      return endpoint;
    };
    // Connections through the gateway, each of which gets through (to whichever endpoint
    // answers), until `done`; round robin reaches the flaky endpoint within a few.
    const passUntil = async (done: () => boolean | Promise<boolean>, what: string): Promise<void> => {
      for (let pass = 0; pass < 10; pass++) {
        if (await done()) return;
        const client = await connect(gateway.port);
        client.socket.end('hi');
        await client.closed;
        expect(client.received().toString()).toBe(`bye:${HELLO.length + 2}`);
      }
      if (!(await done())) throw new Error(`10 connections through the gateway and still not: ${what}`);
    };
    const ejections = (): Promise<number> =>
      metricValue(gateway.adminPort, 'meshfed_gateway_endpoint_ejections_total');
    // Each time its ejection has ended, round robin comes back to it, it refuses again, and sits out twice as long.
    const durations: number[] = [];
    for (let n = 1; n <= 3; n++) {
      await waitFor(async () => (await flakyState()).ejectedForMs === 0, { what: 'the ejection to end' });
      await passUntil(async () => (await ejections()) === n, `ejection ${n}`);
      const state = await flakyState();
      expect(state.consecutiveEjections).toBe(n);
      durations.push(state.lastEjectionMs);
    }
    expect(durations).toEqual([150, 300, 600]);
    // It comes up: once its ejection ends it takes connections again, and its backoff restarts.
    const recovered = track(await startRecorder(flaky));
    await waitFor(async () => (await flakyState()).ejectedForMs === 0, { what: 'the last ejection to end' });
    await passUntil(() => recovered.accepted.length > 0, 'a connection to the recovered endpoint');
    expect(await flakyState()).toMatchObject({ ejectedForMs: 0, consecutiveEjections: 0 });
    expect(await ejections()).toBe(3);
  });

  test('when every endpoint refuses, the client is closed (upstream-unavailable)', async () => {
    const gateway = await gatewayWith({ snapshot: reviews([await deadPort(), await deadPort()]) });
    const result = await rawExchange(gateway.port, [HELLO]);
    expect(result.received.length).toBe(0);
    expect(
      await metricValue(gateway.adminPort, 'meshfed_gateway_refused_connections_total', {
        reason: 'upstream-unavailable',
      }),
    ).toBe(1);
    expect(await metricValue(gateway.adminPort, 'meshfed_gateway_upstream_connect_failures_total')).toBe(2);
  });

  test('endpoints the zone reports unhealthy are never picked', async () => {
    const healthy = track(await startRecorder());
    const unhealthy = track(await startRecorder());
    const gateway = await gatewayWith({
      snapshot: reviews([{ port: unhealthy.port, healthy: false }, healthy.port]),
    });
    for (let i = 0; i < 4; i++) {
      const client = await connect(gateway.port);
      client.socket.end();
      await client.closed;
    }
    expect(healthy.accepted.length).toBe(4);
    expect(unhealthy.accepted.length).toBe(0);
  });
});

describe('snapshots and readiness', () => {
  test('before a snapshot the gateway is not ready and refuses (not-ready); after one it routes', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({});
    const before = await fetch(`http://127.0.0.1:${gateway.adminPort}/ready`);
    expect(before.status).toBe(503);
    expect(await before.json()).toEqual({ ready: false, reason: 'no-snapshot' });
    await (
      await connect(gateway.port)
    ).closed;
    expect(
      await metricValue(gateway.adminPort, 'meshfed_gateway_refused_connections_total', {
        reason: 'not-ready',
      }),
    ).toBe(1);
    gateway.applySnapshot(JSON.stringify(reviews([recorder.port])), 'v1');
    expect((await fetch(`http://127.0.0.1:${gateway.adminPort}/ready`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${gateway.adminPort}/healthz/ready`)).status).toBe(200);
    const client = await connect(gateway.port);
    client.socket.end();
    await client.closed;
    expect(recorder.accepted.length).toBe(1);
  });

  test('an invalid snapshot is rejected naming the field, and the last good table stays', async () => {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]) });
    const bad = reviews([recorder.port]) as unknown as {
      services: Array<{ clusters: Array<{ endpoints: Array<{ port: unknown }> }> }>;
    };
    const endpoint = bad.services[0]?.clusters[0]?.endpoints[0];
    if (endpoint) endpoint.port = 70000;
    let error: unknown;
    try {
      gateway.applySnapshot(bad, 'v2');
    } catch (err) {
      error = err;
    }
    expect(isMeshError(error, 'MESHFED_ERR_VALIDATION')).toBe(true);
    expect((error as { field?: string }).field).toBe('services[0].clusters[0].endpoints[0].port');
    expect(() => gateway.applySnapshot('{not json')).toThrow(/not JSON/);
    expect(() => gateway.applySnapshot({ type: 'sidecar/v1' })).toThrow(/type/);
    expect(() => gateway.applySnapshot({ ...reviews([recorder.port]), notExported: ['ledger'] })).toThrow(
      'gateway snapshot: notExported[0]: must be `name.namespace` (two DNS-1123 labels)',
    );
    expect(() =>
      gateway.applySnapshot({ ...reviews([recorder.port]), notExported: ['reviews.bookinfo'] }),
    ).toThrow('notExported[0]: service reviews.bookinfo appears twice or is also in services');
    expect(() =>
      gateway.applySnapshot({ ...reviews([recorder.port]), notExported: ['ledger.bank', 'ledger.bank'] }),
    ).toThrow('notExported[1]: service ledger.bank appears twice or is also in services');
    expect(
      await metricValue(gateway.adminPort, 'meshfed_gateway_snapshots_total', { result: 'rejected' }),
    ).toBe(6);
    const client = await connect(gateway.port);
    client.socket.end();
    await client.closed;
    expect(recorder.accepted.length).toBe(1);
    const dump = (await (await fetch(`http://127.0.0.1:${gateway.adminPort}/config_dump`)).json()) as {
      version: string;
    };
    expect(dump.version).toBe('static');
  });

  test('a new snapshot moves new connections and leaves piping ones where they are', async () => {
    const oldEndpoint = track(await startRecorder());
    const newEndpoint = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([oldEndpoint.port]) });
    const early = await connect(gateway.port);
    const upstream = await acceptedBy(oldEndpoint, 1);
    gateway.applySnapshot(reviews([newEndpoint.port]), 'v2');
    const late = await connect(gateway.port);
    late.socket.end();
    await late.closed;
    expect(newEndpoint.accepted.length).toBe(1);
    early.socket.write('still-flowing');
    await waitFor(() => upstream.received().toString('latin1').endsWith('still-flowing'));
    early.socket.end();
    await early.closed;
    expect(oldEndpoint.accepted.length).toBe(1);
  });
});

describe('spare upstream connections (preconnect)', () => {
  const PRECONNECT = 'meshfed_gateway_upstream_preconnects_total';
  const isClosed = (c: RecordedConnection): boolean => c.socket.destroyed || c.socket.closed;

  /** Upstream connection #n answers its client: the gateway opens the endpoint's spare once it has. */
  async function answer(recorder: RecorderServer, n: number, client: Client): Promise<void> {
    (await acceptedBy(recorder, n)).socket.write('hi');
    await waitFor(() => client.received().toString() === 'hi', { what: `the answer on connection #${n}` });
  }

  /** One endpoint, a first client it answered, and the spare that answer opened (upstream #2). */
  async function withSpare(preconnectIdleMs: number): Promise<{
    recorder: RecorderServer;
    gateway: GatewayHandle;
    first: Client;
    spare: RecordedConnection;
  }> {
    const recorder = track(await startRecorder());
    const gateway = await gatewayWith({ snapshot: reviews([recorder.port]), limits: { preconnectIdleMs } });
    const first = await connect(gateway.port);
    await answer(recorder, 1, first);
    return { recorder, gateway, first, spare: await acceptedBy(recorder, 2) };
  }

  /** `upstream` got the client's hello byte for byte, and what it answers reaches the client. */
  async function carries(upstream: RecordedConnection, client: Client): Promise<void> {
    await waitFor(() => upstream.received().length === HELLO.length, { what: 'the hello upstream' });
    expect(upstream.received()).toEqual(HELLO);
    upstream.socket.write('answer');
    await waitFor(() => client.received().toString() === 'answer', { what: 'the answer at the client' });
  }

  test('after a connection is answered, the endpoint holds a spare that carries the next client’s hello', async () => {
    const { recorder, gateway, spare } = await withSpare(10_000);
    // The spare was accepted before the second client existed, and has carried nothing.
    expect(spare.received().length).toBe(0);
    const second = await connect(gateway.port);
    await carries(spare, second);
    // The spare's answer opened the next one.
    await acceptedBy(recorder, 3);
    expect(await metricValue(gateway.adminPort, PRECONNECT, { outcome: 'used' })).toBe(1);
  });

  test('a spare nobody uses within the idle time is closed', async () => {
    const { recorder, gateway, spare } = await withSpare(100);
    await waitFor(() => isClosed(spare), { what: 'the idle spare to be closed' });
    expect(await metricValue(gateway.adminPort, PRECONNECT, { outcome: 'expired' })).toBe(1);
    expect(recorder.accepted.length).toBe(2);
  });

  test('a spare the endpoint closed is not used: the next client gets a connection of its own', async () => {
    const { recorder, gateway, spare } = await withSpare(10_000);
    spare.socket.destroy();
    await waitFor(async () => (await metricValue(gateway.adminPort, PRECONNECT, { outcome: 'lost' })) === 1, {
      what: 'the spare counted lost',
    });
    const second = await connect(gateway.port);
    await carries(await acceptedBy(recorder, 3), second);
  });

  test.each([
    ['reset', (socket: net.Socket) => socket.resetAndDestroy()],
    ['closed with a FIN', (socket: net.Socket) => socket.end()],
  ])(
    'a spare %s as the hello reaches it: the client is carried on a fresh connection, unaware',
    async (_, cut) => {
      const { recorder, gateway, spare } = await withSpare(10_000);
      spare.socket.once('data', () => cut(spare.socket));
      const second = await connect(gateway.port);
      await carries(await acceptedBy(recorder, 3), second);
      expect(second.isClosed() || second.ended()).toBe(false);
      // The hello did go out on the spare first.
      expect(spare.received()).toEqual(HELLO);
      expect(await metricValue(gateway.adminPort, PRECONNECT, { outcome: 'lost' })).toBe(1);
      expect(await metricValue(gateway.adminPort, PRECONNECT, { outcome: 'used' })).toBe(0);
      expect(
        await metricValue(gateway.adminPort, 'meshfed_gateway_forwarded_connections_total', {
          service: 'reviews.bookinfo',
        }),
      ).toBe(2);
    },
  );

  test('a spare reset after the client sent more than its hello: the client is cut, nothing is replayed', async () => {
    const { recorder, gateway, spare } = await withSpare(10_000);
    spare.socket.once('data', () => spare.socket.resetAndDestroy());
    const early = Buffer.concat([HELLO, Buffer.from('early-data')]);
    const second = await connect(gateway.port, early);
    await second.closed;
    expect(spare.received()).toEqual(early);
    expect(recorder.accepted.slice(2).every((c) => c.received().length === 0)).toBe(true);
  });

  test('a connection routed before its endpoint left the table opens no spare to it', async () => {
    const old = track(await startRecorder());
    const next = track(await startRecorder());
    const gateway = await gatewayWith({
      snapshot: reviews([old.port]),
      limits: { preconnectIdleMs: 10_000 },
    });
    const client = await connect(gateway.port);
    await acceptedBy(old, 1);
    gateway.applySnapshot(reviews([next.port]), 'v2');
    await answer(old, 1, client);
    const other = await connect(gateway.port);
    await answer(next, 1, other);
    // The later answer opened its spare, so the earlier one had its chance.
    await acceptedBy(next, 2);
    expect(old.accepted.length).toBe(1);
  });

  test('spares of an endpoint the table drops are closed, and draining closes the rest', async () => {
    const dropped = track(await startRecorder());
    const kept = track(await startRecorder());
    const gateway = await gatewayWith({
      snapshot: reviews([dropped.port, kept.port]),
      limits: { preconnectIdleMs: 10_000 },
    });
    // Least connections sends the second client to the other endpoint: each gets a spare.
    const a = await connect(gateway.port);
    await answer(dropped, 1, a);
    const b = await connect(gateway.port);
    await answer(kept, 1, b);
    const droppedSpare = await acceptedBy(dropped, 2);
    const keptSpare = await acceptedBy(kept, 2);
    gateway.applySnapshot(reviews([kept.port]), 'v2');
    await waitFor(() => isClosed(droppedSpare), { what: 'the dropped endpoint’s spare to close' });
    expect(isClosed(keptSpare)).toBe(false);
    a.socket.end();
    b.socket.end();
    expect(await metricValue(gateway.adminPort, PRECONNECT, { outcome: 'discarded' })).toBe(1);
    await gateway.close();
    await waitFor(() => isClosed(keptSpare), { what: 'the spare to close on drain' });
  });
});

describe('options', () => {
  test('bad limits and unknown policies are refused up front, naming the option', async () => {
    await expect(startGateway({ port: 0, adminPort: 0, limits: { helloTimeoutMs: -5 } })).rejects.toThrow(
      /limits\.helloTimeoutMs must be an integer/,
    );
    await expect(startGateway({ port: 0, adminPort: 0, lbPolicy: 'fastest' })).rejects.toThrow(
      /unknown load-balancing policy "fastest"; known: least-conn, round-robin/,
    );
    await expect(startGateway({ port: 70000 })).rejects.toThrow(/port must be a port from 0 to 65535/);
    await expect(startGateway({ port: 0, adminPort: 0, snapshot: { type: 'gateway/v1' } })).rejects.toThrow(
      /zone/,
    );
  });
});
