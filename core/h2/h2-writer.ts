/**
 * The sending half of an HTTP/2 connection: HEADERS through the HPACK
 * encoder, DATA within the peer's flow-control windows (the stream's and
 * the connection's), body bytes that wait for window, and the socket's own
 * backpressure. Frames written in one tick leave in one socket write (the
 * socket is corked until the next tick), so a burst of responses becomes
 * one TLS record instead of one each.
 */

import type { Socket } from 'node:net';
import { H2Error, H2ErrorCode } from './h2-errors.js';
import type { H2Stream } from './h2-stream.js';
import {
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW_SIZE,
  FRAME_HEADER_LENGTH,
  FrameFlag,
  FrameType,
  MAX_WINDOW_SIZE,
  frameHeader,
  headerFrames,
  writeFrameHeader,
} from './frames.js';
import { HpackEncoder } from './hpack.js';

/** What the writer tells its session. */
export interface WriterOwner {
  /** END_STREAM left for `stream`: our side of it is done. */
  onLocalEnd(stream: H2Stream): void;
}

/**
 * Control frames (answers to the peer's SETTINGS and PINGs, our resets)
 * written while the socket is congested, beyond which the peer is taken to
 * send them without reading the answers: nghttp2's outbound queue limit.
 */
const CONTROL_QUEUE_LIMIT = 1000;
/** Data frames up to this size are copied behind their header into one buffer. */
const COPY_DATA_UP_TO = 1024;
const EMPTY = Buffer.alloc(0);

function uncork(writer: H2Writer): void {
  writer.uncork();
}

export class H2Writer {
  readonly #socket: Socket;
  readonly #owner: WriterOwner;
  readonly #encoder = new HpackEncoder();
  /** The peer's SETTINGS_MAX_FRAME_SIZE. */
  maxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  /** Body bytes the connection may still send before the peer's WINDOW_UPDATE. */
  #window = DEFAULT_WINDOW_SIZE;
  /** Streams with body waiting for connection window, in the order they started waiting. */
  readonly #blocked = new Set<H2Stream>();
  #corked = false;
  /** The socket's buffer is full: streams are told to wait for its drain. */
  congested = false;
  /** The connection is gone: nothing more is written. */
  stopped = false;
  /** Control frames written since the socket last drained, while it was congested. */
  #controlQueued = 0;

  constructor(socket: Socket, owner: WriterOwner) {
    this.#socket = socket;
    this.#owner = owner;
  }

  /** The peer's SETTINGS_HEADER_TABLE_SIZE. */
  setHeaderTableSize(size: number): void {
    this.#encoder.setMaxTableSize(size);
  }

  write(buf: Buffer): void {
    if (this.stopped) return;
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(uncork, this);
    }
    if (!this.#socket.write(buf)) this.congested = true;
  }

