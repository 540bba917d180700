/**
 * An in-process MDS server for tests (the shape of grpc-js-xds's test
 * xds-server): it speaks `meshfed.mds.v1.ProxyDiscovery/Stream` over TLS
 * like a zone CP, records each proxy's Hello, pushes the snapshots a test
 * gives it with fresh nonces, and records every ACK and NACK so a test can
 * assert what the proxy accepted and refused.
 *
 * The TLS certificate must carry the DNS SAN `meshfed-zone-cp` (MDS
 * clients check it): `zoneCpServerCredentials()` in pki-fixtures makes one.
 */

import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { loadService } from '../../core/ca/grpc-service.js';
import {
  MDS_SERVICE,
  type ControlMessageWire,
  type HelloWire,
  type ProxyMessageWire,
} from '../../core/mds/mds-messages.js';
import { waitFor } from './wait.js';

export interface MdsTestServerOptions {
  /** Server certificate chain and key (DNS SAN meshfed-zone-cp). */
  certChainPem: string;
  keyPem: string;
  /** Roots client certificates may chain to (for proxies authenticating with their workload certificate). */
  clientCaPem?: string;
}

export interface MdsResponse {
  kind: 'ack' | 'nack';
  version: string;
  nonce: string;
  error: string;
  proxyId: string;
}

export interface MdsPush {
  /** Snapshot type; default sidecar/v1. */
  type?: string;
  /** Parsed JSON (serialised here), or raw bytes to send as is (for malformed-payload tests). */
  json: unknown;
  /** Default: a content hash stand-in (random). */
  version?: string;
}

interface Stream {
  call: ServerDuplexStream<ProxyMessageWire, ControlMessageWire>;
  hello: HelloWire | undefined;
  authorization: string;
}

export interface MdsTestServer {
  /** host:port to dial. */
  readonly address: string;
  readonly hellos: HelloWire[];
  readonly responses: MdsResponse[];
  /** Streams open now (after Hello). */
  connectedProxies(): string[];
  /** Waits until `proxyId` (or any proxy) has said Hello. */
  waitForProxy(proxyId?: string, timeoutMs?: number): Promise<HelloWire>;
  /** Pushes to `proxyId` (or every connected proxy); returns the nonce(s) used. */
  push(snapshot: MdsPush, proxyId?: string): string[];
  /** The ACK or NACK for a nonce. */
  waitForResponse(nonce: string, timeoutMs?: number): Promise<MdsResponse>;
  /** The bearer token a proxy sent, if any. */
  authorizationOf(proxyId: string): string | undefined;
  /** Ends every stream (proxies reconnect). */
  disconnectAll(): void;
  close(): Promise<void>;
}

export async function startMdsTestServer(options: MdsTestServerOptions): Promise<MdsTestServer> {
  const { service } = loadService('mds.proto', MDS_SERVICE);
  const server = new Server();
  const streams = new Set<Stream>();
  const hellos: HelloWire[] = [];
  const responses: MdsResponse[] = [];
  server.addService(service, {
    Stream(call: ServerDuplexStream<ProxyMessageWire, ControlMessageWire>) {
      const auth = call.metadata.get('authorization')[0];
      const stream: Stream = { call, hello: undefined, authorization: typeof auth === 'string' ? auth : '' };
      streams.add(stream);
      call.on('data', (message: ProxyMessageWire) => {
        if (message.message === 'hello' && message.hello) {
          stream.hello = message.hello;
          hellos.push(message.hello);
        } else if (
          (message.message === 'ack' && message.ack) ||
          (message.message === 'nack' && message.nack)
        ) {
          const r = message.ack ?? message.nack;
          if (r) {
            responses.push({
              kind: message.message,
              version: r.version,
              nonce: r.nonce,
              error: message.nack?.error ?? '',
              proxyId: stream.hello?.proxy_id ?? '',
            });
          }
        }
      });
      const drop = (): void => {
        streams.delete(stream);
      };
      call.on('end', () => {
        drop();
        call.end();
      });
      call.on('error', drop);
      call.on('cancelled', drop);
    },
  });
  const credentials = ServerCredentials.createSsl(
    options.clientCaPem === undefined ? null : Buffer.from(options.clientCaPem),
    [{ cert_chain: Buffer.from(options.certChainPem), private_key: Buffer.from(options.keyPem) }],
    false,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  const address = `127.0.0.1:${port}`;

  const connected = (): Stream[] => [...streams].filter((s) => s.hello !== undefined);
  return {
    address,
    hellos,
    responses,
    connectedProxies: () => connected().map((s) => s.hello?.proxy_id ?? ''),
    waitForProxy: (proxyId, timeoutMs = 10_000) =>
      waitFor(() => connected().find((s) => proxyId === undefined || s.hello?.proxy_id === proxyId)?.hello, {
        timeoutMs,
        what: `MDS Hello from ${proxyId ?? 'a proxy'}`,
      }),
    push(snapshot, proxyId) {
      const nonces: string[] = [];
      for (const s of connected()) {
        if (proxyId !== undefined && s.hello?.proxy_id !== proxyId) continue;
        const nonce = randomUUID();
        const json = Buffer.isBuffer(snapshot.json)
          ? snapshot.json
          : Buffer.from(JSON.stringify(snapshot.json));
        s.call.write({
          message: 'snapshot',
          snapshot: {
            version: snapshot.version ?? randomUUID().slice(0, 8),
            nonce,
            type: snapshot.type ?? 'sidecar/v1',
            json,
          },
        });
        nonces.push(nonce);
      }
      return nonces;
    },
    waitForResponse: (nonce, timeoutMs = 10_000) =>
      waitFor(() => responses.find((r) => r.nonce === nonce), {
        timeoutMs,
        what: `ACK/NACK for nonce ${nonce}`,
      }),
    authorizationOf: (proxyId) => connected().find((s) => s.hello?.proxy_id === proxyId)?.authorization,
    disconnectAll() {
      for (const s of streams) s.call.end();
      streams.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of streams) s.call.end();
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000).unref();
      }),
  };
}
