/**
 * A minimal DER writer: just the ASN.1 types X.509 certificates need.
 *
 * The CA builds thousands of certificates a second, so every encoder writes
 * its header and content into one exact-size buffer instead of going through
 * an ASN.1 object model. Returned buffers may be shared (cached OIDs and
 * constants): callers must treat them as read-only.
 */

import { ErrorCodes, MeshError } from '../errors.js';

/** Universal tags (class universal, with the constructed bit where DER requires it). */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

function invalid(message: string): MeshError {
  return new MeshError(ErrorCodes.INVALID_ARGUMENT, `DER: ${message}`);
}

function headerLength(contentLength: number): number {
  if (contentLength < 0x80) return 2;
  if (contentLength < 0x100) return 3;
  if (contentLength < 0x10000) return 4;
  if (contentLength < 0x1000000) return 5;
  if (contentLength <= 0xffffffff) return 6;
  throw invalid(`length ${contentLength} is too large`);
}

/** Writes tag and length at the start of `out`; returns the header size. */
function writeHeader(out: Buffer, tag: number, contentLength: number): number {
  const size = headerLength(contentLength);
  out[0] = tag;
  if (size === 2) {
    out[1] = contentLength;
    return 2;
  }
  const lengthBytes = size - 2;
  out[1] = 0x80 | lengthBytes;
  for (let i = 0; i < lengthBytes; i++) {
    out[size - 1 - i] = (contentLength >>> (8 * i)) & 0xff;
  }
  return size;
}

/** The DER length octets for a content length (short form below 128, else long form). */
export function encodeLength(contentLength: number): Buffer {
  if (!Number.isSafeInteger(contentLength) || contentLength < 0) throw invalid(`bad length ${contentLength}`);
  const out = Buffer.allocUnsafe(headerLength(contentLength));
  writeHeader(out, 0, contentLength);
  return out.subarray(1);
}

/** One TLV with a single content buffer. `tag` is the full identifier octet (tags 0-30 only). */
export function tlv(tag: number, content: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(headerLength(content.length) + content.length);
  const offset = writeHeader(out, tag, content.length);
  out.set(content, offset);
  return out;
}

/** One TLV whose content is the concatenation of `parts`, copied once into the result. */
export function tlvOf(tag: number, parts: readonly Uint8Array[]): Buffer {
  let total = 0;
  for (const part of parts) total += part.length;
  const out = Buffer.allocUnsafe(headerLength(total) + total);
  let offset = writeHeader(out, tag, total);
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** SEQUENCE of already-encoded elements, in order. */
export function sequence(...parts: Uint8Array[]): Buffer {
  return tlvOf(Tag.SEQUENCE, parts);
}

/** SET OF already-encoded elements; DER orders them by their encodings. */
export function set(...parts: Uint8Array[]): Buffer {
  if (parts.length < 2) return tlvOf(Tag.SET, parts);
  const sorted = [...parts].sort((a, b) => Buffer.compare(a, b));
  return tlvOf(Tag.SET, sorted);
}

const INTEGER_ZERO = Buffer.from([Tag.INTEGER, 0x01, 0x00]);

/**
 * INTEGER from an unsigned big-endian magnitude (a serial number, a key
 * part). Redundant leading zeros are dropped and a 0x00 is prepended when
 * the top bit is set, so the value stays positive.
 */
export function integerFromBytes(magnitude: Uint8Array): Buffer {
  let start = 0;
  while (start < magnitude.length && magnitude[start] === 0) start++;
  if (start === magnitude.length) return INTEGER_ZERO;
  const first = magnitude[start] ?? 0;
  const pad = first & 0x80 ? 1 : 0;
  const length = magnitude.length - start + pad;
  const out = Buffer.allocUnsafe(headerLength(length) + length);
  let offset = writeHeader(out, Tag.INTEGER, length);
  if (pad) out[offset++] = 0x00;
  out.set(magnitude.subarray(start), offset);
  return out;
}

/** INTEGER from a bigint of either sign (two's complement, minimal length). */
export function integerFromBigInt(value: bigint): Buffer {
  if (value >= 0n) {
    let hex = value.toString(16);
    if (hex.length % 2) hex = '0' + hex;
    return integerFromBytes(Buffer.from(hex, 'hex'));
  }
  // Smallest byte count k with -2^(8k-1) <= value, then the k-byte two's complement.
  let bytes = 1;
  while (value < -(1n << BigInt(8 * bytes - 1))) bytes++;
  const hex = ((1n << BigInt(8 * bytes)) + value).toString(16).padStart(bytes * 2, '0');
  return tlv(Tag.INTEGER, Buffer.from(hex, 'hex'));
}

/** INTEGER from a JavaScript safe integer. */
export function integerFromNumber(value: number): Buffer {
  if (!Number.isSafeInteger(value)) throw invalid(`${value} is not a safe integer`);
  return integerFromBigInt(BigInt(value));
}

const oidCache = new Map<string, Buffer>();
const OID_PATTERN = /^(0|[1-9]\d*)(\.(0|[1-9]\d*))+$/;

function base128(arc: bigint, out: number[]): void {
  const groups: number[] = [Number(arc & 0x7fn)];
  for (let rest = arc >> 7n; rest > 0n; rest >>= 7n) groups.push(Number(rest & 0x7fn) | 0x80);
  for (let i = groups.length - 1; i >= 0; i--) out.push(groups[i] ?? 0);
}

/** OBJECT IDENTIFIER from dotted form (`2.5.29.17`); encodings are cached, so reuse is free. */
export function oid(dotted: string): Buffer {
  const cached = oidCache.get(dotted);
  if (cached) return cached;
  if (!OID_PATTERN.test(dotted)) throw invalid(`bad OID ${JSON.stringify(dotted)}`);
  // bigint arcs: some OIDs (2.25.<uuid>) exceed 2^53.
  const arcs = dotted.split('.').map((arc) => BigInt(arc));
  const [first = 0n, second = 0n] = arcs;
  if (first > 2n || (first < 2n && second >= 40n))
    throw invalid(`bad OID ${dotted}: first arcs out of range`);
  const body: number[] = [];
  base128(first * 40n + second, body);
  for (const arc of arcs.slice(2)) base128(arc, body);
  const encoded = tlv(Tag.OID, Uint8Array.from(body));
  oidCache.set(dotted, encoded);
  return encoded;
}

function two(n: number): string {
  return n < 10 ? '0' + n : String(n);
}

function checkDate(date: Date): void {
  if (Number.isNaN(date.getTime())) throw invalid('invalid date');
}

/** UTCTime `YYMMDDHHMMSSZ`; only years 1950-2049 are representable. Milliseconds are dropped. */
export function utcTime(date: Date): Buffer {
  checkDate(date);
  const year = date.getUTCFullYear();
  if (year < 1950 || year > 2049) throw invalid(`UTCTime cannot hold year ${year}`);
  const text =
    two(year % 100) +
    two(date.getUTCMonth() + 1) +
    two(date.getUTCDate()) +
    two(date.getUTCHours()) +
    two(date.getUTCMinutes()) +
    two(date.getUTCSeconds()) +
    'Z';
  return tlv(Tag.UTC_TIME, Buffer.from(text, 'latin1'));
}

/** GeneralizedTime `YYYYMMDDHHMMSSZ` (no fraction, as RFC 5280 requires). */
export function generalizedTime(date: Date): Buffer {
  checkDate(date);
  const year = date.getUTCFullYear();
  if (year < 0 || year > 9999) throw invalid(`GeneralizedTime cannot hold year ${year}`);
  const text =
    String(year).padStart(4, '0') +
    two(date.getUTCMonth() + 1) +
    two(date.getUTCDate()) +
    two(date.getUTCHours()) +
    two(date.getUTCMinutes()) +
    two(date.getUTCSeconds()) +
    'Z';
  return tlv(Tag.GENERALIZED_TIME, Buffer.from(text, 'latin1'));
}

/** A certificate validity time as RFC 5280 4.1.2.5 demands: UTCTime through 2049, GeneralizedTime after. */
export function x509Time(date: Date): Buffer {
  checkDate(date);
  const year = date.getUTCFullYear();
  return year >= 1950 && year <= 2049 ? utcTime(date) : generalizedTime(date);
}

/** BIT STRING; `unusedBits` counts the padding bits at the end of the last byte. */
export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  if (
    !Number.isInteger(unusedBits) ||
    unusedBits < 0 ||
    unusedBits > 7 ||
    (unusedBits > 0 && !bytes.length)
  ) {
    throw invalid(`bad unused bit count ${unusedBits}`);
  }
  return tlvOf(Tag.BIT_STRING, [Uint8Array.of(unusedBits), bytes]);
}

