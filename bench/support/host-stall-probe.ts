/**
 * Child process of host-stalls.ts: spins on the clock for `argv[2]` ms and
 * prints one JSON line of the gaps it saw, the times this process did not
 * run. The loop allocates nothing, so no garbage collection is in the gaps:
 * they are preemption by the kernel, interrupts, or (in a VM) the host
 * taking the vCPU away.
 */

import { performance } from 'node:perf_hooks';

const durationMs = Number(process.argv[2] ?? 2000);
const gaps = new Float64Array(1 << 20);
let count = 0;
const end = performance.now() + durationMs;
let last = performance.now();
for (;;) {
  const now = performance.now();
  const gap = now - last;
  last = now;
  if (gap > 0.05 && count < gaps.length) gaps[count++] = gap;
  if (now > end) break;
}
process.stdout.write(JSON.stringify({ durationMs, gapsMs: Array.from(gaps.subarray(0, count)) }) + '\n');
