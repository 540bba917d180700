/**
 * HTTP/2 framing (RFC 9113 section 4 and 6): the frame header, the frames
 * this implementation sends, and a reader that cuts a byte stream into
 * frames. Payloads are views into the socket's chunks, not copies.
 */

import { H2Error, H2ErrorCode } from './h2-errors.js';

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const FrameFlag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

export const SettingId = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

export const FRAME_HEADER_LENGTH = 9;
/** The frame size every peer accepts before SETTINGS say otherwise. */
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
export const MAX_ALLOWED_FRAME_SIZE = 16_777_215;
export const DEFAULT_WINDOW_SIZE = 65_535;
export const MAX_WINDOW_SIZE = 0x7fff_ffff;

/** What a client sends first on every connection. */
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER_LENGTH);
  writeFrameHeader(b, 0, length, type, flags, streamId);
  return b;
}

/** Writes a frame header at `at` of `b`. */
export function writeFrameHeader(
  b: Buffer,
  at: number,
  length: number,
  type: number,
  flags: number,
  streamId: number,
): void {
  b[at] = length >>> 16;
  b[at + 1] = (length >>> 8) & 0xff;
  b[at + 2] = length & 0xff;
  b[at + 3] = type;
  b[at + 4] = flags;
  b.writeUInt32BE(streamId, at + 5);
}

/** A SETTINGS frame from [id, value] pairs. */
export function settingsFrame(settings: readonly (readonly [number, number])[]): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + settings.length * 6);
  writeFrameHeader(b, 0, settings.length * 6, FrameType.SETTINGS, 0, 0);
  let at = FRAME_HEADER_LENGTH;
  for (const [id, value] of settings) {
    b.writeUInt16BE(id, at);
    b.writeUInt32BE(value, at + 2);
    at += 6;
  }
  return b;
}

export const SETTINGS_ACK = frameHeader(0, FrameType.SETTINGS, FrameFlag.ACK, 0);

export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + 4);
  writeFrameHeader(b, 0, 4, FrameType.WINDOW_UPDATE, 0, streamId);
  b.writeUInt32BE(increment, FRAME_HEADER_LENGTH);
  return b;
}

export function rstStreamFrame(streamId: number, code: number): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + 4);
  writeFrameHeader(b, 0, 4, FrameType.RST_STREAM, 0, streamId);
  b.writeUInt32BE(code, FRAME_HEADER_LENGTH);
  return b;
}

export function pingFrame(ack: boolean, opaque: Buffer): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + 8);
  writeFrameHeader(b, 0, 8, FrameType.PING, ack ? FrameFlag.ACK : 0, 0);
  opaque.copy(b, FRAME_HEADER_LENGTH, 0, 8);
  return b;
}

export function goawayFrame(lastStreamId: number, code: number, debug: string): Buffer {
  const text = Buffer.from(debug, 'utf8');
  const b = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + 8 + text.length);
  writeFrameHeader(b, 0, 8 + text.length, FrameType.GOAWAY, 0, 0);
  b.writeUInt32BE(lastStreamId, FRAME_HEADER_LENGTH);
  b.writeUInt32BE(code, FRAME_HEADER_LENGTH + 4);
  text.copy(b, FRAME_HEADER_LENGTH + 8);
  return b;
}

/**
 * A header block as one HEADERS frame, or HEADERS and CONTINUATION frames
 * when it is larger than the peer's frame size, in one buffer.
 */
export function headerFrames(
  streamId: number,
  block: Buffer,
  endStream: boolean,
  maxFrameSize: number,
): Buffer {
  const frames = Math.max(1, Math.ceil(block.length / maxFrameSize));
  const out = Buffer.allocUnsafe(block.length + frames * FRAME_HEADER_LENGTH);
  let at = 0;
  for (let i = 0; i < frames; i++) {
    const start = i * maxFrameSize;
    const end = Math.min(block.length, start + maxFrameSize);
    const last = i === frames - 1;
    const type = i === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
    let flags = last ? FrameFlag.END_HEADERS : 0;
    if (i === 0 && endStream) flags |= FrameFlag.END_STREAM;
    writeFrameHeader(out, at, end - start, type, flags, streamId);
    block.copy(out, at + FRAME_HEADER_LENGTH, start, end);
    at += FRAME_HEADER_LENGTH + end - start;
  }
  return out;
}

