/**
 * The baseline for the control-plane bench: an MDS server that compiles
 * nothing. Same proto, same TLS, same client; on `push` it writes one
 * fixed snapshot of the measured size to every open stream. The zone CP's
 * convergence divided by this one is what compiling, scoping and
 * bookkeeping cost.
 */

import { randomBytes } from 'node:crypto';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { loadService } from '../../core/ca/grpc-service.js';
import { ZONE_CP_SERVER_NAME } from '../../core/ca/zone-channel.js';
import { MDS_SERVICE, type ControlMessageWire, type ProxyMessageWire } from '../../core/mds/mds-messages.js';
import { createRootCa, generateKeyPair, loadCa } from '../../core/pki/ca.js';

const root = createRootCa({ trustDomain: 'cluster.local' });
const ca = loadCa(root.certPem, root.keyPem);
const { privateKey, publicKey } = generateKeyPair();
const serverCert = ca.signWorkload(publicKey, {
  spiffeId: 'spiffe://cluster.local/ns/bench/sa/echo',
  dnsNames: [ZONE_CP_SERVER_NAME],
});

const streams = new Set<ServerDuplexStream<ProxyMessageWire, ControlMessageWire>>();
let payload = Buffer.from('{}');
let version = 'v0';

const server = new Server({ 'grpc.max_receive_message_length': 1024 * 1024 });
server.addService(loadService('mds.proto', MDS_SERVICE).service, {
  Stream(call: ServerDuplexStream<ProxyMessageWire, ControlMessageWire>) {
    call.on('data', (message: ProxyMessageWire) => {
      if (message.message === 'hello') {
        streams.add(call);
        call.write({
          snapshot: {
            version,
            nonce: randomBytes(12).toString('base64url'),
            type: 'sidecar/v1',
            json: payload,
          },
        });
      }
    });
    const drop = (): void => {
      streams.delete(call);
    };
    call.on('end', () => {
      drop();
      call.end();
    });
    call.on('error', drop);
    call.on('cancelled', drop);
  },
});
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync(
    '127.0.0.1:0',
    ServerCredentials.createSsl(null, [
      {
        private_key: Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()),
        cert_chain: Buffer.from(serverCert.chainPem),
      },
    ]),
    (err, bound) => (err ? reject(err) : resolve(bound)),
  ),
);
process.stdout.write(JSON.stringify({ grpcAddress: `127.0.0.1:${port}`, caPem: root.certPem }) + '\n');

process.on('message', (message: { type?: string; bytes?: number }) => {
  if (message.type === 'cpu') {
    const usage = process.cpuUsage();
    process.send?.({ type: 'cpu', seconds: (usage.user + usage.system) / 1e6 });
    return;
  }
  if (message.type !== 'push') return;
  version = `v${Date.now()}`;
  // A JSON object of the requested size, so the client parses as much as it would.
  const filler = 'x'.repeat(Math.max(0, (message.bytes ?? 2) - 16));
  payload = Buffer.from(JSON.stringify({ filler, version }));
  for (const call of streams) {
    call.write({
      snapshot: { version, nonce: randomBytes(12).toString('base64url'), type: 'sidecar/v1', json: payload },
    });
  }
  process.send?.({ type: 'pushed', streams: streams.size });
});
process.on('SIGTERM', () => {
  server.forceShutdown();
  process.exit(0);
});
process.on('disconnect', () => process.exit(0));
