/**
 * A free TCP port to hand to something that binds it later (the demo
 * announces a gateway's port before the gateway starts; a VM registers its
 * ports at join; tests start redis-server on a port they chose).
 *
 * Why not `listen(0)` and close: that port comes from the kernel's
 * ephemeral range, the same range every outgoing connection takes its
 * local port from. In the seconds between picking and binding, any
 * connection on the host (gRPC streams, health checks, a parallel test)
 * may be given that very port, and the later bind fails with EADDRINUSE.
 * That happened in CI. A port below the ephemeral range is only ever
 * taken by someone binding it by number.
 */

import { readFileSync } from 'node:fs';
import net from 'node:net';
import { ErrorCodes, MeshError } from './errors.js';

/** Linux's default when /proc cannot be read. */
const DEFAULT_EPHEMERAL: readonly [number, number] = [32768, 60999];
/** Ports below this are left to well-known and registered services. */
const LOWEST_PICKED = 10000;
const ATTEMPTS = 64;

/** The kernel's ephemeral port range, [low, high]. */
export function ephemeralPortRange(procFile = '/proc/sys/net/ipv4/ip_local_port_range'): [number, number] {
  try {
    const [low, high] = readFileSync(procFile, 'utf8').trim().split(/\s+/).map(Number);
    if (
      low !== undefined &&
      high !== undefined &&
      Number.isInteger(low) &&
      Number.isInteger(high) &&
      low <= high
    )
      return [low, high];
  } catch {
    // Not Linux, or /proc not mounted: assume the default.
  }
  return [DEFAULT_EPHEMERAL[0], DEFAULT_EPHEMERAL[1]];
}

/** The ports worth trying: the widest span outside the ephemeral range, above LOWEST_PICKED. */
export function pickableSpan([low, high]: [number, number]): [number, number] | undefined {
  const below: [number, number] = [LOWEST_PICKED, low - 1];
  const above: [number, number] = [Math.max(LOWEST_PICKED, high + 1), 65535];
  const size = ([a, b]: [number, number]): number => b - a + 1;
  const best = size(below) >= size(above) ? below : above;
  // Too few to pick from at random without colliding: use the kernel's choice.
  return size(best) >= 1000 ? best : undefined;
}

/** Resolves true if `port` could be bound on `host` just now. */
export function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port the kernel would pick itself (listen on 0); the fallback. */
function kernelPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address !== null
          ? resolve(address.port)
          : reject(new MeshError(ErrorCodes.INTERNAL, `could not pick a free port on ${host}`)),
      );
    });
  });
}

/**
 * A port free on `host` now, outside the ephemeral range so that no
 * outgoing connection takes it before the caller binds it.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const span = pickableSpan(ephemeralPortRange());
  if (span !== undefined) {
    const [from, to] = span;
    for (let i = 0; i < ATTEMPTS; i++) {
      const port = from + Math.floor(Math.random() * (to - from + 1));
      if (await canBind(port, host)) return port;
    }
  }
  return kernelPort(host);
}
