/**
 * One port, several protocols: the first bytes of a connection tell a TLS
 * ClientHello (0x16), the HTTP/2 prior-knowledge preface ("PRI * HTTP/2.0")
 * and HTTP/1.x apart. Costs one look per connection, nothing per request.
 *
 * Handing over matters: the HTTP/1 server reads straight from the socket
 * handle, so the bytes already read are re-emitted as 'data' right after
 * 'connection'; TLS and HTTP/2 take them back through unshift().
 */

import type { Socket } from 'node:net';

export type SniffedProtocol = 'tls' | 'h2c' | 'h1';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n');

export interface SniffHandlers {
  /** Called synchronously with the bytes read so far; re-inject them as described above. */
  decide(protocol: SniffedProtocol, socket: Socket, first: Buffer): void;
}

function classify(buf: Buffer): SniffedProtocol | undefined {
  if (buf[0] === 0x16) return 'tls';
  const n = Math.min(buf.length, PREFACE.length);
  for (let i = 0; i < n; i++) if (buf[i] !== PREFACE[i]) return 'h1';
  return n === PREFACE.length ? 'h2c' : undefined;
}

/**
 * Reads until the protocol is known (a `timeoutMs` without a byte closes
 * the connection) and calls `handlers.decide`.
 */
export function sniffProtocol(socket: Socket, timeoutMs: number, handlers: SniffHandlers): void {
  let buffered: Buffer | undefined;
  socket.setTimeout(timeoutMs);
  const onTimeout = (): void => {
    socket.destroy();
  };
  const onData = (chunk: Buffer): void => {
    const data = buffered === undefined ? chunk : Buffer.concat([buffered, chunk]);
    const protocol = classify(data);
    if (protocol === undefined) {
      buffered = data;
      return;
    }
    socket.removeListener('data', onData);
    socket.removeListener('timeout', onTimeout);
    socket.setTimeout(0);
    handlers.decide(protocol, socket, data);
  };
  socket.on('timeout', onTimeout);
  socket.on('data', onData);
  socket.on('error', onSniffError);
}

function onSniffError(this: Socket): void {
  this.destroy();
}

/** Hands a sniffed socket to a server that reads through the stream (TLS, HTTP/2). */
export function handOverByUnshift(
  socket: Socket,
  first: Buffer,
  server: { emit(event: 'connection', socket: Socket): boolean },
): void {
  socket.pause();
  socket.unshift(first);
  server.emit('connection', socket);
}

/** Hands a socket to an HTTP/1 server (which consumes the socket handle directly), with the bytes already read from it. */
export function handOverToHttp1(
  socket: Socket,
  first: Buffer | undefined,
  server: { emit(event: 'connection', socket: Socket): boolean },
): void {
  server.emit('connection', socket);
  if (first !== undefined) socket.emit('data', first);
}
