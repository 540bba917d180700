/**
 * Protocols through two real proxies: WebSocket upgrades, HTTP/2 with
 * prior knowledge from the app (h2c), HTTP/2 between proxies, gRPC (unary,
 * server streaming, error statuses in trailers), opaque TCP on a
 * per-service port and through an HTTP CONNECT tunnel.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import type { InboundPort, IstioObject, ServicePort, SidecarSnapshot } from '../../core/mesh/snapshot.js';
import { waitFor } from '../common/wait.js';
import {
  createTestMesh,
  keepAlive,
  metricValue,
  request,
  scrape,
  sidecarEndpoint,
  sidecarSnapshot,
  startTestProxy,
  type TestProxy,
} from './proxy-harness.js';

const mesh = createTestMesh();
const NS = 'proto';
const serverW = { workload: 'echo', namespace: NS, serviceAccount: 'echo' };
const clientW = { workload: 'caller', namespace: NS };

const closers: Array<() => Promise<void> | void> = [];
let server: TestProxy;
let client: TestProxy;

function listen(s: net.Server | http.Server | http2.Http2Server): Promise<number> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)));
}

const raw = (b: Buffer): Buffer => b;
const echoService: grpc.ServiceDefinition = {
  Echo: {
    path: '/test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
  Count: {
    path: '/test.Echo/Count',
    requestStream: false,
    responseStream: true,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
  Fail: {
    path: '/test.Echo/Fail',
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
};

let ports: { ws: number; h1: number; h2: number; grpc: number; tcp: number };
const SERVICE_PORTS: ServicePort[] = [
  { name: 'ws', port: 8080, protocol: 'http' },
  { name: 'h1', port: 8081, protocol: 'http' },
  { name: 'h2', port: 8082, protocol: 'http2' },
  { name: 'grpc', port: 50051, protocol: 'grpc' },
  { name: 'pg', port: 5432, protocol: 'tcp' },
];

beforeAll(async () => {
  // A WebSocket-ish app: answers 101 and then echoes raw bytes.
  const ws = http.createServer((_req, res) => res.end('not an upgrade'));
  ws.on('upgrade', (req, socket: net.Socket) => {
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nx-saw-client: ${String(req.headers['x-forwarded-client-cert'] ?? '')}\r\nx-saw-request-id: ${JSON.stringify(req.rawHeaders.filter((_, i, all) => i % 2 === 1 && all[i - 1]?.toLowerCase() === 'x-request-id'))}\r\n\r\n`,
    );
    socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    socket.on('end', () => socket.end());
  });
  const h1 = http.createServer((req, res) => {
    const answer = (): void => void res.end(`h1 app saw HTTP/${req.httpVersion} ${req.url ?? ''}`);
    // /slow/…: held a moment, so that concurrent requests are in flight together.
    if (req.url?.startsWith('/slow/')) setTimeout(answer, 50);
    else answer();
  });
  const h2 = http2.createServer();
  h2.on('stream', (stream, headers) => {
    stream.respond({ ':status': 200, 'content-type': 'text/plain' });
    stream.end(`h2 app saw ${String(headers[':path'])}`);
  });
  const grpcServer = new grpc.Server();
  grpcServer.addService(echoService, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
      cb(null, Buffer.concat([Buffer.from('echo:'), call.request])),
    Count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      for (let i = 1; i <= 5; i++) call.write(Buffer.from(String(i)));
      call.end();
    },
    Fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
      cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' }),
  });
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
  const tcp = net.createServer((socket) =>
    socket.on('data', (d: Buffer) => socket.write(`pong:${d.toString()}`)),
  );
  ports = {
    ws: await listen(ws),
    h1: await listen(h1),
    h2: await listen(h2),
    grpc: grpcPort,
    tcp: await listen(tcp),
  };
  closers.push(
    () => new Promise<void>((r) => ws.close(() => r())),
    () => new Promise<void>((r) => h1.close(() => r())),
    () => new Promise<void>((r) => h2.close(() => r())),
    () => grpcServer.forceShutdown(),
    () => new Promise<void>((r) => tcp.close(() => r())),
  );

  const inbound: InboundPort[] = [
    { port: 8080, targetPort: ports.ws, protocol: 'http', mtls: 'STRICT' },
    { port: 8081, targetPort: ports.h1, protocol: 'http', mtls: 'STRICT' },
    { port: 8082, targetPort: ports.h2, protocol: 'http2', mtls: 'STRICT' },
    { port: 50051, targetPort: ports.grpc, protocol: 'grpc', mtls: 'STRICT' },
    { port: 5432, targetPort: ports.tcp, protocol: 'tcp', mtls: 'STRICT' },
  ];
  server = await startTestProxy(
    mesh,
    serverW,
    sidecarSnapshot({ ...serverW, roots: [mesh.rootPem], inboundPorts: inbound, defaultMtls: 'STRICT' }),
  );
  client = await startTestProxy(mesh, clientW, clientSnapshot(), {
    tcpListeners: [{ service: 'echo.proto', port: 5432, listenPort: 0 }],
  });
});

/** The client's view of the echo service on every protocol port, through the server proxy. */
function clientSnapshot(trafficPolicy: IstioObject = {}): SidecarSnapshot {
  return sidecarSnapshot({
    ...clientW,
    roots: [mesh.rootPem],
    services: [
      {
        name: 'echo',
        namespace: NS,
        ports: SERVICE_PORTS,
        clusters: [
          { subset: '_', trafficPolicy, endpoints: [sidecarEndpoint(server.handle.ports.inbound, serverW)] },
        ],
      },
    ],
  });
}