/** OCTET STRING. */
export function octetString(bytes: Uint8Array): Buffer {
  return tlv(Tag.OCTET_STRING, bytes);
}

const TRUE = Buffer.from([Tag.BOOLEAN, 0x01, 0xff]);
const FALSE = Buffer.from([Tag.BOOLEAN, 0x01, 0x00]);

/** BOOLEAN (DER: TRUE is 0xff). */
export function boolean(value: boolean): Buffer {
  return value ? TRUE : FALSE;
}

/** NULL. */
export const NULL = Buffer.from([Tag.NULL, 0x00]);

/** UTF8String. */
export function utf8String(text: string): Buffer {
  return tlv(Tag.UTF8_STRING, Buffer.from(text, 'utf8'));
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** PrintableString; rejects characters outside its alphabet. */
export function printableString(text: string): Buffer {
  if (!PRINTABLE.test(text)) throw invalid(`${JSON.stringify(text)} is not a PrintableString`);
  return tlv(Tag.PRINTABLE_STRING, Buffer.from(text, 'latin1'));
}

/**
 * The content octets of an IA5String (ASCII); rejects non-ASCII text. Used
 * directly for IMPLICIT-tagged strings such as SAN entries.
 */
export function ia5Bytes(text: string): Buffer {
  // eslint-disable-next-line no-control-regex
  if (!/^[\x00-\x7f]*$/.test(text)) throw invalid(`${JSON.stringify(text)} is not an IA5String`);
  return Buffer.from(text, 'latin1');
}

/** IA5String (ASCII); rejects non-ASCII text. */
export function ia5String(text: string): Buffer {
  return tlv(Tag.IA5_STRING, ia5Bytes(text));
}

function contextTag(tagNumber: number, constructed: boolean): number {
  if (!Number.isInteger(tagNumber) || tagNumber < 0 || tagNumber > 30) {
    throw invalid(`context tag ${tagNumber} out of range 0-30`);
  }
  return (constructed ? 0xa0 : 0x80) | tagNumber;
}

/** `[n] EXPLICIT`: a constructed context tag wrapping complete encodings. */
export function explicit(tagNumber: number, ...parts: Uint8Array[]): Buffer {
  return tlvOf(contextTag(tagNumber, true), parts);
}

/**
 * `[n] IMPLICIT`: the context tag replaces the inner type's tag, so pass the
 * inner content octets only. `constructed` must match the inner type
 * (true for SEQUENCE/SET, false for strings and integers).
 */
export function implicit(tagNumber: number, content: Uint8Array, constructed = false): Buffer {
  return tlv(contextTag(tagNumber, constructed), content);
}
