/**
 * TLS backend for the gateway benchmark (its own process): mTLS with a mesh
 * leaf, one request line per connection:
 *   `small\n`  → answers `ok\n` and closes (connection rate, time to first byte)
 *   `stream\n` → writes 64 KiB chunks as fast as the client reads (bulk)
 * Usage: node gateway-tls-backend.js <config.json>  (prints `listening <port>`)
 */

import { readFileSync } from 'node:fs';
import tls from 'node:tls';

interface BackendConfig {
  keyFile: string;
  certFile: string;
  caFile: string;
}

const config = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as BackendConfig;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);
const OK = Buffer.from('ok\n');

function stream(socket: tls.TLSSocket): void {
  const pump = (): void => {
    while (!socket.destroyed && socket.write(CHUNK)) {
      // keep writing until the socket asks us to wait
    }
  };
  socket.on('drain', pump);
  pump();
}

const server = tls.createServer(
  {
    key: readFileSync(config.keyFile),
    cert: readFileSync(config.certFile),
    ca: readFileSync(config.caFile),
    requestCert: true,
    rejectUnauthorized: true,
    // Nagle would hold the handshake's small writes for delayed ACKs, on every path alike.
    noDelay: true,
  },
  (socket) => {
    socket.on('error', () => undefined);
    let line = '';
    const onData = (chunk: Buffer): void => {
      line += chunk.toString('latin1');
      if (!line.includes('\n')) return;
      socket.off('data', onData);
      if (line.startsWith('stream')) {
        socket.resume();
        stream(socket);
      } else {
        socket.end(OK);
      }
    };
    socket.on('data', onData);
  },
);
server.on('tlsClientError', () => undefined);
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.on('SIGTERM', () => process.exit(0));
