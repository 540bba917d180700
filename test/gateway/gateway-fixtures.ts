/**
 * What the gateway integration tests stand up around the gateway, with real
 * certificates from one root and two zone intermediates:
 *
 *   zone-a client ──tap──▶ gateway ──tap──▶ zone-b "proxy" (mTLS) ──▶ app
 *
 * The zone-b proxy stand-in terminates mTLS (client certificate required,
 * chained to the shared root), reads the client's SPIFFE ID and forwards the
 * request to a plain HTTP app with the ID in a header. Taps are TCP relays
 * that record every byte in both directions, so a test can show what an
 * observer on either side of the gateway sees.
 */

import { X509Certificate, type KeyObject } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { createRootCa, generateKeyPair, loadCa, type CertificateAuthority } from '../../core/pki/ca.js';

export const TRUST_DOMAIN = 'cluster.local';

export interface Leaf {
  spiffeId: string;
  keyPem: string;
  /** Leaf + zone intermediate + root. */
  chainPem: string;
}

export interface MeshPki {
  rootPem: string;
  zoneA: CertificateAuthority;
  zoneB: CertificateAuthority;
  leaf(zone: CertificateAuthority, namespace: string, serviceAccount: string): Leaf;
}

function pem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** One mesh root, an intermediate per zone (signed by the root), leaves on demand. */
export function createMeshPki(): MeshPki {
  const root = createRootCa({ trustDomain: TRUST_DOMAIN });
  const rootCa = loadCa(root.certPem, root.keyPem);
  const intermediate = (name: string): CertificateAuthority => {
    const { privateKey, publicKey } = generateKeyPair();
    const certPem = rootCa.signIntermediate(publicKey, { name, ttlSeconds: 86_400 });
    return loadCa(certPem + root.certPem, pem(privateKey));
  };
  return {
    rootPem: root.certPem,
    zoneA: intermediate('meshfed zone-a CA'),
    zoneB: intermediate('meshfed zone-b CA'),
    leaf(zone, namespace, serviceAccount) {
      const { privateKey, publicKey } = generateKeyPair();
      const spiffeId = `spiffe://${TRUST_DOMAIN}/ns/${namespace}/sa/${serviceAccount}`;
      const cert = zone.signWorkload(publicKey, { spiffeId, ttlSeconds: 3600 });
      return { spiffeId, keyPem: pem(privateKey), chainPem: cert.chainPem };
    },
  };
}

/** The URI SAN of a peer certificate (the SPIFFE ID), or ''. */
export function spiffeIdOf(cert: { subjectaltname?: string } | undefined): string {
  const san = cert?.subjectaltname ?? '';
  const uri = san
    .split(',')
    .map((s) => s.trim())
    .find((s) => s.startsWith('URI:'));
  return uri === undefined ? '' : uri.slice(4);
}

export interface Closable {
  close(): Promise<void>;
}

function listen(server: net.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    if ('closeAllConnections' in server && typeof server.closeAllConnections === 'function') {
      server.closeAllConnections();
    }
  });
}

export interface AppRequest {
  method: string;
  url: string;
  body: string;
  /** The SPIFFE ID the zone-b proxy authenticated. */
  peer: string;
}

