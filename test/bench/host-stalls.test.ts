/** The host-stall figures quoted beside every gateway bench p99: from real probes, and their arithmetic. */

import { describe, expect, it } from '@jest/globals';
import { summarizeStalls } from '../../bench/support/host-stalls.js';
import { assertCliBuilt } from '../common/cli.js';

describe('host stalls', () => {
  it('summarizes gaps per CPU-second over every probe', () => {
    const summary = summarizeStalls([
      { durationMs: 2000, gapsMs: [0.06, 0.3, 1.5] },
      { durationMs: 2000, gapsMs: [0.07, 0.08, 0.25, 12] },
    ]);
    expect(summary).toEqual({
      probes: 2,
      seconds: 2,
      over50usPerSecond: 1.8,
      over200usPerSecond: 1,
      over1msPerSecond: 0.5,
      longestMs: 12,
      stolenPercent: 0.36,
    });
  });

  it('measures this machine with one spinning probe per CPU', async () => {
    // The probe runs as a child process from the build, as in `npm run bench:gateway`.
    assertCliBuilt();
    const built = '../../dist/bench/support/host-stalls.js';
    const { measureHostStalls } = (await import(
      built
    )) as typeof import('../../bench/support/host-stalls.js');
    const stalls = await measureHostStalls(200);
    expect(stalls.probes).toBeGreaterThanOrEqual(1);
    expect(stalls.seconds).toBe(0.2);
    // Ordered by construction; a probe that never ran would report nothing at all.
    expect(stalls.over50usPerSecond).toBeGreaterThanOrEqual(stalls.over200usPerSecond);
    expect(stalls.over200usPerSecond).toBeGreaterThanOrEqual(stalls.over1msPerSecond);
    expect(stalls.stolenPercent).toBeLessThan(100);
  });
});
