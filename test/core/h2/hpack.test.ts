/**
 * HPACK (RFC 7541) for the lean HTTP/2 implementation: the Huffman code
 * checked against the RFC's table and examples, every example of Appendix C
 * decoded (with the dynamic table's contents and size checked after each),
 * the encoder round-tripped through the decoder over changing header lists
 * and table sizes, every malformed block refused with COMPRESSION_ERROR, and
 * both directions against nghttp2 (node:http2) on a real socket.
 */

import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import { H2Error, H2ErrorCode } from '../../../core/h2/h2-errors.js';
import { HpackDecoder, HpackEncoder } from '../../../core/h2/hpack.js';
import { huffmanDecode, huffmanEncode, huffmanEncodedLength } from '../../../core/h2/huffman.js';

const NO_LIMIT = Number.MAX_SAFE_INTEGER;

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** RFC 7541 5.1: `value` with an N-bit prefix, the first byte's other bits from `first`. */
function int(first: number, prefixBits: number, value: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const bytes = [first | max];
  value -= max;
  while (value >= 0x80) {
    bytes.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 0x80);
  }
  bytes.push(value);
  return bytes;
}

/** A raw string literal. */
function str(s: string): number[] {
  return [...int(0, 7, s.length), ...Buffer.from(s, 'latin1')];
}

function huffman(s: string): Buffer {
  const buf = Buffer.alloc(huffmanEncodedLength(s));
  expect(huffmanEncode(s, buf, 0)).toBe(buf.length);
  return buf;
}

function decodeAll(decoder: HpackDecoder, block: Buffer): string[] {
  const list = decoder.decode(block, NO_LIMIT);
  if (list === undefined) throw new Error('unexpected undefined');
  return list;
}

/**
 * Checks the decoder's dynamic table holds exactly `entries` (newest first),
 * by decoding indexed fields 62.. and expecting the next index to be refused.
 */
function expectTable(decoder: HpackDecoder, entries: string[]): void {
  const n = entries.length / 2;
  const indexes = Array.from({ length: n }, (_, i) => int(0x80, 7, 62 + i)).flat();
  expect(decodeAll(decoder, Buffer.from(indexes))).toEqual(entries);
  expectCompressionError(() => decoder.decode(Buffer.from(int(0x80, 7, 62 + n)), NO_LIMIT), 'beyond');
}

/**
 * Checks the table's size is exactly `size` (RFC 7541 4.1), by size updates:
 * at `size` nothing is evicted, one byte less evicts the oldest entry. This
 * leaves the table's maximum size at `size - 1`.
 */
function expectTableSize(decoder: HpackDecoder, size: number, entries: string[]): void {
  decodeAll(decoder, Buffer.from(int(0x20, 5, size)));
  expectTable(decoder, entries);
  decodeAll(decoder, Buffer.from(int(0x20, 5, size - 1)));
  expectTable(decoder, entries.slice(0, -2));
}

function expectCompressionError(fn: () => unknown, message: string | RegExp): void {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(H2Error);
  expect((error as H2Error).h2Code).toBe(H2ErrorCode.COMPRESSION_ERROR);
  expect((error as H2Error).connectionError).toBe(true);
  expect((error as H2Error).message).toMatch(message);
}

