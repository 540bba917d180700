import { describe, expect, it } from '@jest/globals';
import { monotonicMs } from './clock.js';

describe('monotonic clock', () => {
  it('reads process.hrtime in milliseconds, not the wall clock or performance.now', () => {
    const ours = monotonicMs();
    const hr = Number(process.hrtime.bigint()) / 1e6;
    // The same clock from the same origin: the two reads are microseconds apart. Date.now() is
    // decades away from it, and performance.now() counts from the process's start.
    expect(Math.abs(hr - ours)).toBeLessThan(50);
    expect(Math.abs(Date.now() - ours)).toBeGreaterThan(1000);
    expect(monotonicMs()).toBeGreaterThanOrEqual(ours);
  });
});
