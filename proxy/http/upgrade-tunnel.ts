/**
 * HTTP/1.1 Upgrade (WebSocket) through a proxy hop: the request head is
 * written to the upstream as received (Connection/Upgrade kept, Host set,
 * mesh headers added), then both sockets are spliced; the upstream's 101
 * and every frame after it pass through untouched.
 */

import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { splice, type SpliceResult } from '../tcp/tcp-splice.js';
import { MESH_SOURCE_HEADER } from './http-headers.js';

const DROP = new Set([
  'host',
  'proxy-connection',
  'proxy-authorization',
  MESH_SOURCE_HEADER,
  'x-forwarded-client-cert',
]);
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Serialises the upgrade request for the next hop. */
export function upgradeRequestHead(
  req: IncomingMessage,
  path: string,
  authority: string,
  extra: Record<string, string>,
): string {
  let head = `${req.method ?? 'GET'} ${path} HTTP/1.1\r\nhost: ${authority}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (DROP.has(name.toLowerCase()) || extra[name.toLowerCase()] !== undefined) continue;
    head += `${name}: ${raw[i + 1] ?? ''}\r\n`;
  }
  for (const [name, value] of Object.entries(extra)) {
    if (HEADER_VALUE.test(value)) head += `${name}: ${value}\r\n`;
  }
  return head + '\r\n';
}

/**
 * Writes the head (and any bytes the client sent after it) to `upstream`
 * once connected, then splices. `done` gets the status line's code (101 on
 * success, 0 when none arrived) and the byte counts.
 */
export function tunnelUpgrade(
  client: Socket,
  upstream: Socket,
  requestHead: string,
  bufferedFromClient: Buffer,
  registry: Set<Socket>,
  done: (status: number, result: SpliceResult) => void,
): void {
  let status = 0;
  upstream.once('data', (chunk: Buffer) => {
    if (chunk.length >= 12 && chunk.toString('latin1', 0, 5) === 'HTTP/')
      status = Number(chunk.toString('latin1', 9, 12)) || 0;
  });
  upstream.write(requestHead);
  if (bufferedFromClient.length > 0) upstream.write(bufferedFromClient);
  splice(client, upstream, registry, (result) => done(status, result));
}

/** A minimal HTTP/1.1 error answer on a raw socket (before any upgrade happened). */
export function rawHttpError(socket: Socket, status: number, text: string): void {
  if (socket.writable) {
    const body = text + '\n';
    socket.end(
      `HTTP/1.1 ${status} ${statusText(status)}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  } else {
    socket.destroy();
  }
}

function statusText(status: number): string {
  switch (status) {
    case 400:
      return 'Bad Request';
    case 403:
      return 'Forbidden';
    case 404:
      return 'Not Found';
    case 408:
      return 'Request Timeout';
    case 413:
      return 'Payload Too Large';
    case 431:
      return 'Request Header Fields Too Large';
    case 502:
      return 'Bad Gateway';
    case 503:
      return 'Service Unavailable';
    case 504:
      return 'Gateway Timeout';
    default:
      return 'Error';
  }
}
