/**
 * The static Huffman code of HPACK (RFC 7541 section 5.2 and Appendix B),
 * which peers use for most string literals: nghttp2 (node:http2, curl,
 * Envoy) and Go's net/http, among others, code a string with it whenever
 * that makes it shorter.
 *
 * Decoding runs per header of every request, so it does not walk a tree bit
 * by bit: a table built once at load steps a state machine four bits at a
 * time. A state is an inner node of the code tree (the bits read since the
 * last whole symbol); since no code is shorter than five bits, a nibble ends
 * at most one symbol. The table is 256 states x 16 nibbles x 4 bytes =
 * 16 KiB. A byte-at-a-time table decodes in ~2.5 ns per coded byte instead
 * of ~4 (Node 20, measured), some 150 ns for a typical request's headers,
 * but takes 256 KiB of every sidecar's memory.
 */

import { H2Error, H2ErrorCode } from './h2-errors.js';

/**
 * RFC 7541 Appendix B: for each symbol 0..255 and EOS (256), its code
 * (aligned to the least significant bit) and its length in bits. The code is
 * canonical: ordered by (length, symbol), each code is the previous one plus
 * one, shifted left by the growth in length (test/proxy/lean-h2/hpack.test.ts
 * checks this, which catches a mistyped entry).
 */
