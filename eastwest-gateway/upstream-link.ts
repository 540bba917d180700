/**
 * A TCP connection from the gateway to one local endpoint, and the relay of
 * what the endpoint sends back. Reads use Node's `onread`: they land in a
 * reused buffer and are written straight to the client, without a Buffer
 * allocation and a Readable push/emit per chunk (Node offers this only on
 * sockets it constructs for us, so the client side, accepted by the server,
 * stays on the stream path).
 *
 * The client is attached after the connection exists, so that a link can be
 * opened ahead of demand (preconnect-pool.ts) and handed to the next client.
 */

import net from 'node:net';
import type { EndpointState } from './endpoint-state.js';
import type { ReadBufferPool } from './read-buffer-pool.js';

/** TCP keep-alive probes find a peer that vanished (a zone's NAT dropped the flow) on long idle connections. */
export const KEEPALIVE_DELAY_MS = 60_000;

export class UpstreamLink {
  readonly socket: net.Socket;
  readonly endpoint: EndpointState;
  /** Set once the endpoint has sent a byte, for onFirstRead. */
  private received = false;
  private client: net.Socket | undefined;
  private onFirstRead: (() => void) | undefined;
  /**
   * The buffer the socket reads into, reused for as long as every relayed
   * write completes synchronously (the common case: the client's kernel send
   * buffer has room). A write left pending keeps a reference to it, so the
   * next read gets a fresh one and this one is left to the GC.
   */
  private readBuffer: Buffer | undefined;
  private socketClosed = false;
  private released = false;

  constructor(
    endpoint: EndpointState,
    private readonly buffers: ReadBufferPool,
  ) {
    this.endpoint = endpoint;
    this.socket = net.connect({
      host: endpoint.address,
      port: endpoint.port,
      allowHalfOpen: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: KEEPALIVE_DELAY_MS,
      onread: { buffer: this.nextReadBuffer, callback: this.onRead },
    });
    this.socket.once('close', this.onClose);
  }

  /**
   * True while the connection is established and neither side has ended it: a
   * client can still use it. (A spare the endpoint spoke on is destroyed in onRead.)
   */
  get usable(): boolean {
    return !this.socket.destroyed && this.socket.readyState === 'open';
  }

  /** Relay what the endpoint sends to `client` from now on; `onFirstRead` runs once its first bytes are relayed. */
  attach(client: net.Socket, onFirstRead?: () => void): void {
    this.client = client;
    this.onFirstRead = onFirstRead;
  }

  /**
   * The owner is done with the link. Its read buffer goes back to the pool
   * once the socket has closed as well (no read can land in it any more; a
   * write that still pointed at it would have made the link drop it).
   */
  release(): void {
    this.client = undefined;
    this.onFirstRead = undefined;
    this.released = true;
    this.giveBackBuffer();
  }

  /** Returning false stops reading the endpoint until the client drains. */
  private readonly onRead = (bytes: number, buffer: Uint8Array): boolean => {
    const client = this.client;
    if (client === undefined) {
      // Nobody to relay to: on a spare, an endpoint that speaks before any hello
      // (a protocol error); on a released link, a client already gone.
      this.socket.destroy();
      return false;
    }
    const flowing = client.write(buffer.subarray(0, bytes));
    // Nothing left queued means the kernel took the bytes: the buffer is free again.
    if (client.writableLength > 0) this.readBuffer = undefined;
    if (!this.received) {
      this.received = true;
      this.onFirstRead?.();
    }
    return flowing;
  };

  private readonly nextReadBuffer = (): Buffer => {
    if (this.readBuffer === undefined) this.readBuffer = this.buffers.take();
    return this.readBuffer;
  };

  private readonly onClose = (): void => {
    this.socketClosed = true;
    this.giveBackBuffer();
  };

  private giveBackBuffer(): void {
    if (!this.socketClosed || !this.released || this.readBuffer === undefined) return;
    this.buffers.give(this.readBuffer);
    this.readBuffer = undefined;
  }
}