afterAll(async () => {
  keepAlive.destroy();
  await client?.close();
  await server?.close();
  for (const c of closers) await c();
});

describe('WebSocket', () => {
  /** Upgrades through the client proxy; resolves with the tunnel and the 101's headers. */
  function upgrade(
    extraHeaders: Record<string, string> = {},
  ): Promise<{ socket: net.Socket; headers: http.IncomingHttpHeaders }> {
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port: client.handle.ports.outbound,
        path: '/chat',
        headers: {
          host: 'echo:8080',
          connection: 'Upgrade',
          upgrade: 'websocket',
          'sec-websocket-version': '13',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
          ...extraHeaders,
        },
      });
      req.on('upgrade', (res: http.IncomingMessage, socket: net.Socket) => {
        expect(res.statusCode).toBe(101);
        resolve({ socket, headers: res.headers });
      });
      req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
      req.on('error', reject);
      req.end();
    });
  }

  it('gives an upgrade request one x-request-id, as any other request: kept when set, new when missing or empty', async () => {
    const UUID = /^\["[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"\]$/;
    const kept = await upgrade({ 'x-request-id': 'req-42' });
    kept.socket.destroy();
    expect(kept.headers['x-saw-request-id']).toBe('["req-42"]');
    const missing = await upgrade();
    missing.socket.destroy();
    expect(missing.headers['x-saw-request-id']).toMatch(UUID);
    const empty = await upgrade({ 'x-request-id': '' });
    empty.socket.destroy();
    expect(empty.headers['x-saw-request-id']).toMatch(UUID);
  });

  it('passes the upgrade and then both directions of the stream', async () => {
    const { socket, headers } = await upgrade();
    expect(headers['x-saw-client']).toContain('URI=spiffe://cluster.local/ns/proto/sa/caller');
    const reply = await new Promise<string>((resolve) => {
      socket.once('data', (d: Buffer) => resolve(d.toString()));
      socket.write('hello over the mesh');
    });
    expect(reply).toBe('echo:hello over the mesh');
    socket.destroy();
  });
});

async function h2Get(authority: string, path: string): Promise<{ status: number; body: string }> {
  const session = http2.connect(`http://127.0.0.1:${client.handle.ports.outbound}`);
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({ ':authority': authority, ':path': path });
      let status = 0;
      let body = '';
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('data', (c: Buffer) => (body += c.toString()));
      stream.on('end', () => resolve({ status, body }));
      stream.on('error', reject);
      stream.end();
    });
  } finally {
    session.close();
  }
}

