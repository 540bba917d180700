/**
 * A monotonic clock in milliseconds for durations and deadlines, read
 * without the global `performance`: on Node 20 its first touch loads
 * node:perf_hooks and the modules behind it (the event-loop delay
 * histogram, timerify, user and resource timing), 0.55 MiB of resident
 * memory in a process that only wanted now() (docs/performance.md,
 * session 13). process.hrtime() reads the same monotonic clock; its values
 * are comparable with each other only, never with performance.now().
 */
export function monotonicMs(): number {
  const [seconds, nanoseconds] = process.hrtime();
  return seconds * 1e3 + nanoseconds / 1e6;
}