/** A plain HTTP app: records each request and answers `app:<body>` with the caller's identity in a header. */
export async function startApp(): Promise<Closable & { port: number; requests: AppRequest[] }> {
  const requests: AppRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const peer = String(req.headers['x-peer-spiffe-id'] ?? '');
      requests.push({ method: req.method ?? '', url: req.url ?? '', body, peer });
      const answer = `app-reply:${body}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'x-seen-peer': peer });
      res.end(answer);
    });
  });
  const port = await listen(server);
  return { port, requests, close: () => closeServer(server) };
}

export interface ZoneProxyStandIn extends Closable {
  port: number;
  spiffeId: string;
  /** SPIFFE IDs of the clients it authenticated, in order. */
  peers: string[];
  /** Raw TLS connections accepted. */
  connections(): number;
}

/**
 * The zone-b proxy stand-in: HTTPS with a required client certificate
 * chained to the mesh root, forwarding to the app with `x-peer-spiffe-id`.
 */
export async function startZoneProxy(pki: MeshPki, leaf: Leaf, appPort: number): Promise<ZoneProxyStandIn> {
  const peers: string[] = [];
  let connections = 0;
  const server = https.createServer(
    { key: leaf.keyPem, cert: leaf.chainPem, ca: pki.rootPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const peer = spiffeIdOf((req.socket as tls.TLSSocket).getPeerCertificate());
      peers.push(peer);
      const upstream = http.request(
        {
          host: '127.0.0.1',
          port: appPort,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, 'x-peer-spiffe-id': peer },
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => {
        res.writeHead(503);
        res.end('upstream connect error');
      });
      req.pipe(upstream);
    },
  );
  server.on('secureConnection', () => connections++);
  server.on('tlsClientError', () => undefined);
  const port = await listen(server);
  return {
    port,
    spiffeId: leaf.spiffeId,
    peers,
    connections: () => connections,
    close: () => closeServer(server),
  };
}

export interface Tap extends Closable {
  port: number;
  /** Bytes the connecting side sent through the tap (towards the target). */
  forward(): Buffer;
  /** Bytes the target sent back. */
  backward(): Buffer;
  /** Connections that reached the tap (each one the tap relays to its target). */
  connections(): number;
  /** Forget what was recorded. */
  reset(): void;
}

/** A recording TCP relay in front of `targetPort`: an observer on the wire. */
export async function startTap(targetPort: number): Promise<Tap> {
  let forward: Buffer[] = [];
  let backward: Buffer[] = [];
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    connections++;
    const target = net.connect({ port: targetPort, host: '127.0.0.1', allowHalfOpen: true });
    sockets.add(client);
    sockets.add(target);
    client.on('data', (c: Buffer) => forward.push(Buffer.from(c)));
    target.on('data', (c: Buffer) => backward.push(Buffer.from(c)));
    client.pipe(target);
    target.pipe(client);
    const cut = (): void => {
      client.destroy();
      target.destroy();
    };
    client.on('error', cut);
    target.on('error', cut);
    client.on('close', () => sockets.delete(client));
    target.on('close', () => sockets.delete(target));
  });
  const port = await listen(server);
  return {
    port,
    forward: () => Buffer.concat(forward),
    backward: () => Buffer.concat(backward),
    connections: () => connections,
    reset() {
      forward = [];
      backward = [];
      connections = 0;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await closeServer(server);
    },
  };
}

export interface MeshCallResult {
  status: number;
  body: string;
  seenPeer: string;
  /** The SPIFFE ID of the server the client's TLS session ended at. */
  serverId: string;
}

/**
 * A zone-a client's request through `port` with the mesh SNI, mTLS with its
 * zone-a leaf, verifying the server's SPIFFE ID (not a DNS name: the
 * session goes through a gateway to a workload identity).
 */
export function meshCall(
  pki: MeshPki,
  client: Leaf,
  port: number,
  sni: string,
  expectedServerId: string,
  body: string,
): Promise<MeshCallResult> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/orders',
        servername: sni,
        ...(client.keyPem ? { key: client.keyPem, cert: client.chainPem } : {}),
        ca: pki.rootPem,
        agent: false,
        headers: { 'content-type': 'text/plain' },
        checkServerIdentity: (_host, cert) => {
          const id = spiffeIdOf(cert);
          return id === expectedServerId
            ? undefined
            : new Error(`server is ${id}, expected ${expectedServerId}`);
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            seenPeer: String(res.headers['x-seen-peer'] ?? ''),
            serverId: spiffeIdOf((res.socket as tls.TLSSocket).getPeerCertificate()),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Raw bytes to the gateway; resolves with what came back and how the connection ended. */
export function rawExchange(
  port: number,
  chunks: Buffer[],
  options: { endAfter?: boolean } = {},
): Promise<{ received: Buffer; closedBy: 'server' | 'error' }> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const received: Buffer[] = [];
    socket.on('data', (c: Buffer) => received.push(c));
    socket.on('connect', () => {
      for (const chunk of chunks) socket.write(chunk);
      if (options.endAfter) socket.end();
    });
    let how: 'server' | 'error' = 'server';
    socket.on('error', () => (how = 'error'));
    socket.on('close', () => resolve({ received: Buffer.concat(received), closedBy: how }));
    socket.on('end', () => socket.end());
  });
}

/** The subject of a certificate chain's first cert, for assertions on the PKI itself. */
export function issuerOf(chainPem: string): string {
  return new X509Certificate(chainPem).issuer;
}

export interface RecordedConnection {
  socket: net.Socket;
  received(): Buffer;
  /** Bytes received so far (without joining them, for polling large transfers). */
  receivedBytes(): number;
  /** True once the peer half-closed (FIN). */
  ended(): boolean;
}

export interface RecorderServer extends Closable {
  port: number;
  accepted: RecordedConnection[];
}

/**
 * A plain TCP upstream for raw-byte tests: records what each connection
 * sends; when the peer half-closes it answers `bye:<bytes received>` and
 * ends its side, which only works if the half-close crossed the gateway.
 * `port` 0 (the default) picks a free one.
 */
export async function startRecorder(port = 0): Promise<RecorderServer> {
  const accepted: RecordedConnection[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let ended = false;
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      bytes += c.length;
    });
    socket.on('end', () => {
      ended = true;
      socket.end(`bye:${bytes}`);
    });
    socket.on('error', () => undefined);
    accepted.push({
      socket,
      received: () => Buffer.concat(chunks),
      receivedBytes: () => bytes,
      ended: () => ended,
    });
  });
  const bound = await listen(server, port);
  return {
    port: bound,
    accepted,
    close: async () => {
      for (const c of accepted) c.socket.destroy();
      await closeServer(server);
    },
  };
}

/** A port with nothing listening on it (bound, then released). */
export async function deadPort(): Promise<number> {
  const server = net.createServer();
  const port = await listen(server);
  await closeServer(server);
  return port;
}

/** Value of one Prometheus sample from the gateway's admin /metrics (0 when absent). */
export async function metricValue(
  adminPort: number,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  return (await exportedMetric(adminPort, name, labels)) ?? 0;
}

/** Like metricValue, but undefined when no series matches: for asserting a series is exported at all. */
export async function exportedMetric(
  adminPort: number,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  const text = await res.text();
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    const labelText = line.startsWith(name + '{') ? line.slice(name.length + 1, line.indexOf('}')) : '';
    if (!Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
    found = true;
  }
  return found ? total : undefined;
}

/** A TLS handshake attempt through the gateway; resolves with how it ended (never rejects). */
export function tlsAttempt(
  port: number,
  servername: string | undefined,
  options: { key?: string; cert?: string; ca?: string } = {},
): Promise<{ secure: boolean; error: string | undefined; bytesReceived: number }> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ...(servername === undefined ? {} : { servername }),
      ...options,
      rejectUnauthorized: false,
    });
    let secure = false;
    let error: string | undefined;
    socket.on('secureConnect', () => {
      secure = true;
      socket.end();
    });
    socket.on('error', (err) => (error = err.message));
    socket.on('close', () => resolve({ secure, error, bytesReceived: socket.bytesRead }));
  });
}
