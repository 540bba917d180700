// The application of a compose "VM" (deploy/compose/Dockerfile): answers
// every request with this machine's name, so that a caller through the mesh
// can see which VM served it. It listens on loopback only: the mesh sidecar
// on the same machine is its one client.
import { Buffer } from 'node:buffer';
import http from 'node:http';
import os from 'node:os';
import process from 'node:process';

const port = Number(process.env.PORT ?? 8080);
const host = process.env.HOST ?? '127.0.0.1';

const server = http.createServer((req, res) => {
  const body = JSON.stringify({ vm: os.hostname(), method: req.method, path: req.url }) + '\n';
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.listen(port, host, () => process.stdout.write(`sample app on ${host}:${port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