  /** A control frame; false when the peer has left too many of them unread (nothing is written then). */
  writeControl(buf: Buffer): boolean {
    if (this.congested && ++this.#controlQueued > CONTROL_QUEUE_LIMIT) return false;
    this.write(buf);
    return true;
  }

  uncork(): void {
    this.#corked = false;
    if (!this.#socket.destroyed) this.#socket.uncork();
  }

  sendHeaders(stream: H2Stream, fields: string[], endStream: boolean): void {
    if (stream.reset || stream.localEnded || this.stopped) return;
    // Encoded now, as it is sent: the peer's decoder follows the blocks in the order they arrive.
    const block = this.#encoder.encode(fields);
    this.write(headerFrames(stream.id, block, endStream, this.maxFrameSize));
    if (endStream) {
      stream.localEnded = true;
      this.#owner.onLocalEnd(stream);
    }
  }

  /** Sends or queues body bytes; true while the caller may write more. */
  sendData(stream: H2Stream, chunk: Buffer, endStream: boolean): boolean {
    if (stream.reset || stream.localEnded || stream.pendingEnd || this.stopped) return true;
    if (stream.pending !== undefined) {
      stream.pending.push(chunk);
      stream.pendingEnd = endStream;
      stream.wantsDrain = true;
      return false;
    }
    let at = 0;
    while (at < chunk.length) {
      const allowed = Math.min(stream.sendWindow, this.#window, this.maxFrameSize);
      if (allowed <= 0) break;
      const size = Math.min(allowed, chunk.length - at);
      this.#writeData(stream.id, chunk, at, size, endStream && at + size === chunk.length);
      stream.sendWindow -= size;
      this.#window -= size;
      at += size;
    }
    if (at < chunk.length) {
      const rest = at === 0 ? chunk : chunk.subarray(at);
      stream.pending = [rest];
      stream.pendingEnd = endStream;
      if (stream.sendWindow > 0) this.#blocked.add(stream);
      stream.wantsDrain = true;
      return false;
    }
    if (endStream) {
      // An end with no bytes left to send is an empty DATA frame; it needs no window.
      if (chunk.length === 0) this.#writeData(stream.id, EMPTY, 0, 0, true);
      stream.localEnded = true;
      this.#owner.onLocalEnd(stream);
    }
    if (this.congested) {
      stream.wantsDrain = true;
      return false;
    }
    return true;
  }

  /** Ends our side: after `chunk`, with `trailers` as the last HEADERS when given. */
  endStream(stream: H2Stream, chunk: Buffer | undefined, trailers: string[] | undefined): void {
    if (stream.reset || stream.localEnded || stream.pendingEnd || this.stopped) return;
    if (trailers === undefined) {
      this.sendData(stream, chunk ?? EMPTY, true);
      return;
    }
    if (chunk !== undefined && chunk.length > 0) this.sendData(stream, chunk, false);
    if (stream.pending !== undefined) {
      stream.pendingTrailers = trailers;
      stream.pendingEnd = true;
      return;
    }
    this.sendHeaders(stream, trailers, true);
  }

  /** The peer's WINDOW_UPDATE for the connection: streams that waited for it go on, in order. */
  addWindow(increment: number): void {
    this.#window += increment;
    if (this.#window > MAX_WINDOW_SIZE) {
      throw new H2Error(H2ErrorCode.FLOW_CONTROL_ERROR, 'the connection window overflowed');
    }
    for (const stream of this.#blocked) {
      this.#blocked.delete(stream);
      this.flush(stream);
      if (this.#window <= 0) break;
    }
  }

  /** Sends what waits on `stream` as far as the windows allow. */
  flush(stream: H2Stream): void {
    const pending = stream.pending;
    if (pending === undefined || stream.reset) return;
    for (let chunk = pending[0]; chunk !== undefined; chunk = pending[0]) {
      const endsHere = pending.length === 1 && stream.pendingEnd && stream.pendingTrailers === undefined;
      if (chunk.length === 0) {
        if (endsHere) this.#writeData(stream.id, EMPTY, 0, 0, true);
        pending.shift();
        continue;
      }
      const allowed = Math.min(stream.sendWindow, this.#window, this.maxFrameSize);
      if (allowed <= 0) {
        if (stream.sendWindow > 0) this.#blocked.add(stream);
        return;
      }
      const size = Math.min(allowed, chunk.length);
      const whole = size === chunk.length;
      this.#writeData(stream.id, chunk, 0, size, whole && endsHere);
      stream.sendWindow -= size;
      this.#window -= size;
      if (whole) pending.shift();
      else pending[0] = chunk.subarray(size);
    }
    stream.pending = undefined;
    if (stream.pendingEnd) {
      const trailers = stream.pendingTrailers;
      stream.pendingTrailers = undefined;
      stream.pendingEnd = false;
      if (trailers !== undefined) this.sendHeaders(stream, trailers, true);
      else {
        stream.localEnded = true;
        this.#owner.onLocalEnd(stream);
      }
      return;
    }
    if (stream.wantsDrain && !this.congested) {
      stream.wantsDrain = false;
      stream.handler.onStreamDrain(stream);
    }
  }

  /** The stream is gone: what waited on it is dropped. */
  forget(stream: H2Stream): void {
    stream.pending = undefined;
    stream.pendingTrailers = undefined;
    this.#blocked.delete(stream);
  }

  /** The socket took what it held: streams told to wait may write again. */
  drained(streams: Iterable<H2Stream>): void {
    this.congested = false;
    this.#controlQueued = 0;
    for (const stream of [...streams]) {
      if (this.congested) return;
      if (stream.wantsDrain && stream.pending === undefined && !stream.reset) {
        stream.wantsDrain = false;
        stream.handler.onStreamDrain(stream);
      }
    }
  }

  #writeData(streamId: number, chunk: Buffer, at: number, size: number, endStream: boolean): void {
    const flags = endStream ? FrameFlag.END_STREAM : 0;
    if (size <= COPY_DATA_UP_TO) {
      const frame = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + size);
      writeFrameHeader(frame, 0, size, FrameType.DATA, flags, streamId);
      chunk.copy(frame, FRAME_HEADER_LENGTH, at, at + size);
      this.write(frame);
      return;
    }
    this.write(frameHeader(size, FrameType.DATA, flags, streamId));
    this.write(at === 0 && size === chunk.length ? chunk : chunk.subarray(at, at + size));
  }
}
