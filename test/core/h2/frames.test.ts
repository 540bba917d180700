/**
 * The frame reader cuts a byte stream into frames however the reads fall:
 * a frame's header or payload split across reads, many frames in one
 * read, empty payloads; and refuses a frame over the size limit before
 * waiting for its payload.
 */

import { describe, expect, it } from '@jest/globals';
import { FrameReader, FrameType, frameHeader } from '../../../core/h2/frames.js';
import { H2Error, H2ErrorCode } from '../../../core/h2/h2-errors.js';

interface Seen {
  type: number;
  flags: number;
  streamId: number;
  payload: string;
}

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  return Buffer.concat([frameHeader(payload.length, type, flags, streamId), payload]);
}

const FRAMES: Seen[] = [
  { type: FrameType.SETTINGS, flags: 0, streamId: 0, payload: '' },
  { type: FrameType.HEADERS, flags: 5, streamId: 1, payload: 'abc' },
  { type: FrameType.DATA, flags: 0, streamId: 1, payload: 'x'.repeat(16_384) },
  { type: FrameType.DATA, flags: 1, streamId: 3, payload: 'y'.repeat(20) },
  { type: FrameType.PING, flags: 0, streamId: 0, payload: '12345678' },
  { type: FrameType.DATA, flags: 1, streamId: 5, payload: '' },
];
const STREAM = Buffer.concat(FRAMES.map((f) => frame(f.type, f.flags, f.streamId, Buffer.from(f.payload))));

function read(chunks: Buffer[]): Seen[] {
  const seen: Seen[] = [];
  const reader = new FrameReader({
    onFrame: (type, flags, streamId, payload) =>
      seen.push({ type, flags, streamId, payload: payload.toString('latin1') }),
  });
  for (const c of chunks) reader.push(c);
  return seen;
}

describe('FrameReader', () => {
  it('delivers the same frames however the stream is cut in two', () => {
    for (let cut = 0; cut <= STREAM.length; cut += cut < 64 ? 1 : 97) {
      expect(read([STREAM.subarray(0, cut), STREAM.subarray(cut)])).toEqual(FRAMES);
    }
  });

  it('delivers the same frames from reads of every small size, and from one read', () => {
    for (const size of [1, 2, 5, 8, 9, 10, 17, 1000, 4096]) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < STREAM.length; at += size) chunks.push(STREAM.subarray(at, at + size));
      expect(read(chunks)).toEqual(FRAMES);
    }
    expect(read([STREAM])).toEqual(FRAMES);
  });

  it('refuses a frame over the limit as soon as its header is in', () => {
    const reader = new FrameReader({ onFrame: () => undefined });
    const header = frameHeader(16_385, FrameType.DATA, 0, 1);
    reader.push(header.subarray(0, 4));
    let caught: unknown;
    try {
      reader.push(header.subarray(4));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(H2Error);
    expect((caught as H2Error).h2Code).toBe(H2ErrorCode.FRAME_SIZE_ERROR);
  });
});