describe('Huffman code (RFC 7541 Appendix B)', () => {
  // RFC 7541 C.4 and C.6: each string and its Huffman coding.
  const EXAMPLES: [string, string][] = [
    ['www.example.com', 'f1e3 c2e5 f23a 6ba0 ab90 f4ff'],
    ['no-cache', 'a8eb 1064 9cbf'],
    ['custom-key', '25a8 49e9 5ba9 7d7f'],
    ['custom-value', '25a8 49e9 5bb8 e8b4 bf'],
    ['302', '6402'],
    ['307', '640e ff'],
    ['private', 'aec3 771a 4b'],
    ['Mon, 21 Oct 2013 20:13:21 GMT', 'd07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff'],
    ['Mon, 21 Oct 2013 20:13:22 GMT', 'd07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff'],
    ['https://www.example.com', '9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3'],
    ['gzip', '9bd9 ab'],
    [
      'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1',
      '94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
    ],
  ];

  it.each(EXAMPLES)('decodes and encodes %j as in RFC 7541 C.4 and C.6', (text, coded) => {
    const bytes = hex(coded);
    expect(huffmanDecode(bytes, 0, bytes.length)).toBe(text);
    expect(huffmanEncodedLength(text)).toBe(bytes.length);
    expect(huffman(text).toString('hex')).toBe(bytes.toString('hex'));
  });

  it('decodes a slice of a larger buffer, and the empty string', () => {
    const bytes = Buffer.concat([Buffer.from([1, 2, 3]), hex('9bd9 ab'), Buffer.from([4])]);
    expect(huffmanDecode(bytes, 3, 6)).toBe('gzip');
    expect(huffmanDecode(bytes, 3, 3)).toBe('');
    expect(huffmanEncode('', bytes, 2)).toBe(2);
  });

  /** Each symbol's code and length, as the encoder writes it: 8 copies of a symbol fill whole bytes. */
  function codeOf(sym: number): { code: bigint; length: number } {
    const coded = huffman(String.fromCharCode(sym).repeat(8));
    const length = coded.length;
    const code = BigInt(`0x${coded.toString('hex')}`) >> BigInt(7 * length);
    return { code, length };
  }

  it('is the canonical, complete prefix code of the RFC (every entry checked)', () => {
    const symbols = Array.from({ length: 256 }, (_, sym) => ({ sym, ...codeOf(sym) }));
    symbols.push({ sym: 256, code: 0x3fffffffn, length: 30 }); // EOS
    // Complete: the code space is used exactly (Kraft's sum is 1).
    expect(symbols.reduce((sum, s) => sum + (1n << BigInt(30 - s.length)), 0n)).toBe(1n << 30n);
    // Canonical: by (length, symbol), each code is the last plus one, shifted by the growth in length. A
    // mistyped code or length breaks this for the entries that follow.
    symbols.sort((a, b) => a.length - b.length || a.sym - b.sym);
    let expected = 0n;
    let previous = symbols[0]?.length ?? 0;
    for (const s of symbols) {
      expected <<= BigInt(s.length - previous);
      previous = s.length;
      expect({ sym: s.sym, code: s.code }).toEqual({ sym: s.sym, code: expected });
      expected++;
    }
    // And some entries as the RFC prints them.
    const rfc: [number, number, number][] = [
      [0, 0x1ff8, 13],
      [10, 0x3ffffffc, 30],
      [32, 0x14, 6],
      [48, 0x0, 5],
      [97, 0x3, 5],
      [122, 0x7b, 7],
      [123, 0x7ffe, 15],
      [127, 0xffffffc, 28],
      [128, 0xfffe6, 20],
      [200, 0x3ffffe2, 26],
      [255, 0x3ffffee, 26],
    ];
    for (const [sym, code, length] of rfc) expect(codeOf(sym)).toEqual({ code: BigInt(code), length });
  });

  it('round-trips every byte value and random latin1 strings', () => {
    const all = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
    const coded = huffman(all);
    expect(huffmanDecode(coded, 0, coded.length)).toBe(all);
    const latin1 = fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)) });
    fc.assert(
      fc.property(latin1, (s) => {
        const bytes = huffman(s);
        expect(huffmanDecode(bytes, 0, bytes.length)).toBe(s);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses EOS in the string, padding over 7 bits and padding that is not all ones', () => {
    const decode = (bytes: Buffer) => () => huffmanDecode(bytes, 0, bytes.length);
    // 30 ones: EOS.
    expectCompressionError(decode(hex('ffff ffff')), 'EOS');
    // 'a' (00011), then EOS.
    expectCompressionError(decode(hex('1fff ffff fe')), 'EOS');
    // 'a' then 11 ones.
    expectCompressionError(decode(hex('1fff')), 'more than 7 bits of padding');
    // A whole byte of ones after whole symbols.
    expectCompressionError(decode(hex('9bd9 abff')), 'more than 7 bits of padding');
    // 'a' then 000.
    expectCompressionError(decode(hex('18')), 'not all ones');
    // 'a' then 101.
    expectCompressionError(decode(hex('1d')), 'not all ones');
    // A code cut short: 13 bits of the 20 of symbol 128, 1111111111111 110: the last bit breaks the ones.
    expectCompressionError(decode(hex('fffe')), 'not all ones');
  });
});