// prettier-ignore
const CODE_TABLE = [
  0x1ff8, 13, 0x7fffd8, 23, 0xfffffe2, 28, 0xfffffe3, 28, // 00 01 02 03
  0xfffffe4, 28, 0xfffffe5, 28, 0xfffffe6, 28, 0xfffffe7, 28, // 04 05 06 07
  0xfffffe8, 28, 0xffffea, 24, 0x3ffffffc, 30, 0xfffffe9, 28, // 08 09 0a 0b
  0xfffffea, 28, 0x3ffffffd, 30, 0xfffffeb, 28, 0xfffffec, 28, // 0c 0d 0e 0f
  0xfffffed, 28, 0xfffffee, 28, 0xfffffef, 28, 0xffffff0, 28, // 10 11 12 13
  0xffffff1, 28, 0xffffff2, 28, 0x3ffffffe, 30, 0xffffff3, 28, // 14 15 16 17
  0xffffff4, 28, 0xffffff5, 28, 0xffffff6, 28, 0xffffff7, 28, // 18 19 1a 1b
  0xffffff8, 28, 0xffffff9, 28, 0xffffffa, 28, 0xffffffb, 28, // 1c 1d 1e 1f
  0x14, 6, 0x3f8, 10, 0x3f9, 10, 0xffa, 12, // 20 21 ! 22 " 23 #
  0x1ff9, 13, 0x15, 6, 0xf8, 8, 0x7fa, 11, // 24 $ 25 % 26 & 27 '
  0x3fa, 10, 0x3fb, 10, 0xf9, 8, 0x7fb, 11, // 28 ( 29 ) 2a * 2b +
  0xfa, 8, 0x16, 6, 0x17, 6, 0x18, 6, // 2c , 2d - 2e . 2f /
  0x0, 5, 0x1, 5, 0x2, 5, 0x19, 6, // 30 0 31 1 32 2 33 3
  0x1a, 6, 0x1b, 6, 0x1c, 6, 0x1d, 6, // 34 4 35 5 36 6 37 7
  0x1e, 6, 0x1f, 6, 0x5c, 7, 0xfb, 8, // 38 8 39 9 3a : 3b ;
  0x7ffc, 15, 0x20, 6, 0xffb, 12, 0x3fc, 10, // 3c < 3d = 3e > 3f ?
  0x1ffa, 13, 0x21, 6, 0x5d, 7, 0x5e, 7, // 40 @ 41 A 42 B 43 C
  0x5f, 7, 0x60, 7, 0x61, 7, 0x62, 7, // 44 D 45 E 46 F 47 G
  0x63, 7, 0x64, 7, 0x65, 7, 0x66, 7, // 48 H 49 I 4a J 4b K
  0x67, 7, 0x68, 7, 0x69, 7, 0x6a, 7, // 4c L 4d M 4e N 4f O
  0x6b, 7, 0x6c, 7, 0x6d, 7, 0x6e, 7, // 50 P 51 Q 52 R 53 S
  0x6f, 7, 0x70, 7, 0x71, 7, 0x72, 7, // 54 T 55 U 56 V 57 W
  0xfc, 8, 0x73, 7, 0xfd, 8, 0x1ffb, 13, // 58 X 59 Y 5a Z 5b [
  0x7fff0, 19, 0x1ffc, 13, 0x3ffc, 14, 0x22, 6, // 5c \ 5d ] 5e ^ 5f _
  0x7ffd, 15, 0x3, 5, 0x23, 6, 0x4, 5, // 60 ` 61 a 62 b 63 c
  0x24, 6, 0x5, 5, 0x25, 6, 0x26, 6, // 64 d 65 e 66 f 67 g
  0x27, 6, 0x6, 5, 0x74, 7, 0x75, 7, // 68 h 69 i 6a j 6b k
  0x28, 6, 0x29, 6, 0x2a, 6, 0x7, 5, // 6c l 6d m 6e n 6f o
  0x2b, 6, 0x76, 7, 0x2c, 6, 0x8, 5, // 70 p 71 q 72 r 73 s
  0x9, 5, 0x2d, 6, 0x77, 7, 0x78, 7, // 74 t 75 u 76 v 77 w
  0x79, 7, 0x7a, 7, 0x7b, 7, 0x7ffe, 15, // 78 x 79 y 7a z 7b {
  0x7fc, 11, 0x3ffd, 14, 0x1ffd, 13, 0xffffffc, 28, // 7c | 7d } 7e ~ 7f
  0xfffe6, 20, 0x3fffd2, 22, 0xfffe7, 20, 0xfffe8, 20, // 80 81 82 83
  0x3fffd3, 22, 0x3fffd4, 22, 0x3fffd5, 22, 0x7fffd9, 23, // 84 85 86 87
  0x3fffd6, 22, 0x7fffda, 23, 0x7fffdb, 23, 0x7fffdc, 23, // 88 89 8a 8b
  0x7fffdd, 23, 0x7fffde, 23, 0xffffeb, 24, 0x7fffdf, 23, // 8c 8d 8e 8f
  0xffffec, 24, 0xffffed, 24, 0x3fffd7, 22, 0x7fffe0, 23, // 90 91 92 93
  0xffffee, 24, 0x7fffe1, 23, 0x7fffe2, 23, 0x7fffe3, 23, // 94 95 96 97
  0x7fffe4, 23, 0x1fffdc, 21, 0x3fffd8, 22, 0x7fffe5, 23, // 98 99 9a 9b
  0x3fffd9, 22, 0x7fffe6, 23, 0x7fffe7, 23, 0xffffef, 24, // 9c 9d 9e 9f
  0x3fffda, 22, 0x1fffdd, 21, 0xfffe9, 20, 0x3fffdb, 22, // a0 a1 a2 a3
  0x3fffdc, 22, 0x7fffe8, 23, 0x7fffe9, 23, 0x1fffde, 21, // a4 a5 a6 a7
  0x7fffea, 23, 0x3fffdd, 22, 0x3fffde, 22, 0xfffff0, 24, // a8 a9 aa ab
  0x1fffdf, 21, 0x3fffdf, 22, 0x7fffeb, 23, 0x7fffec, 23, // ac ad ae af
  0x1fffe0, 21, 0x1fffe1, 21, 0x3fffe0, 22, 0x1fffe2, 21, // b0 b1 b2 b3
  0x7fffed, 23, 0x3fffe1, 22, 0x7fffee, 23, 0x7fffef, 23, // b4 b5 b6 b7
  0xfffea, 20, 0x3fffe2, 22, 0x3fffe3, 22, 0x3fffe4, 22, // b8 b9 ba bb
  0x7ffff0, 23, 0x3fffe5, 22, 0x3fffe6, 22, 0x7ffff1, 23, // bc bd be bf
  0x3ffffe0, 26, 0x3ffffe1, 26, 0xfffeb, 20, 0x7fff1, 19, // c0 c1 c2 c3
  0x3fffe7, 22, 0x7ffff2, 23, 0x3fffe8, 22, 0x1ffffec, 25, // c4 c5 c6 c7
  0x3ffffe2, 26, 0x3ffffe3, 26, 0x3ffffe4, 26, 0x7ffffde, 27, // c8 c9 ca cb
  0x7ffffdf, 27, 0x3ffffe5, 26, 0xfffff1, 24, 0x1ffffed, 25, // cc cd ce cf
  0x7fff2, 19, 0x1fffe3, 21, 0x3ffffe6, 26, 0x7ffffe0, 27, // d0 d1 d2 d3
  0x7ffffe1, 27, 0x3ffffe7, 26, 0x7ffffe2, 27, 0xfffff2, 24, // d4 d5 d6 d7
  0x1fffe4, 21, 0x1fffe5, 21, 0x3ffffe8, 26, 0x3ffffe9, 26, // d8 d9 da db
  0xffffffd, 28, 0x7ffffe3, 27, 0x7ffffe4, 27, 0x7ffffe5, 27, // dc dd de df
  0xfffec, 20, 0xfffff3, 24, 0xfffed, 20, 0x1fffe6, 21, // e0 e1 e2 e3
  0x3fffe9, 22, 0x1fffe7, 21, 0x1fffe8, 21, 0x7ffff3, 23, // e4 e5 e6 e7
  0x3fffea, 22, 0x3fffeb, 22, 0x1ffffee, 25, 0x1ffffef, 25, // e8 e9 ea eb
  0xfffff4, 24, 0xfffff5, 24, 0x3ffffea, 26, 0x7ffff4, 23, // ec ed ee ef
  0x3ffffeb, 26, 0x7ffffe6, 27, 0x3ffffec, 26, 0x3ffffed, 26, // f0 f1 f2 f3
  0x7ffffe7, 27, 0x7ffffe8, 27, 0x7ffffe9, 27, 0x7ffffea, 27, // f4 f5 f6 f7
  0x7ffffeb, 27, 0xffffffe, 28, 0x7ffffec, 27, 0x7ffffed, 27, // f8 f9 fa fb
  0x7ffffee, 27, 0x7ffffef, 27, 0x7fffff0, 27, 0x3ffffee, 26, // fc fd fe ff
  0x3fffffff, 30, // 256 EOS
];

