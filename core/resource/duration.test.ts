import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { ErrorCodes, isMeshError } from '../errors.js';
import { formatDuration, parseDuration } from './duration.js';

describe('parseDuration', () => {
  it.each([
    ['1s', 1000],
    ['0.5s', 500],
    ['100ms', 100],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['1m0.5s', 60_500],
    ['10us', 0.01],
    ['10µs', 0.01],
    ['1500ns', 0.0015],
    ['.5s', 500],
    ['+3s', 3000],
    ['0', 0],
    ['0s', 0],
    ['1.000000001s', 1000.000001],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBeCloseTo(ms, 9);
  });

  it.each(['', 's', '1', '-1s', '1d', '1 s', '1s ', 'one second', '1..5s', '1hh', '.s', '+', '5 seconds'])(
    'refuses %j',
    (text) => {
      let caught: unknown;
      try {
        parseDuration(text);
      } catch (err) {
        caught = err;
      }
      expect(isMeshError(caught, ErrorCodes.VALIDATION)).toBe(true);
    },
  );
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [500, '500ms'],
    [1500, '1.5s'],
    [120_000, '2m'],
    [5_400_000, '1h30m'],
    [60_500, '1m0.5s'],
    [0.01, '10us'],
  ])('%d ms is %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('round-trips whole microseconds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10 ** 13 }), (us) => {
        const ms = us / 1000;
        expect(parseDuration(formatDuration(ms))).toBeCloseTo(ms, 6);
      }),
    );
  });
});
