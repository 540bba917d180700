/**
 * Joins two sockets both ways with backpressure (pipe). When one side
 * closes, the other is ended (its buffered bytes still go out) and
 * destroyed shortly after if it lingers; an error on either side destroys
 * both. `done` runs once, when both are closed, with the byte counts.
 */

import type { Socket } from 'node:net';

export interface SpliceResult {
  /** Bytes from the downstream to the upstream. */
  received: number;
  /** Bytes from the upstream to the downstream. */
  sent: number;
  error: Error | undefined;
}

/** How long a side may linger after its peer closed. */
const LINGER_MS = 1000;

function lingerThenDestroy(socket: Socket): void {
  if (socket.destroyed) return;
  socket.end();
  setTimeout(destroySocket, LINGER_MS, socket).unref();
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}

/**
 * `registry` (the proxy's live tunnels) holds both sockets while they are
 * open, so a hard stop can cut them.
 */
export function splice(
  downstream: Socket,
  upstream: Socket,
  registry: Set<Socket>,
  done: (result: SpliceResult) => void,
): void {
  registry.add(downstream);
  registry.add(upstream);
  let closed = 0;
  let error: Error | undefined;
  const startRead = downstream.bytesRead;
  const startWritten = downstream.bytesWritten;
  const onError = (err: Error): void => {
    error ??= err;
    downstream.destroy();
    upstream.destroy();
  };
  const onClose = (): void => {
    closed++;
    if (downstream.destroyed) registry.delete(downstream);
    if (upstream.destroyed) registry.delete(upstream);
    if (closed === 1) {
      lingerThenDestroy(downstream);
      lingerThenDestroy(upstream);
      return;
    }
    registry.delete(downstream);
    registry.delete(upstream);
    done({ received: downstream.bytesRead - startRead, sent: downstream.bytesWritten - startWritten, error });
  };
  downstream.on('error', onError);
  upstream.on('error', onError);
  downstream.once('close', onClose);
  upstream.once('close', onClose);
  // A side that closed before the splice (a client gone while the upstream was still connecting)
  // will not say so again: end the other side now, or it stays open until its peer closes it.
  const closedBefore = [downstream, upstream].filter((socket) => socket.closed);
  if (closedBefore.length > 0) {
    for (const socket of closedBefore) socket.removeListener('close', onClose);
    downstream.destroy();
    upstream.destroy();
    for (let i = 0; i < closedBefore.length; i++) onClose();
    return;
  }
  downstream.pipe(upstream);
  upstream.pipe(downstream);
}
