/**
 * gRPC's length-prefixed messages on an HTTP/2 stream (grpc/doc/PROTOCOL-HTTP2.md):
 * one byte "compressed" flag, four bytes of big-endian length, the message.
 * The decoder takes the stream's DATA chunks as they come (a message may
 * span chunks, a chunk may hold several) and refuses a message larger than
 * its limit before buffering it.
 */

import { GrpcCode, GrpcStatusError } from './grpc-codes.js';

const PREFIX_BYTES = 5;

export function encodeGrpcFrame(message: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(PREFIX_BYTES + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, PREFIX_BYTES);
  return frame;
}

export class GrpcFrameDecoder {
  readonly #maxMessageBytes: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;

  constructor(maxMessageBytes: number) {
    this.#maxMessageBytes = maxMessageBytes;
  }

  /** The messages `chunk` completes, in order. Throws GrpcStatusError on a compressed or oversized message. */
  push(chunk: Buffer): Buffer[] {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    const messages: Buffer[] = [];
    while (this.#pendingBytes >= PREFIX_BYTES) {
      const head = this.#peek(PREFIX_BYTES);
      if (head[0] !== 0) {
        // Nothing asked the server to compress (no grpc-accept-encoding is sent).
        throw new GrpcStatusError(
          GrpcCode.INTERNAL,
          'the server sent a compressed message; none was asked for',
        );
      }
      const length = head.readUInt32BE(1);
      if (length > this.#maxMessageBytes) {
        throw new GrpcStatusError(
          GrpcCode.RESOURCE_EXHAUSTED,
          `received a message of ${length} bytes, more than the limit of ${this.#maxMessageBytes}`,
        );
      }
      if (this.#pendingBytes < PREFIX_BYTES + length) break;
      const frame = this.#take(PREFIX_BYTES + length);
      messages.push(frame.subarray(PREFIX_BYTES));
    }
    return messages;
  }

  /** Bytes of a message that has not been completed (a stream ending here was cut short). */
  get partialBytes(): number {
    return this.#pendingBytes;
  }

  /** The first buffer, made at least `n` bytes long (there are at least that many pending). */
  #peek(n: number): Buffer {
    const first = this.#pending[0] as Buffer;
    if (first.length >= n) return first;
    this.#pending = [Buffer.concat(this.#pending)];
    return this.#pending[0] as Buffer;
  }

  /** The first `n` bytes (there are at least that many), removed. */
  #take(n: number): Buffer {
    const first = this.#peek(n);
    const rest = first.subarray(n);
    if (rest.length === 0) this.#pending.shift();
    else this.#pending[0] = rest;
    this.#pendingBytes -= n;
    return first.subarray(0, n);
  }
}
