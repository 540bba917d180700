import { describe, expect, it, jest } from '@jest/globals';
import { currentHttpDate, formatHttpDate, formatIsoTime } from './utc-format.js';

/** Times that stress the calendar: era and century edges, leap days, the epoch, Date's limits. */
const EDGES = [
  0,
  -1,
  1,
  951_782_400_000, // 2000-02-29
  951_868_799_999, // 2000-02-29T23:59:59.999
  -2_203_891_200_000, // 1900-03-01: 1900 is not a leap year
  4_107_542_400_000, // 2100-03-01
  -62_167_219_200_000, // 0000-01-01
  -62_167_219_200_001, // one ms before: year -1
  253_402_300_799_999, // 9999-12-31T23:59:59.999
  253_402_300_800_000, // 10000-01-01
  8.64e15,
  -8.64e15,
  1.7,
  -1.7,
  1_795_300_015_123.9,
];

const YEAR_0 = -62_167_219_200_000;
const YEAR_10000 = 253_402_300_800_000;

/**
 * A deterministic spread (a linear congruential generator: a failure reproduces) over the
 * four-digit years this module formats itself, and, every other value, over 1843–2096.
 */
function spread(count: number): number[] {
  const out: number[] = [];
  let x = 12_345;
  for (let i = 0; i < count; i++) {
    // 32-bit arithmetic (Math.imul): a float product this large would lose bits and repeat early.
    x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0;
    const unit = x / 4_294_967_296;
    out.push(Math.floor(i % 2 === 0 ? YEAR_0 + unit * (YEAR_10000 - YEAR_0) : (unit * 2 - 1) * 4e12));
  }
  return out;
}

describe('UTC timestamps without Date string methods', () => {
  it.each(EDGES)('formats %p as Date#toISOString and Date#toUTCString do', (ms) => {
    expect(formatIsoTime(ms)).toBe(new Date(ms).toISOString());
    expect(formatHttpDate(ms)).toBe(new Date(ms).toUTCString());
  });

  it('agrees with Date over 20,000 times from year 0 to 9999', () => {
    const mismatches = spread(20_000).filter(
      (ms) =>
        formatIsoTime(ms) !== new Date(ms).toISOString() || formatHttpDate(ms) !== new Date(ms).toUTCString(),
    );
    expect(mismatches).toEqual([]);
  });

  it('refuses what Date refuses, with the same error', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, 8.64e15 + 1]) {
      expect(() => formatIsoTime(bad)).toThrow(RangeError);
      expect(formatHttpDate(bad)).toBe('Invalid Date');
    }
  });

  it('formats the Date header anew when the second changes, and not within one', () => {
    const spy = jest.spyOn(Date, 'now');
    try {
      spy.mockReturnValue(1_795_300_015_100);
      expect(currentHttpDate()).toBe('Sat, 21 Nov 2026 22:26:55 GMT');
      spy.mockReturnValue(1_795_300_015_999);
      expect(currentHttpDate()).toBe('Sat, 21 Nov 2026 22:26:55 GMT');
      spy.mockReturnValue(1_795_300_016_000);
      expect(currentHttpDate()).toBe('Sat, 21 Nov 2026 22:26:56 GMT');
    } finally {
      spy.mockRestore();
    }
  });

  it("gives the current second's Date header", () => {
    const before = Math.floor(Date.now() / 1000) * 1000;
    const parsed = Date.parse(currentHttpDate());
    expect(parsed).toBeGreaterThanOrEqual(before);
    expect(parsed).toBeLessThanOrEqual(Date.now());
  });
});