/** Bit lengths of the symbols' codes, indexed by byte. */
const LENGTHS = new Uint8Array(256);
/** The symbols' codes, indexed by byte. */
const CODES = new Uint32Array(256);
for (let sym = 0; sym < 256; sym++) {
  CODES[sym] = CODE_TABLE[2 * sym] as number;
  LENGTHS[sym] = CODE_TABLE[2 * sym + 1] as number;
}

const EOS = 256;

/** Decoding table entry: next state in bits 0-7, the symbol ended in bits 8-15, and these flags. */
const EMITS = 1 << 16;
const DECODES_EOS = 1 << 17;

/** What it means for a string to end in a state (RFC 7541 5.2). */
const END_OK = 0;
const END_PADDING_TOO_LONG = 1;
const END_NOT_EOS_PREFIX = 2;

/** `DECODE[state << 4 | nibble]`: the step from `state` on reading `nibble`. */
const DECODE = new Uint32Array(256 * 16);
/** `END[state]`: END_OK, END_PADDING_TOO_LONG or END_NOT_EOS_PREFIX. */
const END = new Uint8Array(256);

buildDecodeTable();

function buildDecodeTable(): void {
  // The code tree: 257 leaves, so 256 inner nodes, numbered in order of creation with the root as 0.
  // children[2 * node + bit] is an inner node (> 0), a leaf as -1 - symbol, or 0 while unset.
  const children = new Int16Array(2 * 256);
  const depth = new Uint8Array(256);
  const allOnes = new Uint8Array(256);
  allOnes[0] = 1;
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const code = CODE_TABLE[2 * sym] as number;
    const length = CODE_TABLE[2 * sym + 1] as number;
    let node = 0;
    for (let i = length - 1; i > 0; i--) {
      const bit = (code >>> i) & 1;
      let next = children[2 * node + bit] as number;
      if (next === 0) {
        next = nodes++;
        children[2 * node + bit] = next;
        depth[next] = (depth[node] as number) + 1;
        allOnes[next] = (allOnes[node] as number) & bit;
      }
      node = next;
    }
    children[2 * node + (code & 1)] = -1 - sym;
  }
  for (let state = 0; state < 256; state++) {
    // Bits since the last symbol are padding if all ones (a prefix of EOS), and at most 7 of them.
    if (allOnes[state] === 0) END[state] = END_NOT_EOS_PREFIX;
    else if ((depth[state] as number) > 7) END[state] = END_PADDING_TOO_LONG;
    else END[state] = END_OK;
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const child = children[2 * node + ((nibble >>> i) & 1)] as number;
        if (child >= 0) {
          node = child;
          continue;
        }
        const sym = -1 - child;
        if (sym === EOS) {
          entry = DECODES_EOS;
          break;
        }
        entry = EMITS | (sym << 8);
        node = 0;
      }
      DECODE[(state << 4) | nibble] = entry | node;
    }
  }
}

