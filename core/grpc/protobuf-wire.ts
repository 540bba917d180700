/**
 * The protobuf wire format (varints and length-delimited fields), enough
 * for the few small messages workload-side clients exchange with their
 * zone CP (core/mds/mds-codec.ts, core/ca/ca-codec.ts). Those clients run
 * in every sidecar; @grpc/proto-loader with protobufjs and its .proto
 * parser cost each of them ~6 MiB of resident memory (measured on Node 20)
 * for four messages of strings, bytes and integers. The zone CP, one
 * process per zone, keeps proto-loader; tests check both agree.
 *
 * Decoding never reads past its buffer: a truncated or malformed message
 * throws a ProtobufWireError naming what was wrong.
 */

import { ErrorCodes, MeshError } from '../errors.js';

const WireType = { VARINT: 0, FIXED64: 1, LENGTH_DELIMITED: 2, FIXED32: 5 } as const;

export class ProtobufWireError extends MeshError {
  constructor(message: string) {
    super(ErrorCodes.INVALID_ARGUMENT, `malformed protobuf: ${message}`);
    this.name = 'ProtobufWireError';
  }
}

/** Appends fields in order; `finish()` gives the encoded message. */
export class ProtobufWriter {
  readonly #chunks: Buffer[] = [];
  #scratch: number[] = [];

  #varint(value: bigint | number): void {
    let v = BigInt(value);
    if (v < 0n) throw new ProtobufWireError(`negative value ${v} for an unsigned field`);
    while (v > 0x7fn) {
      this.#scratch.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.#scratch.push(Number(v));
  }

  #flushScratch(): void {
    if (this.#scratch.length === 0) return;
    this.#chunks.push(Buffer.from(this.#scratch));
    this.#scratch = [];
  }

  #tag(field: number, wireType: number): void {
    this.#varint((field << 3) | wireType);
  }

  /** A uint32/uint64 field; proto3 leaves zero out. */
  uint(field: number, value: number | bigint | string): this {
    const v = BigInt(value);
    if (v === 0n) return this;
    this.#tag(field, WireType.VARINT);
    this.#varint(v);
    return this;
  }

  /** A bytes field (empty left out). */
  bytes(field: number, value: Uint8Array): this {
    if (value.length === 0) return this;
    this.#tag(field, WireType.LENGTH_DELIMITED);
    this.#varint(value.length);
    this.#flushScratch();
    this.#chunks.push(Buffer.from(value.buffer, value.byteOffset, value.length));
    return this;
  }

  /** A string field (empty left out). */
  string(field: number, value: string): this {
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  /** An embedded message; written even when empty, since a set oneof member must be seen. */
  message(field: number, value: Buffer): this {
    this.#tag(field, WireType.LENGTH_DELIMITED);
    this.#varint(value.length);
    this.#flushScratch();
    this.#chunks.push(value);
    return this;
  }

  finish(): Buffer {
    this.#flushScratch();
    return Buffer.concat(this.#chunks);
  }
}

/** One decoded field: a varint as a bigint, or the bytes of a length-delimited field. */
export type WireField =
  | { field: number; wireType: typeof WireType.VARINT; value: bigint }
  | { field: number; wireType: typeof WireType.LENGTH_DELIMITED; value: Buffer }
  | { field: number; wireType: typeof WireType.FIXED64 | typeof WireType.FIXED32; value: Buffer };

function readVarint(buf: Buffer, at: number): { value: bigint; next: number } {
  let value = 0n;
  let shift = 0n;
  for (let i = at; i < buf.length; i++) {
    const byte = buf[i] as number;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return { value, next: i + 1 };
    shift += 7n;
    if (shift >= 70n) throw new ProtobufWireError(`varint at byte ${at} is longer than 10 bytes`);
  }
  throw new ProtobufWireError(`varint at byte ${at} runs past the end (${buf.length} bytes)`);
}

/** The fields of a message in wire order (unknown ones included: callers skip them). */
export function* readFields(buf: Buffer): Generator<WireField> {
  let at = 0;
  while (at < buf.length) {
    const tag = readVarint(buf, at);
    at = tag.next;
    const field = Number(tag.value >> 3n);
    const wireType = Number(tag.value & 7n);
    if (field === 0) throw new ProtobufWireError('field number 0');
    switch (wireType) {
      case WireType.VARINT: {
        const v = readVarint(buf, at);
        at = v.next;
        yield { field, wireType, value: v.value };
        break;
      }
      case WireType.LENGTH_DELIMITED: {
        const length = readVarint(buf, at);
        at = length.next;
        const end = at + Number(length.value);
        if (length.value > BigInt(buf.length) || end > buf.length) {
          throw new ProtobufWireError(`field ${field} claims ${length.value} bytes, ${buf.length - at} left`);
        }
        yield { field, wireType, value: buf.subarray(at, end) };
        at = end;
        break;
      }
      case WireType.FIXED64:
      case WireType.FIXED32: {
        const size = wireType === WireType.FIXED64 ? 8 : 4;
        if (at + size > buf.length) throw new ProtobufWireError(`field ${field} runs past the end`);
        yield { field, wireType, value: buf.subarray(at, at + size) };
        at += size;
        break;
      }
      default:
        throw new ProtobufWireError(`field ${field} has wire type ${wireType}, which proto3 does not use`);
    }
  }
}

/** The value of a field the schema declares length-delimited (string, bytes, message). */
export function lengthDelimited(f: WireField, name: string): Buffer {
  if (f.wireType !== WireType.LENGTH_DELIMITED)
    throw new ProtobufWireError(`${name} (field ${f.field}) is not length-delimited`);
  return f.value;
}

/** The value of a field the schema declares a varint (uint32, uint64). */
export function varint(f: WireField, name: string): bigint {
  if (f.wireType !== WireType.VARINT)
    throw new ProtobufWireError(`${name} (field ${f.field}) is not a varint`);
  return f.value;
}

/** A string field (invalid UTF-8 becomes U+FFFD, as protobufjs decodes it). */
export function utf8(f: WireField, name: string): string {
  return lengthDelimited(f, name).toString('utf8');
}
