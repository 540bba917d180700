import { describe, expect, it } from '@jest/globals';
import { monotonicMs } from './clock.js';

describe('monotonic clock', () => {
  it('counts milliseconds of the same clock as process.hrtime.bigint', async () => {
    const a = monotonicMs();
    const hrA = process.hrtime.bigint();
    await new Promise((resolve) => setTimeout(resolve, 30));
    const b = monotonicMs();
    const hrB = process.hrtime.bigint();
    // Same clock, same unit: the two elapsed times differ by the few microseconds between the reads.
    expect(Math.abs(b - a - Number(hrB - hrA) / 1e6)).toBeLessThan(1);
    expect(b - a).toBeGreaterThan(0);
  });
});