describe('HpackDecoder: RFC 7541 Appendix C', () => {
  it('C.2.1 literal header field with indexing', () => {
    const decoder = new HpackDecoder();
    const block = hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572');
    expect(decodeAll(decoder, block)).toEqual(['custom-key', 'custom-header']);
    expectTable(decoder, ['custom-key', 'custom-header']);
    expectTableSize(decoder, 55, ['custom-key', 'custom-header']);
  });

  it('C.2.2 literal header field without indexing', () => {
    const decoder = new HpackDecoder();
    expect(decodeAll(decoder, hex('040c 2f73 616d 706c 652f 7061 7468'))).toEqual([':path', '/sample/path']);
    expectTable(decoder, []);
  });

  it('C.2.3 literal header field never indexed', () => {
    const decoder = new HpackDecoder();
    expect(decodeAll(decoder, hex('1008 7061 7373 776f 7264 0673 6563 7265 74'))).toEqual([
      'password',
      'secret',
    ]);
    expectTable(decoder, []);
  });

  it('C.2.4 indexed header field', () => {
    const decoder = new HpackDecoder();
    expect(decodeAll(decoder, hex('82'))).toEqual([':method', 'GET']);
    expectTable(decoder, []);
  });

  const REQUESTS = [
    [':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com'],
    [
      ':method',
      'GET',
      ':scheme',
      'http',
      ':path',
      '/',
      ':authority',
      'www.example.com',
      'cache-control',
      'no-cache',
    ],
    [
      ':method',
      'GET',
      ':scheme',
      'https',
      ':path',
      '/index.html',
      ':authority',
      'www.example.com',
      'custom-key',
      'custom-value',
    ],
  ];
  const REQUEST_TABLES = [
    [':authority', 'www.example.com'],
    ['cache-control', 'no-cache', ':authority', 'www.example.com'],
    ['custom-key', 'custom-value', 'cache-control', 'no-cache', ':authority', 'www.example.com'],
  ];

  function requestSequence(blocks: string[]): void {
    const decoder = new HpackDecoder();
    blocks.forEach((block, i) => {
      expect(decodeAll(decoder, hex(block))).toEqual(REQUESTS[i]);
      expectTable(decoder, REQUEST_TABLES[i] as string[]);
    });
    expectTableSize(decoder, 164, REQUEST_TABLES[2] as string[]);
  }

  it('C.3 requests without Huffman coding, in sequence', () => {
    requestSequence([
      '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '8286 84be 5808 6e6f 2d63 6163 6865',
      '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
    ]);
  });

  it('C.4 requests with Huffman coding, in sequence', () => {
    requestSequence([
      '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
      '8286 84be 5886 a8eb 1064 9cbf',
      '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
    ]);
  });

  const DATE_1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
  const DATE_2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
  const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
  const LOCATION = 'https://www.example.com';
  const RESPONSES = [
    [':status', '302', 'cache-control', 'private', 'date', DATE_1, 'location', LOCATION],
    [':status', '307', 'cache-control', 'private', 'date', DATE_1, 'location', LOCATION],
    [
      ':status',
      '200',
      'cache-control',
      'private',
      'date',
      DATE_2,
      'location',
      LOCATION,
      'content-encoding',
      'gzip',
      'set-cookie',
      COOKIE,
    ],
  ];
  const RESPONSE_TABLES = [
    ['location', LOCATION, 'date', DATE_1, 'cache-control', 'private', ':status', '302'],
    [':status', '307', 'location', LOCATION, 'date', DATE_1, 'cache-control', 'private'],
    ['set-cookie', COOKIE, 'content-encoding', 'gzip', 'date', DATE_2],
  ];
  const RESPONSE_TABLE_SIZES = [222, 222, 215];

  function responseSequence(blocks: string[]): void {
    // SETTINGS_HEADER_TABLE_SIZE 256: entries are evicted.
    const decoder = new HpackDecoder(256);
    blocks.forEach((block, i) => {
      expect(decodeAll(decoder, hex(block))).toEqual(RESPONSES[i]);
      expectTable(decoder, RESPONSE_TABLES[i] as string[]);
    });
    expectTableSize(decoder, RESPONSE_TABLE_SIZES[2] as number, RESPONSE_TABLES[2] as string[]);
  }

  it('C.5 responses without Huffman coding, 256-byte table with evictions', () => {
    responseSequence([
      `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
       2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
      '4803 3330 37c1 c0bf',
      `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
       54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
       5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`,
    ]);
  });

  it('C.6 responses with Huffman coding, 256-byte table with evictions', () => {
    responseSequence([
      `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
       2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
      '4883 640e ffc1 c0bf',
      `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
       77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
       9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
    ]);
  });
});

describe('HpackDecoder: limits and malformed blocks', () => {
  it('refuses every malformed block with COMPRESSION_ERROR naming the fault', () => {
    const refuses = (bytes: number[], message: string | RegExp, decoder = new HpackDecoder()) =>
      expectCompressionError(() => decoder.decode(Buffer.from(bytes), NO_LIMIT), message);
    refuses([0x80], 'index 0');
    refuses([0x80 | 62], /index 62 beyond the static and dynamic tables \(61 entries\)/);
    refuses([0xff, 0x80, 0x01], /index 255 beyond/);
    refuses([0x40 | 62, 0x01, 0x61], /index 62 beyond/);
    refuses([0x0f, 0x30, 0x00], /index 63 beyond/);
    refuses([0x1f, 0x31, 0x00], /index 64 beyond/);
    // Integers.
    refuses([0xff], 'truncated inside an integer');
    refuses([0xff, 0x80, 0x80], 'truncated inside an integer');
    refuses([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], 'larger than 2^31-1');
    refuses([0x7f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 'more than 5 continuation bytes');
    // Strings.
    refuses([0x40], 'truncated before a string literal');
    refuses([0x04], 'truncated before a string literal');
    refuses([0x40, 0x01, 0x61], 'truncated before a string literal');
    refuses([0x40, 0x05, 0x61, 0x62], 'string literal of 5 bytes truncated: the header block has 2 left');
    refuses([0x00, 0x7f, 0xff, 0xff, 0x03], 'string literal of 65662 bytes truncated');
    refuses([0x04, 0xff], 'truncated inside an integer');
    refuses([0x04, 0x7f, 0x80], 'truncated inside an integer');
    // Huffman: EOS, long padding, padding not all ones.
    refuses([0x04, 0x84, 0xff, 0xff, 0xff, 0xff], 'EOS');
    refuses([0x04, 0x82, 0x1f, 0xff], 'more than 7 bits of padding');
    refuses([0x04, 0x81, 0x18], 'not all ones');
    refuses([0x00, 0x81, 0x1d, 0x00], 'not all ones');
    // Dynamic table size updates: over the limit, or after a field.
    refuses([0x3f, 0xe2, 0x1f], 'size update to 4097 exceeds SETTINGS_HEADER_TABLE_SIZE 4096');
    const lowered = new HpackDecoder(8192);
    lowered.setMaxTableSize(4096);
    refuses([0x3f, 0xe2, 0x1f], 'size update to 4097 exceeds SETTINGS_HEADER_TABLE_SIZE 4096', lowered);
    refuses(
      [0x3f, 0xe1, 0x01],
      'size update to 256 exceeds SETTINGS_HEADER_TABLE_SIZE 100',
      new HpackDecoder(100),
    );
    refuses([0x82, 0x20], 'size update after a header field');
    refuses([0x20, 0x82, 0x20], 'size update after a header field');
  });

  it('takes size updates at the start of a block, and requires one after SETTINGS_HEADER_TABLE_SIZE is lowered', () => {
    const decoder = new HpackDecoder();
    // Two updates then a field; the table starts over at size 0 then 4096.
    expect(decodeAll(decoder, Buffer.from([0x20, 0x3f, 0xe1, 0x1f, 0x82]))).toEqual([':method', 'GET']);
    decodeAll(decoder, Buffer.from([0x40, ...str('a'), ...str('b')]));
    expectTable(decoder, ['a', 'b']);

    decoder.setMaxTableSize(1024);
    expectCompressionError(
      () => decoder.decode(Buffer.from([0x82]), NO_LIMIT),
      'without the dynamic table size update SETTINGS_HEADER_TABLE_SIZE 1024 requires',
    );

    const other = new HpackDecoder();
    other.setMaxTableSize(1024);
    expectCompressionError(
      () => other.decode(Buffer.alloc(0), NO_LIMIT),
      'without the dynamic table size update',
    );
    const again = new HpackDecoder();
    again.setMaxTableSize(1024);
    expect(decodeAll(again, Buffer.from([...int(0x20, 5, 1024), 0x82]))).toEqual([':method', 'GET']);
    // Raising it needs no update.
    again.setMaxTableSize(8192);
    expect(decodeAll(again, Buffer.from([0x82]))).toEqual([':method', 'GET']);
    expect(decodeAll(again, Buffer.from(int(0x20, 5, 8192)))).toEqual([]);
  });

  it('empties the table for an entry larger than it, and evicts by name + value + 32', () => {
    const decoder = new HpackDecoder(100);
    decodeAll(decoder, Buffer.from([0x40, ...str('n1'), ...str('v'.repeat(30))])); // 64
    decodeAll(decoder, Buffer.from([0x40, ...str('n2'), ...str('w'.repeat(2))])); // 36: 100 in all
    expectTable(decoder, ['n2', 'ww', 'n1', 'v'.repeat(30)]);
    decodeAll(decoder, Buffer.from([0x40, ...str('n3'), ...str('')])); // 34: evicts n1
    expectTable(decoder, ['n3', '', 'n2', 'ww']);
    // An entry of 101 empties the table and is not added, but is still a field of the list.
    expect(decodeAll(decoder, Buffer.from([0x40, ...str('n4'), ...str('x'.repeat(67))]))).toEqual([
      'n4',
      'x'.repeat(67),
    ]);
    expectTable(decoder, []);
    // A literal whose name is the entry it evicts: the name is read before the eviction.
    decodeAll(decoder, Buffer.from([0x40, ...str('n5'), ...str('y'.repeat(60))])); // 94
    expect(decodeAll(decoder, Buffer.from([0x40 | 62, ...str('z'.repeat(30))]))).toEqual([
      'n5',
      'z'.repeat(30),
    ]);
    expectTable(decoder, ['n5', 'z'.repeat(30)]);
  });

  it('decodes the whole block past maxListSize, returns undefined, and stays in step', () => {
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    const headers = [
      ':method',
      'GET',
      ':authority',
      'svc.mesh',
      'x-big',
      'b'.repeat(200),
      'x-after',
      'after',
    ];
    const size = headers.reduce((sum, s) => sum + s.length, 0) + 32 * 4;
    const first = encoder.encode(headers);
    // The limit is passed at x-big; x-after, after it, is still added to the table.
    expect(decoder.decode(first, 100)).toBeUndefined();
    const second = encoder.encode(headers);
    expect(second.length).toBeLessThan(8);
    expect(decoder.decode(second, size)).toEqual(headers);
    expect(decoder.decode(encoder.encode(headers), size - 1)).toBeUndefined();
    expect(decoder.decode(encoder.encode(headers), NO_LIMIT)).toEqual(headers);
  });
});

describe('HpackEncoder', () => {
  const REQUEST = [
    ':method',
    'GET',
    ':scheme',
    'https',
    ':authority',
    'reviews.default.svc.cluster.local:9080',
    ':path',
    '/reviews/0',
    'user-agent',
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)',
    'accept',
    'application/json',
    'accept-encoding',
    'gzip, deflate',
    'x-request-id',
    '0d5b4f2e-8a7b-4c1e-9f3a-2b6c7d8e9f01',
    'traceparent',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    'authorization',
    'Bearer abc.def.ghi',
    'x-tenant',
    'acme',
  ];

  it('indexes the fields that repeat: the second block of a request is a fraction of the first', () => {
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    const first = encoder.encode(REQUEST);
    const second = encoder.encode(REQUEST);
    expect(decodeAll(decoder, first)).toEqual(REQUEST);
    expect(decodeAll(decoder, second)).toEqual(REQUEST);
    // Seven fields indexed, one byte each; the literals of :path (1 + 1 + 10), x-request-id (1 + 13 + 37),
    // traceparent (1 + 12 + 56) and authorization (2 + 1 + 18) as in the first block.
    expect(second.length).toBe(7 + 12 + 51 + 69 + 21);
    expect(first.length).toBeGreaterThan(300);
    // Static exact matches are one byte: :method GET (2), :scheme https (7), accept-encoding (16).
    expect([...first.subarray(0, 2)]).toEqual([0x82, 0x87]);
    const latin1 = (s: string) => Buffer.from(s, 'latin1');
    // Repeated fields are indexed: their values are not in the second block.
    for (const repeated of [
      'reviews.default.svc.cluster.local:9080',
      'Mozilla/5.0',
      'application/json',
      'acme',
    ]) {
      expect(first.includes(latin1(repeated))).toBe(true);
      expect(second.includes(latin1(repeated))).toBe(false);
    }
    // Fields that change per request are never indexed, even when they repeat.
    for (const changing of [
      '/reviews/0',
      '0d5b4f2e-8a7b-4c1e-9f3a-2b6c7d8e9f01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736',
    ]) {
      expect(second.includes(latin1(changing))).toBe(true);
    }
    // x-request-id as a literal without indexing, with a literal name: 0000 0000.
    const requestId = Buffer.from([0x00, ...str('x-request-id'), ...str(REQUEST[15] as string)]);
    expect(first.includes(requestId)).toBe(true);
    expect(second.includes(requestId)).toBe(true);
    // authorization never indexed, by its static name (23): 0001 1111, 23 - 15.
    const authorization = Buffer.from([0x1f, 23 - 15, ...str('Bearer abc.def.ghi')]);
    expect(first.includes(authorization)).toBe(true);
    expect(second.includes(authorization)).toBe(true);
    // Nothing but the indexed fields went into the decoder's table: :authority, user-agent, accept, x-tenant.
    expectTable(decoder, [
      'x-tenant',
      'acme',
      'accept',
      'application/json',
      'user-agent',
      REQUEST[9] as string,
      ':authority',
      REQUEST[5] as string,
    ]);
  });

  it('does not index the other changing and sensitive fields, nor entries over a quarter of the table', () => {
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    const headers = [
      ':status',
      '200',
      'content-length',
      '1234',
      'date',
      'Mon, 21 Oct 2013 20:13:21 GMT',
      'etag',
      '"abc"',
      'last-modified',
      'Mon, 21 Oct 2013 20:13:21 GMT',
      'age',
      '10',
      'if-modified-since',
      'Mon, 21 Oct 2013 20:13:21 GMT',
      'tracestate',
      'congo=t61rcWkgMzE',
      'b3',
      '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1',
      'x-b3-traceid',
      '80f198ee56343ba864fe8b2a57d3eff7',
      'x-b3-spanid',
      'e457b5a2e4d86bd1',
      'proxy-authorization',
      'Basic YWxhZGRpbjpvcGVuc2VzYW1l',
      'cookie',
      'session=1',
      'set-cookie',
      'id=a3fWa; Max-Age=2592000',
      'x-large',
      'l'.repeat(1024 - 32 - 7 + 1),
      'x-quarter',
      'q'.repeat(1024 - 32 - 9),
    ];
    const first = encoder.encode(headers);
    const second = encoder.encode(headers);
    expect(decodeAll(decoder, first)).toEqual(headers);
    expect(decodeAll(decoder, second)).toEqual(headers);
    // Only x-quarter (exactly a quarter of the table) was indexed.
    expectTable(decoder, ['x-quarter', 'q'.repeat(1024 - 32 - 9)]);
    // Its literal (0x40, the name as 1 + 9 bytes, the value as 3 + 983) became one byte.
    expect(second.length).toBe(first.length - (1 + 10 + 3 + 983) + 1);
    // Never indexed: proxy-authorization (49), cookie (32), set-cookie (55).
    for (const [index, value] of [
      [49, 'Basic YWxhZGRpbjpvcGVuc2VzYW1l'],
      [32, 'session=1'],
      [55, 'id=a3fWa; Max-Age=2592000'],
    ] as const) {
      expect(second.includes(Buffer.from([0x1f, index - 15, ...str(value)]))).toBe(true);
    }
  });

  it('signals table size changes at the start of the next block: the smallest, then the last', () => {
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    const headers = ['x-a', '1', 'x-b', '2'];
    const encode = () => {
      const block = encoder.encode(headers);
      expect(decodeAll(decoder, block)).toEqual(headers);
      return block;
    };
    encode();
    expect(encode()).toEqual(Buffer.from([0xbf, 0xbe]));
    // The peer's settings only matter below the encoder's own bound (4096).
    encoder.setMaxTableSize(65536);
    expect(encode()).toEqual(Buffer.from([0xbf, 0xbe]));
    // 256 then 1024; the entries fitted in 256, so they are still indexed.
    encoder.setMaxTableSize(256);
    encoder.setMaxTableSize(1024);
    expect(encode()).toEqual(Buffer.from([...int(0x20, 5, 256), ...int(0x20, 5, 1024), 0xbf, 0xbe]));
    expect(encode()).toEqual(Buffer.from([0xbf, 0xbe]));
    // 0 empties both tables; back at 4096 the fields are added again.
    encoder.setMaxTableSize(0);
    encoder.setMaxTableSize(4096);
    const afterEmptying = encode();
    expect([...afterEmptying.subarray(0, 4)]).toEqual([0x20, ...int(0x20, 5, 4096)]);
    expect(afterEmptying.length).toBeGreaterThan(10);
    expect(encode()).toEqual(Buffer.from([0xbf, 0xbe]));
    // Unchanged, no update.
    encoder.setMaxTableSize(4096);
    expect(encode()).toEqual(Buffer.from([0xbf, 0xbe]));
    // A bound below the default: the first block says so.
    const small = new HpackEncoder(0);
    const smallBlock = small.encode(headers);
    expect(smallBlock[0]).toBe(0x20);
    expect(decodeAll(new HpackDecoder(), smallBlock)).toEqual(headers);
    expect(small.encode(headers)[0]).not.toBe(0x20);
  });

  it('round-trips through the decoder over changing lists and table sizes, latin1 and empty values', () => {
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    const latin1 = String.fromCharCode(...Array.from({ length: 128 }, (_, i) => 0x80 + i));
    const sizes = [4096, 4096, 0, 0, 4096, 128, 512, 4096];

    for (let i = 0; i < 400; i++) {
      if (i % 50 === 25) {
        const size = sizes[(i / 50) | 0] as number;
        encoder.setMaxTableSize(size);
      }
      const headers = [
        ':method',
        i % 3 === 0 ? 'POST' : 'GET',
        ':scheme',
        'http',
        ':authority',
        `svc-${i % 4}.mesh`,
        ':path',
        `/items/${i}`,
        'user-agent',
        'meshfed-test/1.0',
        'x-empty',
        '',
        'x-latin1',
        latin1,
        'x-latin1-changing',
        `${latin1.slice(i % 128)}${i}`,
        'x-request-id',
        `id-${i}`,
        'content-type',
        i % 2 === 0 ? 'application/json' : 'text/plain; charset=\xe9',
      ];
      if (i % 7 === 0) headers.push('x-sometimes', 'v'.repeat(i % 300), 'cookie', `c=${i % 5}`);
      const block = encoder.encode(headers);
      expect(decodeAll(decoder, block)).toEqual(headers);
    }
  });

  it('round-trips random lists and table size changes (property)', () => {
    const name = fc.oneof(
      fc.constantFrom(
        ':method',
        ':path',
        ':status',
        ':authority',
        'accept',
        'content-type',
        'x-request-id',
        'x-b3-sampled',
        'authorization',
        'cookie',
        'date',
        'x-custom',
        'x-other',
      ),
      fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/),
    );
    const value = fc.oneof(
      fc.constantFrom('', 'GET', '200', '/', 'a', 'gzip, deflate', 'application/json'),
      fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 40 }),
      fc.string({ maxLength: 1500 }),
    );
    const step = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.array(fc.tuple(name, value), { maxLength: 12 }).map((fields) => fields.flat()),
      },
      { weight: 1, arbitrary: fc.constantFrom(0, 1, 64, 256, 1000, 4096, 100000) },
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
        const encoder = new HpackEncoder();
        const decoder = new HpackDecoder();
        for (const s of steps) {
          if (typeof s === 'number') {
            // The peer's SETTINGS_HEADER_TABLE_SIZE, acknowledged: both sides see it.
            encoder.setMaxTableSize(s);
            decoder.setMaxTableSize(s);
          } else {
            expect(decodeAll(decoder, encoder.encode(s))).toEqual(s);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('hands out blocks that stay intact while later blocks are encoded, across slabs', () => {
    const encoders = [new HpackEncoder(), new HpackEncoder()];
    const kept: [number, Buffer, string[]][] = [];
    for (let i = 0; i < 600; i++) {
      const headers = [
        ':status',
        '200',
        'x-n',
        String(i),
        'x-size',
        'z'.repeat(i % 100 === 99 ? 20000 : i % 50),
      ];
      kept.push([i % 2, (encoders[i % 2] as HpackEncoder).encode(headers), headers]);
    }
    const decoders = [new HpackDecoder(), new HpackDecoder()];
    for (const [which, block, headers] of kept)
      expect(decodeAll(decoders[which] as HpackDecoder, block)).toEqual(headers);
  });

  it('refuses a list with a name and no value', () => {
    expect(() => new HpackEncoder().encode(['x-a'])).toThrow(RangeError);
  });
});

describe('interop with node:http2 (nghttp2)', () => {
  const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
  const HEADERS = 0x1;
  const SETTINGS = 0x4;
  const CONTINUATION = 0x9;
  const END_STREAM = 0x1;
  const ACK = 0x1;
  const END_HEADERS = 0x4;
  const PADDED = 0x8;
  const PRIORITY = 0x20;

  function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
    const head = Buffer.alloc(9);
    head.writeUIntBE(payload.length, 0, 3);
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(streamId, 5);
    return Buffer.concat([head, payload]);
  }

  /** Every value of a name in a flat list. */
  function valuesOf(list: string[], name: string): string[] {
    const values: string[] = [];
    for (let i = 0; i < list.length; i += 2) if (list[i] === name) values.push(list[i + 1] as string);
    return values;
  }

  it('decodes the blocks nghttp2 encodes (Huffman, indexed), and nghttp2 decodes the blocks HpackEncoder encodes', async () => {
    // Every byte a header value may hold, each followed by 'a's so that nghttp2 finds Huffman coding shorter
    // (a code of up to 30 bits, then 5 bits per 'a' instead of 8).
    const allBytes = [
      9,
      ...Array.from({ length: 95 }, (_, i) => 0x20 + i),
      ...Array.from({ length: 128 }, (_, i) => 0x80 + i),
    ];
    const coverage = allBytes.map((c) => `${String.fromCharCode(c)}aaaaaaaaaa`).join('');
    const requests: http2.OutgoingHttpHeaders[] = [
      {
        ':path': '/api/v1/items?page=1',
        'user-agent': 'meshfed-interop/1.0',
        accept: 'application/json',
        'x-request-id': 'req-0001',
        'x-tenant': 'acme',
        'x-coverage': coverage,
        'x-empty': '',
      },
      {
        ':method': 'POST',
        ':path': '/api/v1/items/2',
        'user-agent': 'meshfed-interop/1.0',
        accept: 'application/json',
        'x-request-id': 'req-0002',
        'x-tenant': 'acme',
        'x-latin1': 'caf\xe9 cr\xe8me br\xfbl\xe9e \xff\x80',
        'content-type': 'application/json',
        cookie: 'session=0123456789abcdef0123456789',
        authorization: 'Bearer secret',
      },
      {
        ':method': 'DELETE',
        ':path': '/api/v1/items/3',
        'user-agent': 'meshfed-interop/1.0',
        accept: 'application/json',
        'x-request-id': 'req-0003',
        'x-tenant': 'globex',
        'x-secret': 'never-index-me',
        [http2.sensitiveHeaders]: ['x-secret'],
      },
    ];
    const responses = [
      [
        ':status',
        '200',
        'content-type',
        'application/json',
        'x-served-by',
        'lean-h2',
        'x-empty',
        '',
        'x-seq',
        '0',
      ],
      [
        ':status',
        '201',
        'content-type',
        'application/json',
        'x-served-by',
        'lean-h2',
        'x-latin1',
        'na\xefve',
        'x-seq',
        '1',
      ],
      [
        ':status',
        '404',
        'content-type',
        'application/json',
        'x-served-by',
        'lean-h2',
        'set-cookie',
        'a=b',
        'x-seq',
        '2',
      ],
    ];

    const decoder = new HpackDecoder();
    const encoder = new HpackEncoder();
    const blocks: Buffer[] = [];
    const decoded: string[][] = [];
    const failures: unknown[] = [];
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.write(frame(SETTINGS, 0, 0, Buffer.alloc(0)));
      let buf = Buffer.alloc(0);
      let preface = false;
      let fragments: Buffer[] = [];
      let blockStream = 0;
      const onBlock = () => {
        try {
          const block = Buffer.concat(fragments);
          blocks.push(block);
          const list = decodeAll(decoder, block);
          decoded.push(list);
          const n = decoded.length - 1;
          // The middle response goes with an empty table, the last one with it back at 4096.
          if (n === 1) encoder.setMaxTableSize(0);
          if (n === 2) encoder.setMaxTableSize(4096);
          socket.write(
            frame(HEADERS, END_HEADERS | END_STREAM, blockStream, encoder.encode(responses[n] ?? [])),
          );
        } catch (e) {
          failures.push(e);
          socket.destroy();
        }
      };
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (!preface) {
          if (buf.length < PREFACE.length) return;
          if (buf.toString('latin1', 0, PREFACE.length) !== PREFACE) failures.push(new Error('no preface'));
          buf = buf.subarray(PREFACE.length);
          preface = true;
        }
        while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
          const length = buf.readUIntBE(0, 3);
          const type = buf[3] as number;
          const flags = buf[4] as number;
          const streamId = buf.readUInt32BE(5) & 0x7fffffff;
          const payload = buf.subarray(9, 9 + length);
          buf = buf.subarray(9 + length);
          if (type === SETTINGS && (flags & ACK) === 0) {
            socket.write(frame(SETTINGS, ACK, 0, Buffer.alloc(0)));
          } else if (type === HEADERS) {
            let start = 0;
            let end = payload.length;
            if (flags & PADDED) {
              start = 1;
              end -= payload[0] as number;
            }
            if (flags & PRIORITY) start += 5;
            fragments = [payload.subarray(start, end)];
            blockStream = streamId;
            if (flags & END_HEADERS) onBlock();
          } else if (type === CONTINUATION) {
            fragments.push(payload);
            if (flags & END_HEADERS) onBlock();
          }
        }
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', (e) => failures.push(e));
    const received: http2.IncomingHttpHeaders[] = [];
    try {
      for (const headers of requests) {
        const stream = client.request(headers, { endStream: true });
        const [response] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
        received.push(response);
        stream.resume();
        await once(stream, 'close');
      }
    } finally {
      client.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
    expect(failures).toEqual([]);
    expect(decoded).toHaveLength(3);

    // nghttp2 Huffman-coded the coverage value: the block is shorter than the value alone.
    expect((blocks[0] as Buffer).length).toBeLessThan(coverage.length);
    // And indexed what repeats: the third block is shorter than the second.
    expect((blocks[2] as Buffer).length).toBeLessThan((blocks[1] as Buffer).length);
    requests.forEach((sent, i) => {
      const list = decoded[i] as string[];
      expect(valuesOf(list, ':method')).toEqual([sent[':method'] ?? 'GET']);
      expect(valuesOf(list, ':path')).toEqual([sent[':path']]);
      expect(valuesOf(list, ':scheme')).toEqual(['http']);
      expect(valuesOf(list, ':authority')).toEqual([`127.0.0.1:${port}`]);
      for (const [name, value] of Object.entries(sent)) {
        if (!name.startsWith(':'))
          expect({ name, values: valuesOf(list, name) }).toEqual({ name, values: [value] });
      }
    });
    responses.forEach((sent, i) => {
      const response = received[i] as http2.IncomingHttpHeaders;
      for (let f = 0; f < sent.length; f += 2) {
        const name = sent[f] as string;
        const value =
          name === ':status' ? Number(sent[f + 1]) : name === 'set-cookie' ? [sent[f + 1]] : sent[f + 1];
        expect({ name, value: response[name] }).toEqual({ name, value });
      }
    });
  });
});
