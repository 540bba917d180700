/**
 * A tiny DER reader: walks tag-length-value nodes in a buffer without
 * copying, so that structure parsers (certificates now, CSRs later) can pull
 * out the few fields they need — often as raw DER, e.g. a Name to copy into
 * a new certificate byte for byte.
 *
 * Every malformed input ends in `MeshError(PKI)`, never a RangeError, since
 * the bytes may come from the network.
 */

import { ErrorCodes, MeshError } from '../errors.js';
import { Tag } from './der.js';

/** One decoded node; offsets index into the buffer it was read from. */
export interface DerNode {
  /** The identifier octet (class, constructed bit and tag number 0-30). */
  readonly tag: number;
  /** Offset of the identifier octet. */
  readonly start: number;
  /** Offset of the first content octet. */
  readonly contentStart: number;
  /** Offset just past the last content octet. */
  readonly end: number;
}

function malformed(what: string): MeshError {
  return new MeshError(ErrorCodes.PKI, `malformed DER: ${what}`);
}

/**
 * Reads the node starting at `offset`, which must end by `limit`
 * (the enclosing node's end). Rejects high tag numbers, indefinite lengths
 * and non-minimal length encodings: none are valid DER in what we read.
 */
export function readNode(buf: Uint8Array, offset: number, limit: number = buf.length): DerNode {
  if (offset + 2 > limit) throw malformed(`truncated header at offset ${offset}`);
  const tag = buf[offset] ?? 0;
  if ((tag & 0x1f) === 0x1f) throw malformed(`high tag number at offset ${offset}`);
  const first = buf[offset + 1] ?? 0;
  let length: number;
  let contentStart: number;
  if (first < 0x80) {
    length = first;
    contentStart = offset + 2;
  } else {
    const count = first & 0x7f;
    if (count === 0) throw malformed(`indefinite length at offset ${offset}`);
    if (count > 4) throw malformed(`length of ${count} octets at offset ${offset}`);
    if (offset + 2 + count > limit) throw malformed(`truncated length at offset ${offset}`);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (buf[offset + 2 + i] ?? 0);
    if (length < 0x80 || (count > 1 && (buf[offset + 2] ?? 0) === 0)) {
      throw malformed(`non-minimal length at offset ${offset}`);
    }
    contentStart = offset + 2 + count;
  }
  const end = contentStart + length;
  if (end > limit) throw malformed(`length ${length} at offset ${offset} overruns its container`);
  return { tag, start: offset, contentStart, end };
}

/** Reads a node and insists on its tag; `what` names the field in the error. */
export function expectNode(
  buf: Uint8Array,
  offset: number,
  limit: number,
  tag: number,
  what: string,
): DerNode {
  const node = readNode(buf, offset, limit);
  if (node.tag !== tag) {
    throw malformed(`${what}: expected tag 0x${tag.toString(16)}, got 0x${node.tag.toString(16)}`);
  }
  return node;
}

/** Reads a whole buffer as exactly one node (no trailing bytes). */
export function readRoot(buf: Uint8Array, tag: number, what: string): DerNode {
  const node = expectNode(buf, 0, buf.length, tag, what);
  if (node.end !== buf.length) throw malformed(`${what}: ${buf.length - node.end} trailing bytes`);
  return node;
}

/** The child nodes of a constructed node, in order. */
export function childrenOf(buf: Uint8Array, parent: DerNode): DerNode[] {
  if ((parent.tag & 0x20) === 0) throw malformed(`node at offset ${parent.start} is not constructed`);
  const children: DerNode[] = [];
  for (let offset = parent.contentStart; offset < parent.end;) {
    const child = readNode(buf, offset, parent.end);
    children.push(child);
    offset = child.end;
  }
  return children;
}

/** The content octets of a node (a view, not a copy). */
export function contentOf(buf: Buffer, node: DerNode): Buffer {
  return buf.subarray(node.contentStart, node.end);
}

/** The full encoding of a node, header included (a view, not a copy). */
export function encodingOf(buf: Buffer, node: DerNode): Buffer {
  return buf.subarray(node.start, node.end);
}

/** Decodes OBJECT IDENTIFIER content octets to dotted form. */
export function decodeOid(content: Uint8Array): string {
  if (content.length === 0) throw malformed('empty OID');
  const arcs: bigint[] = [];
  let value = 0n;
  let fresh = true;
  for (const byte of content) {
    // A leading 0x80 would be a non-minimal arc encoding.
    if (fresh && byte === 0x80) throw malformed('non-minimal OID arc');
    value = (value << 7n) | BigInt(byte & 0x7f);
    fresh = (byte & 0x80) === 0;
    if (fresh) {
      arcs.push(value);
      value = 0n;
    }
  }
  if (!fresh) throw malformed('truncated OID');
  const [head = 0n, ...rest] = arcs;
  const first = head < 40n ? 0n : head < 80n ? 1n : 2n;
  return [first, head - first * 40n, ...rest].join('.');
}

const TIME_PATTERN = /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

/** Decodes a UTCTime or GeneralizedTime node (the `Z` forms X.509 uses). */
export function decodeTime(buf: Buffer, node: DerNode): Date {
  if (node.tag !== Tag.UTC_TIME && node.tag !== Tag.GENERALIZED_TIME) {
    throw malformed(`expected a time, got tag 0x${node.tag.toString(16)}`);
  }
  const text = contentOf(buf, node).toString('latin1');
  const match = TIME_PATTERN.exec(text);
  const expectedYearDigits = node.tag === Tag.UTC_TIME ? 2 : 4;
  if (!match || match[1]?.length !== expectedYearDigits) throw malformed(`bad time ${JSON.stringify(text)}`);
  const [, y = '', mo = '', d = '', h = '', mi = '', s = ''] = match;
  let year = Number(y);
  // RFC 5280 4.1.2.5.1: two-digit years 50-99 are 19xx, 00-49 are 20xx.
  if (expectedYearDigits === 2) year += year >= 50 ? 1900 : 2000;
  const date = new Date(Date.UTC(year, Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)));
  if (Number.isNaN(date.getTime()) || date.getUTCDate() !== Number(d)) throw malformed(`bad time ${text}`);
  return date;
}

/** Content of a BIT STRING with no unused bits (keys, signatures). */
export function decodeWholeBitString(buf: Buffer, node: DerNode): Buffer {
  if (node.tag !== Tag.BIT_STRING) throw malformed('expected a BIT STRING');
  const content = contentOf(buf, node);
  if (content.length === 0 || content[0] !== 0) throw malformed('BIT STRING with unused bits');
  return content.subarray(1);
}

/** A BOOLEAN node's value. */
export function decodeBoolean(buf: Buffer, node: DerNode): boolean {
  if (node.tag !== Tag.BOOLEAN || node.end - node.contentStart !== 1) throw malformed('bad BOOLEAN');
  return buf[node.contentStart] !== 0;
}