/** Where decoded bytes go before they become a string; grown as needed, never shrunk. */
let scratch = Buffer.allocUnsafeSlow(256);

function fail(message: string): never {
  throw new H2Error(H2ErrorCode.COMPRESSION_ERROR, message);
}

/**
 * Decodes the Huffman-coded string literal `buf[start..end)` into a latin1
 * string (one character per byte). Throws a COMPRESSION_ERROR H2Error for
 * an EOS symbol inside the string and for padding that is longer than 7 bits
 * or not all ones (RFC 7541 5.2).
 */
export function huffmanDecode(buf: Buffer, start: number, end: number): string {
  // The shortest code is 5 bits: at most 8 symbols per 5 bytes.
  const most = Math.ceil(((end - start) * 8) / 5);
  if (scratch.length < most) scratch = Buffer.allocUnsafeSlow(Math.max(most, 2 * scratch.length));
  const out = scratch;
  let n = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const byte = buf[i] as number;
    let entry = DECODE[(state << 4) | (byte >>> 4)] as number;
    if (entry >= EMITS) {
      if (entry >= DECODES_EOS) fail('Huffman-coded string contains the EOS symbol');
      out[n++] = entry >>> 8;
    }
    entry = DECODE[((entry & 0xff) << 4) | (byte & 0x0f)] as number;
    if (entry >= EMITS) {
      if (entry >= DECODES_EOS) fail('Huffman-coded string contains the EOS symbol');
      out[n++] = entry >>> 8;
    }
    state = entry & 0xff;
  }
  const ending = END[state];
  if (ending !== END_OK) {
    fail(
      ending === END_PADDING_TOO_LONG
        ? 'Huffman-coded string has more than 7 bits of padding'
        : 'Huffman-coded string ends in padding that is not all ones (an incomplete code)',
    );
  }
  return out.toString('latin1', 0, n);
}

/**
 * The length in bytes of `s` Huffman-coded. Each character stands for one
 * byte (latin1): only its low 8 bits count.
 */
export function huffmanEncodedLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += LENGTHS[s.charCodeAt(i) & 0xff] as number;
  return (bits + 7) >>> 3;
}

/**
 * Writes `s` Huffman-coded at `out[offset]`, padded with ones to a whole
 * byte, and returns the offset after it. `out` must have room for
 * `huffmanEncodedLength(s)` bytes.
 */
export function huffmanEncode(s: string, out: Buffer, offset: number): number {
  let pos = offset;
  // Bits not yet written, at the low end of `pending`: fewer than 8 between symbols, so with a code of at
  // most 24 bits they fit in 31; longer codes go in two parts.
  let pending = 0;
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const sym = s.charCodeAt(i) & 0xff;
    let code = CODES[sym] as number;
    let length = LENGTHS[sym] as number;
    if (length > 24) {
      pending = (pending << (length - 16)) | (code >>> 16);
      bits += length - 16;
      while (bits >= 8) {
        bits -= 8;
        out[pos++] = pending >>> bits;
      }
      pending &= (1 << bits) - 1;
      code &= 0xffff;
      length = 16;
    }
    pending = (pending << length) | code;
    bits += length;
    while (bits >= 8) {
      bits -= 8;
      out[pos++] = pending >>> bits;
    }
    pending &= (1 << bits) - 1;
  }
  if (bits > 0) out[pos++] = (pending << (8 - bits)) | (0xff >>> bits);
  return pos;
}
