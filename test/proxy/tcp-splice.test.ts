import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import net, { type AddressInfo, type Socket } from 'node:net';
import { splice, type SpliceResult } from '../../proxy/tcp/tcp-splice.js';

let server: net.Server;
const accepted: Socket[] = [];

/** A connected client socket (the server keeps its end in `accepted`). */
async function connectedSocket(): Promise<Socket> {
  const socket = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  return socket;
}

beforeAll(async () => {
  server = net.createServer((socket) => {
    accepted.push(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  for (const socket of accepted) socket.destroy();
  await new Promise((resolve) => server.close(resolve));
});

describe('splice', () => {
  it('pipes both ways and reports the bytes once both sides are closed', async () => {
    const downstream = await connectedSocket();
    const upstream = await connectedSocket();
    const registry = new Set<Socket>();
    const result = new Promise<SpliceResult>((resolve) => splice(downstream, upstream, registry, resolve));
    const [downPeer, upPeer] = accepted.slice(-2);
    const echoed = new Promise<string>((resolve) =>
      downPeer?.once('data', (c: Buffer) => resolve(c.toString())),
    );
    upPeer?.on('data', (c: Buffer) => upPeer.write(`echo:${c.toString()}`));
    downPeer?.write('hello');
    expect(await echoed).toBe('echo:hello');
    downPeer?.destroy();
    const done = await result;
    expect(done).toMatchObject({ received: 5, sent: 10 });
    expect(registry.size).toBe(0);
  });

  it('ends the other side at once when one closed before the splice began', async () => {
    const downstream = await connectedSocket();
    const upstream = await connectedSocket();
    const upPeer = accepted.at(-1);
    const upstreamPeerClosed = new Promise((resolve) => upPeer?.once('close', resolve));
    // The client went away while the upstream was still being connected.
    downstream.destroy();
    await new Promise((resolve) => downstream.once('close', resolve));
    const registry = new Set<Socket>();
    const done = await new Promise<SpliceResult>((resolve) =>
      splice(downstream, upstream, registry, resolve),
    );
    expect(done).toMatchObject({ received: 0, sent: 0 });
    expect(upstream.destroyed).toBe(true);
    expect(registry.size).toBe(0);
    await upstreamPeerClosed;
  });
});
