import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { isMeshError } from '../errors.js';
import {
  bitString,
  encodeLength,
  explicit,
  generalizedTime,
  implicit,
  integerFromBigInt,
  integerFromBytes,
  oid,
  printableString,
  sequence,
  set,
  utcTime,
  x509Time,
} from './der.js';
import { childrenOf, decodeOid, decodeTime, readNode, readRoot } from './der-read.js';

const hex = (b: Buffer): string => b.toString('hex');

/** Two's complement decode of INTEGER content, independent of the encoder. */
function decodeInteger(der: Buffer): bigint {
  const node = readRoot(der, 0x02, 'INTEGER');
  const content = der.subarray(node.contentStart, node.end);
  let value = BigInt('0x' + (content.toString('hex') || '0'));
  if ((content[0] ?? 0) & 0x80) value -= 1n << BigInt(8 * content.length);
  return value;
}

describe('INTEGER', () => {
  it('pads a magnitude whose high bit is set so it stays positive', () => {
    expect(hex(integerFromBytes(Buffer.from([0x80])))).toBe('02020080');
    expect(hex(integerFromBytes(Buffer.from([0xff, 0x01])))).toBe('020300ff01');
    expect(hex(integerFromBigInt(128n))).toBe('02020080');
    expect(hex(integerFromBigInt(255n))).toBe('020200ff');
  });

  it('does not pad when the high bit is clear and strips redundant leading zeros', () => {
    expect(hex(integerFromBytes(Buffer.from([0x7f])))).toBe('02017f');
    expect(hex(integerFromBytes(Buffer.from([0x00, 0x00, 0x7f])))).toBe('02017f');
    expect(hex(integerFromBytes(Buffer.from([0x00, 0x80])))).toBe('02020080');
    expect(hex(integerFromBytes(Buffer.alloc(0)))).toBe('020100');
    expect(hex(integerFromBigInt(0n))).toBe('020100');
  });

  it('encodes negatives in minimal two complement', () => {
    expect(hex(integerFromBigInt(-1n))).toBe('0201ff');
    expect(hex(integerFromBigInt(-128n))).toBe('020180');
    expect(hex(integerFromBigInt(-129n))).toBe('0202ff7f');
    expect(hex(integerFromBigInt(-256n))).toBe('0202ff00');
  });

  it('round-trips any bigint with a minimal encoding', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(1n << 200n), max: 1n << 200n }), (n) => {
        const der = integerFromBigInt(n);
        expect(decodeInteger(der)).toBe(n);
        const content = der.subarray(2);
        if (content.length > 1) {
          // Minimal: the first nine bits are never all equal.
          const top9 = ((content[0] ?? 0) << 1) | ((content[1] ?? 0) >> 7);
          expect(top9 === 0 || top9 === 0x1ff).toBe(false);
        }
      }),
    );
  });
});

describe('lengths', () => {
  it('uses the short form below 128 and the minimal long form above', () => {
    expect(hex(encodeLength(0))).toBe('00');
    expect(hex(encodeLength(127))).toBe('7f');
    expect(hex(encodeLength(128))).toBe('8180');
    expect(hex(encodeLength(255))).toBe('81ff');
    expect(hex(encodeLength(256))).toBe('820100');
    expect(hex(encodeLength(65536))).toBe('83010000');
  });

  it('writes headers a reader can walk back for content sizes across the boundaries', () => {
    for (const size of [0, 1, 127, 128, 255, 256, 65535, 65536]) {
      const der = sequence(Buffer.alloc(size, 1));
      const node = readRoot(der, 0x30, 'SEQUENCE');
      expect(node.end - node.contentStart).toBe(size);
    }
  });
});

describe('OID', () => {
  it('matches known encodings', () => {
    expect(hex(oid('1.2.840.10045.4.3.2'))).toBe('06082a8648ce3d040302');
    expect(hex(oid('2.5.29.17'))).toBe('0603551d11');
    expect(hex(oid('1.3.6.1.5.5.7.3.1'))).toBe('06082b06010505070301');
    // First-arc 2 with a second arc >= 40, and an arc beyond 2^53.
    expect(decodeOid(oid('2.999.3').subarray(2))).toBe('2.999.3');
    const big = '2.25.329800735698586629295641978511506172918';
    expect(decodeOid(oid(big).subarray(2))).toBe(big);
  });

  it('returns the cached encoding on reuse', () => {
    expect(oid('2.5.4.3')).toBe(oid('2.5.4.3'));
  });

  it('rejects malformed dotted forms', () => {
    for (const bad of ['', '1', '1.', '1..2', '3.1', '1.40', '01.2', 'a.b']) {
      expect(() => oid(bad)).toThrow(/bad OID/);
    }
  });
});

