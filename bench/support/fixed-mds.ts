/**
 * An MDS server for the data-plane benchmark, in the bench's own process:
 * it answers each proxy's Hello with the fixed snapshot registered for its
 * workload, over the zone CP's proto and TLS (server name
 * `meshfed-zone-cp`, a certificate from the benchmark's mesh root). The
 * proxies then run as deployed sidecars do, config over an open MDS stream
 * (the gRPC client, its keepalive pings, the stream's buffers), rather than
 * from a snapshot file, so their memory is a deployed sidecar's.
 */

import { randomBytes } from 'node:crypto';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { loadService } from '../../core/ca/grpc-service.js';
import { MDS_SERVICE, type ControlMessageWire, type ProxyMessageWire } from '../../core/mds/mds-messages.js';

export interface FixedMds {
  /** host:port for `--mds-address`. */
  address: string;
  /** The snapshot (JSON) the proxy of this workload gets. */
  register(workload: string, snapshot: unknown): void;
  close(): void;
}

/** `server`: a certificate chain with the DNS name meshfed-zone-cp, and its key. */
export async function startFixedMds(server: { certChainPem: string; keyPem: string }): Promise<FixedMds> {
  const snapshots = new Map<string, Buffer>();
  const grpcServer = new Server();
  grpcServer.addService(loadService('mds.proto', MDS_SERVICE).service, {
    Stream(call: ServerDuplexStream<ProxyMessageWire, ControlMessageWire>) {
      call.on('data', (message: ProxyMessageWire) => {
        if (message.message === 'nack') {
          process.stderr.write(`a bench proxy refused its snapshot: ${message.nack?.error ?? ''}\n`);
        }
        if (message.message !== 'hello') return;
        const json = snapshots.get(message.hello?.workload ?? '');
        if (json === undefined) {
          call.destroy(new Error(`no snapshot for workload ${message.hello?.workload ?? ''}`));
          return;
        }
        call.write({
          snapshot: { version: 'v1', nonce: randomBytes(12).toString('base64url'), type: 'sidecar/v1', json },
        });
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(
      '127.0.0.1:0',
      ServerCredentials.createSsl(null, [
        { private_key: Buffer.from(server.keyPem), cert_chain: Buffer.from(server.certChainPem) },
      ]),
      (err, bound) => (err ? reject(err) : resolve(bound)),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    register: (workload, snapshot) => snapshots.set(workload, Buffer.from(JSON.stringify(snapshot))),
    close: () => grpcServer.forceShutdown(),
  };
}