/** Receives frames as the reader cuts them. */
export interface FrameHandler {
  onFrame(type: number, flags: number, streamId: number, payload: Buffer): void;
}

/**
 * Cuts a byte stream into frames. Bytes of an incomplete frame wait (as a
 * list, joined once when the frame is complete) until the rest arrives.
 */
export class FrameReader {
  /** Frames larger than this are a FRAME_SIZE_ERROR: our SETTINGS_MAX_FRAME_SIZE. */
  maxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  readonly #handler: FrameHandler;
  #held: Buffer[] = [];
  #heldBytes = 0;
  /** Bytes the frame being held needs in all (0: its header is not in yet). */
  #needed = 0;
  #stopped = false;

  constructor(handler: FrameHandler) {
    this.#handler = handler;
  }

  /** No more frames are delivered (the connection is going away). */
  stop(): void {
    this.#stopped = true;
    this.#held = [];
    this.#heldBytes = 0;
  }

  /** Throws H2Error for a frame larger than allowed; frames before it were delivered. */
  push(chunk: Buffer): void {
    let at = 0;
    if (this.#heldBytes > 0) {
      // Complete the frame that straddles the reads with just the bytes it needs, not the whole chunk.
      const needed = this.#needed > 0 ? this.#needed : FRAME_HEADER_LENGTH;
      const take = Math.min(needed - this.#heldBytes, chunk.length);
      this.#held.push(take === chunk.length ? chunk : chunk.subarray(0, take));
      this.#heldBytes += take;
      at = take;
      if (this.#heldBytes < needed) return;
      const joined = Buffer.concat(this.#held, this.#heldBytes);
      this.#held = [];
      this.#heldBytes = 0;
      if (this.#needed === 0) {
        // Only the header was complete: the frame's length is known now; go on with the header alone.
        this.#parse(joined);
        if (this.#heldBytes > 0 || this.#stopped) {
          if (at < chunk.length && !this.#stopped) this.push(chunk.subarray(at));
          return;
        }
      } else {
        this.#parse(joined);
      }
    }
    if (at < chunk.length && !this.#stopped) this.#parse(at === 0 ? chunk : chunk.subarray(at));
  }

  /** Delivers the whole frames in `buf` and holds the incomplete one at its end. */
  #parse(buf: Buffer): void {
    let at = 0;
    const length = buf.length;
    while (!this.#stopped && length - at >= FRAME_HEADER_LENGTH) {
      const payloadLength = buf.readUIntBE(at, 3);
      if (payloadLength > this.maxFrameSize) {
        throw new H2Error(
          H2ErrorCode.FRAME_SIZE_ERROR,
          `a frame of ${payloadLength} bytes is larger than the ${this.maxFrameSize} allowed`,
        );
      }
      const end = at + FRAME_HEADER_LENGTH + payloadLength;
      if (end > length) break;
      const type = buf.readUInt8(at + 3);
      const flags = buf.readUInt8(at + 4);
      const streamId = buf.readUInt32BE(at + 5) & 0x7fff_ffff;
      const payload = buf.subarray(at + FRAME_HEADER_LENGTH, end);
      at = end;
      this.#handler.onFrame(type, flags, streamId, payload);
    }
    this.#needed = 0;
    if (this.#stopped || at === length) return;
    const rest = at === 0 ? buf : buf.subarray(at);
    // With its header in, the frame's whole size is known; without, only that a header is missing.
    this.#needed = rest.length >= FRAME_HEADER_LENGTH ? FRAME_HEADER_LENGTH + rest.readUIntBE(0, 3) : 0;
    this.#held.push(rest);
    this.#heldBytes = rest.length;
  }
}