describe('times', () => {
  it('writes UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280)', () => {
    const last = x509Time(new Date('2049-12-31T23:59:59.999Z'));
    expect(last[0]).toBe(0x17);
    expect(last.subarray(2).toString()).toBe('491231235959Z');
    const first = x509Time(new Date('2050-01-01T00:00:00Z'));
    expect(first[0]).toBe(0x18);
    expect(first.subarray(2).toString()).toBe('20500101000000Z');
    expect(x509Time(new Date('1950-01-01T00:00:00Z')).subarray(2).toString()).toBe('500101000000Z');
    expect(x509Time(new Date('1949-12-31T23:59:59Z'))[0]).toBe(0x18);
  });

  it('refuses UTCTime outside 1950-2049 and invalid dates', () => {
    expect(() => utcTime(new Date('2050-01-01T00:00:00Z'))).toThrow(/UTCTime cannot hold year 2050/);
    expect(() => utcTime(new Date('1949-06-01T00:00:00Z'))).toThrow(/1949/);
    expect(() => x509Time(new Date('nope'))).toThrow(/invalid date/);
  });

  it('round-trips through the reader, seconds precision', () => {
    fc.assert(
      fc.property(
        fc.date({ min: new Date('1950-01-01Z'), max: new Date('9999-12-31Z'), noInvalidDate: true }),
        (d) => {
          const der = x509Time(d);
          const decoded = decodeTime(der, readRoot(der, der[0] ?? 0, 'time'));
          expect(decoded.getTime()).toBe(Math.floor(d.getTime() / 1000) * 1000);
        },
      ),
    );
    const gt = generalizedTime(new Date('2024-02-29T12:00:00Z'));
    expect(decodeTime(gt, readNode(gt, 0)).toISOString()).toBe('2024-02-29T12:00:00.000Z');
  });
});

describe('other types', () => {
  it('encodes BIT STRING unused bits, tags and sorted SETs', () => {
    expect(hex(bitString(Buffer.from([0x06]), 1))).toBe('03020106');
    expect(() => bitString(Buffer.alloc(0), 3)).toThrow(/unused bit/);
    expect(hex(explicit(0, integerFromBigInt(2n)))).toBe('a003020102');
    expect(hex(implicit(6, Buffer.from('ab')))).toBe('86026162');
    expect(hex(implicit(1, Buffer.alloc(0), true))).toBe('a100');
    expect(hex(set(Buffer.from('0401ff', 'hex'), Buffer.from('020101', 'hex')))).toBe(
      '3106020101' + '0401ff',
    );
  });

  it('rejects characters outside the PrintableString alphabet', () => {
    expect(hex(printableString('A b'))).toBe('1303412062');
    expect(() => printableString('a@b')).toThrow(/PrintableString/);
  });
});

describe('der-read', () => {
  it('walks children of a constructed node', () => {
    const der = sequence(oid('2.5.4.3'), integerFromBigInt(5n));
    const kids = childrenOf(der, readRoot(der, 0x30, 'seq'));
    expect(kids.map((k) => k.tag)).toEqual([0x06, 0x02]);
  });

  it('rejects truncated, indefinite, non-minimal and trailing encodings with MeshError(PKI)', () => {
    const cases = ['3005020101', '3080020101', '30810102', '300302010100', '1f0100', '30'];
    for (const c of cases) {
      let caught: unknown;
      try {
        readRoot(Buffer.from(c, 'hex'), 0x30, 'seq');
      } catch (err) {
        caught = err;
      }
      expect(isMeshError(caught, 'MESHFED_ERR_PKI')).toBe(true);
    }
  });

  it('never throws anything but MeshError on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const buf = Buffer.from(bytes);
        try {
          const node = readNode(buf, 0);
          if (node.tag & 0x20) childrenOf(buf, node);
        } catch (err) {
          expect(isMeshError(err, 'MESHFED_ERR_PKI')).toBe(true);
        }
      }),
    );
  });
});
