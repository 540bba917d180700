/** Port probes for tests that check something listens, or no longer does. */

import net from 'node:net';

/** True if a TCP connection to host:port is accepted. */
export function isListening(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A TCP server listening on 127.0.0.1:`port` (0: any free port); rejects with the listen error. */
export function listenLocal(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