describe('HTTP/2', () => {
  it('takes h2c from the app and speaks HTTP/1.1 to an HTTP/1.1 app', async () => {
    expect(await h2Get('echo:8081', '/via-h2c')).toEqual({
      status: 200,
      body: 'h1 app saw HTTP/1.1 /via-h2c',
    });
  });

  it('speaks HTTP/2 end to end on an http2 port', async () => {
    expect(await h2Get('echo:8082', '/h2-all-the-way')).toEqual({
      status: 200,
      body: 'h2 app saw /h2-all-the-way',
    });
    expect((await request(client.handle.ports.outbound, 'echo:8082', '/from-h1')).body).toBe(
      'h2 app saw /from-h1',
    );
    const stats = (await (await fetch(`${client.admin}/clusters`)).json()) as Array<{
      name: string;
      h2: boolean;
    }>;
    expect(stats.find((c) => c.name === `outbound|8082||echo.${NS}.svc.cluster.local`)?.h2).toBe(true);
  });
});

interface ClusterView {
  name: string;
  endpoints: Array<{ protocol: string; connections: number }>;
}

async function h1Cluster(): Promise<ClusterView | undefined> {
  const clusters = (await (await fetch(`${client.admin}/clusters`)).json()) as ClusterView[];
  return clusters.find((c) => c.name === `outbound|8081||echo.${NS}.svc.cluster.local`);
}

describe('HTTP/2 between proxies', () => {
  it("multiplexes an HTTP/1.1 app's concurrent requests over one connection, and the app still sees HTTP/1.1", async () => {
    const agent = new http.Agent({ keepAlive: true });
    try {
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          request(client.handle.ports.outbound, 'echo:8081', `/slow/${i}`, { agent }),
        ),
      );
      expect(answers.map((a) => a.body)).toEqual(
        Array.from({ length: 20 }, (_, i) => `h1 app saw HTTP/1.1 /slow/${i}`),
      );
    } finally {
      agent.destroy();
    }
    expect((await h1Cluster())?.endpoints[0]).toEqual(
      expect.objectContaining({ protocol: 'h2', connections: 1 }),
    );
  });

  it('keeps HTTP/1.1 between proxies under h2UpgradePolicy DO_NOT_UPGRADE', async () => {
    client.handle.applySnapshot(
      clientSnapshot({ connectionPool: { http: { h2UpgradePolicy: 'DO_NOT_UPGRADE' } } }),
    );
    try {
      await waitFor(async () => (await h1Cluster())?.endpoints[0]?.protocol === 'http/1.1');
      const answer = await request(client.handle.ports.outbound, 'echo:8081', '/after');
      expect(answer.body).toBe('h1 app saw HTTP/1.1 /after');
    } finally {
      client.handle.applySnapshot(clientSnapshot());
    }
  });
});

describe('gRPC', () => {
  const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
  let stub: grpc.Client & Record<string, (...args: unknown[]) => unknown>;

  beforeAll(() => {
    stub = new Client(`127.0.0.1:${client.handle.ports.outbound}`, grpc.credentials.createInsecure(), {
      'grpc.default_authority': 'echo.proto:50051',
    }) as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  });

  afterAll(() => stub.close());

  it('passes unary calls', async () => {
    const reply = await new Promise<Buffer>((resolve, reject) =>
      stub.Echo?.(Buffer.from('ping'), (err: grpc.ServiceError | null, value: Buffer) =>
        err ? reject(err) : resolve(value),
      ),
    );
    expect(reply.toString()).toBe('echo:ping');
  });

  it('passes server streaming with the trailers', async () => {
    const call = stub.Count?.(Buffer.from('')) as grpc.ClientReadableStream<Buffer>;
    const items: string[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      call.on('data', (b: Buffer) => items.push(b.toString()));
      call.on('status', resolve);
      call.on('error', () => undefined);
    });
    expect(items).toEqual(['1', '2', '3', '4', '5']);
    expect(status.code).toBe(grpc.status.OK);
  });

  it('passes error statuses and counts them by grpc_response_status', async () => {
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      stub.Fail?.(Buffer.from('x'), (e: grpc.ServiceError | null) => resolve(e as grpc.ServiceError)),
    );
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.details).toBe('no such thing');
    const text = await scrape(client.metrics);
    expect(
      metricValue(text, 'istio_requests_total', {
        request_protocol: 'grpc',
        grpc_response_status: '5',
        reporter: 'source',
      }),
    ).toBe(1);
  });
});

