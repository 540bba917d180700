/**
 * The process metrics a component's registry carries, under the names
 * prom-client's `collectDefaultMetrics` gives them, in one of three sets:
 *
 * - `full`: all of them, as `collectDefaultMetrics` registers them. Two of
 *   them cost all the time, not only when scraped: the event-loop delay
 *   histogram (`nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds`)
 *   samples every 10 ms, so an idle process wakes ~100 times a second, and
 *   `nodejs_gc_duration_seconds` runs a callback on every collection (at a
 *   sidecar's saturation, over a hundred a second).
 * - `lean`: every other one, computed when scraped, plus
 *   `nodejs_eventloop_lag_seconds` measured at the scrape, but without
 *   `nodejs_heap_space_size_{total,used,available}_bytes`: V8's per-space
 *   figures need node:v8, whose loading costs a process 0.4 MiB of resident
 *   memory (docs/performance.md, session 13); the heap's totals
 *   (`nodejs_heap_size_*`) stay. What a sidecar runs with by default: it
 *   runs next to every workload, so an idle one should sleep and stay small
 *   (Istio trims its sidecars' Envoy statistics by default for the same
 *   reason).
 * - `off`: none (tests, several components in one process).
 */

import type * as Prom from 'prom-client';
import { Counter, Gauge, defaultMetric } from './prom-modules.js';

export type ProcessMetricsSet = 'full' | 'lean' | 'off';

export const PROCESS_METRICS_SETS: readonly ProcessMetricsSet[] = ['lean', 'full', 'off'];

/** prom-client's default metrics that cost nothing between scrapes. */
const SCRAPE_TIME_MODULES = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  // prom-client skips it before Node 17 (no process.getActiveResourcesInfo); engines says ≥ 20.
  'processResources',
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'version',
];

/** The ones only `full` has: the two that run between scrapes, and the one that loads node:v8 (file comment). */
const FULL_ONLY_MODULES = ['eventLoopLag', 'gc', 'heapSpacesSizeAndUsed'];

/**
 * process_cpu_{user,system,}_seconds_total, as prom-client's default metrics
 * name them (its own module pulls in @opentelemetry/api for exemplars).
 */
function processCpu(registry: Prom.Registry): void {
  let last = process.cpuUsage();
  const registers = [registry];
  const system = new Counter({
    name: 'process_cpu_system_seconds_total',
    help: 'Total system CPU time spent in seconds.',
    registers,
  });
  const total = new Counter({
    name: 'process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds.',
    registers,
  });
  new Counter({
    name: 'process_cpu_user_seconds_total',
    help: 'Total user CPU time spent in seconds.',
    registers,
    // One collect moves all three, so a scrape sees them consistent.
    collect() {
      const now = process.cpuUsage();
      const user = (now.user - last.user) / 1e6;
      const sys = (now.system - last.system) / 1e6;
      last = now;
      this.inc(user);
      system.inc(sys);
      total.inc(user + sys);
    },
  });
}

/** nodejs_eventloop_lag_seconds without the histogram: how long the scrape waits for the loop's check phase. */
function eventLoopLagAtScrape(registry: Prom.Registry): void {
  new Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Lag of event loop in seconds.',
    registers: [registry],
    async collect() {
      const start = process.hrtime.bigint();
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.set(Number(process.hrtime.bigint() - start) / 1e9);
    },
  });
}

export function registerProcessMetrics(registry: Prom.Registry, set: ProcessMetricsSet): void {
  if (set === 'off') return;
  processCpu(registry);
  const config = { eventLoopMonitoringPrecision: 10 };
  for (const name of SCRAPE_TIME_MODULES) defaultMetric(name)(registry, config);
  if (set === 'full') {
    for (const name of FULL_ONLY_MODULES) defaultMetric(name)(registry, config);
  } else {
    eventLoopLagAtScrape(registry);
  }
}
