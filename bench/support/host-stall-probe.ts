/**
 * Child process of host-stalls.ts: spins on the clock until `argv[3]` (ms
 * since the epoch; the probes of one measurement start together, and the
 * spin before it warms the loop up), then for `argv[2]` ms. It prints
 * `measuring` when it starts to, then one JSON line of the gaps it saw: the
 * times this process did not run. Once
 * warm the loop allocates nothing, so the gaps are not garbage collection:
 * they are preemption, interrupts, or (in a VM) the host taking the vCPU.
 */

import { performance } from 'node:perf_hooks';

const durationMs = Number(process.argv[2] ?? 2000);
const startAt = Number(process.argv[3] ?? Date.now());
while (Date.now() < startAt) {
  // warm-up, and wait for the other probes
}
const gaps = new Float64Array(1 << 20);
let count = 0;
// The window opens before `measuring` is written, so that a pause the reader causes once it reads that line
// (a test stops the probe) falls inside the window, even if it lands before the loop below starts.
const start = performance.now();
const end = start + durationMs;
let last = start;
process.stdout.write('measuring\n');
for (;;) {
  const now = performance.now();
  const gap = now - last;
  last = now;
  if (gap > 0.05 && count < gaps.length) gaps[count++] = gap;
  if (now > end) break;
}
// The window in wall-clock ms, so a caller that pauses the probe can tell whether the pause fell inside it.
const window = { fromMs: performance.timeOrigin + start, toMs: performance.timeOrigin + last };
process.stdout.write(
  JSON.stringify({ durationMs, gapsMs: Array.from(gaps.subarray(0, count)), window }) + '\n',
);