describe('opaque TCP', () => {
  function talk(socket: net.Socket, text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      socket.once('data', (d: Buffer) => resolve(d.toString()));
      socket.once('error', reject);
      socket.write(text);
    });
  }

  it('proxies a per-service TCP listener over mTLS to the app port the SNI names', async () => {
    const local = client.handle.ports.tcp['echo.proto:5432'];
    expect(local).toBeGreaterThan(0);
    const socket = net.connect({ host: '127.0.0.1', port: local ?? 0 });
    await new Promise((resolve) => socket.once('connect', resolve));
    expect(await talk(socket, 'ping-1')).toBe('pong:ping-1');
    expect(await talk(socket, 'ping-2')).toBe('pong:ping-2');
    socket.destroy();
    const text = await scrape(client.metrics);
    expect(
      metricValue(text, 'istio_tcp_connections_opened_total', {
        reporter: 'source',
        destination_service_name: 'echo',
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('maxConnections refuses the connection over the limit, and frees the slot when one closes', async () => {
    const limited = (trafficPolicy: IstioObject): void =>
      client.handle.applySnapshot(clientSnapshot(trafficPolicy));
    limited({ connectionPool: { tcp: { maxConnections: 1 } } });
    const local = client.handle.ports.tcp['echo.proto:5432'] ?? 0;
    const open = async (): Promise<net.Socket> => {
      const socket = net.connect({ host: '127.0.0.1', port: local });
      await new Promise((resolve) => socket.once('connect', resolve));
      return socket;
    };
    try {
      const first = await open();
      expect(await talk(first, 'one')).toBe('pong:one');
      const second = await open();
      // Over the limit: closed without an answer (UO).
      await new Promise((resolve) => second.once('close', resolve));
      const closed = new Promise((resolve) => first.once('close', resolve));
      first.destroy();
      await closed;
      // The slot the first one held is free again: twice, so a leaked slot would show.
      // Another connection gets through once the first one's slot is released (its upstream side
      // closes just after), twice over, so that a slot kept by the refused connection would show.
      for (const text of ['three', 'four']) {
        await waitFor(
          async () => {
            const next = await open();
            const reply = await Promise.race([
              talk(next, text).catch(() => 'error'),
              new Promise<string>((resolve) => next.once('close', () => resolve('closed'))),
            ]);
            if (!next.closed) {
              const gone = new Promise((resolve) => next.once('close', resolve));
              next.destroy();
              await gone;
            }
            return reply === `pong:${text}` || undefined;
          },
          { what: `a connection after the first closed (${text})`, timeoutMs: 5000 },
        );
      }
    } finally {
      limited({});
    }
  });

  it('tunnels TCP through HTTP CONNECT on the outbound port', async () => {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port: client.handle.ports.outbound,
        method: 'CONNECT',
        path: 'echo.proto:5432',
      });
      req.on('connect', (res: http.IncomingMessage, s: net.Socket) => {
        expect(res.statusCode).toBe(200);
        resolve(s);
      });
      req.on('error', reject);
      req.end();
    });
    expect(await talk(socket, 'via-connect')).toBe('pong:via-connect');
    socket.destroy();
    const refused = await new Promise<number>((resolve) => {
      const req = http.request({
        host: '127.0.0.1',
        port: client.handle.ports.outbound,
        method: 'CONNECT',
        path: 'unknown.proto:5432',
      });
      req.on('connect', (res: http.IncomingMessage, s: net.Socket) => {
        s.destroy();
        resolve(res.statusCode ?? 0);
      });
      req.on('response', (res) => resolve(res.statusCode ?? 0));
      req.on('error', () => resolve(-1));
      req.end();
    });
    expect(refused).toBe(404);
    const server = await scrape(client.metrics);
    expect(
      metricValue(server, 'istio_tcp_connections_closed_total', { reporter: 'source' }),
    ).toBeGreaterThanOrEqual(1);
  });
});
