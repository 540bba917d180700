/**
 * prom-client's metric classes, loaded without its index module. The index
 * also loads the Pushgateway, the cluster aggregator and the default-metrics
 * bundle, whose process-CPU metric pulls in @opentelemetry/api for exemplars:
 * about 7.5 MiB of resident memory in every process, measured on Node 20
 * (tls+http alone 45 MiB, with `prom-client` 52.6, with these modules 45.5).
 * A sidecar runs next to every workload, so that is paid once per pod.
 *
 * Everything else imports prom-client's values from here (eslint refuses a
 * value import of 'prom-client' elsewhere); its types come from the package.
 */

import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';

const load = createRequire(import.meta.url);

export const Registry = load('prom-client/lib/registry') as typeof Prom.Registry;
export const Counter = load('prom-client/lib/counter') as typeof Prom.Counter;
export const Gauge = load('prom-client/lib/gauge') as typeof Prom.Gauge;
export const Histogram = load('prom-client/lib/histogram') as typeof Prom.Histogram;
export type Registry = Prom.Registry;
export type Counter<T extends string = string> = Prom.Counter<T>;
export type Gauge<T extends string = string> = Prom.Gauge<T>;
export type Histogram<T extends string = string> = Prom.Histogram<T>;

type DefaultMetric = (registry: Prom.Registry, config: Record<string, unknown>) => void;

/**
 * prom-client's default process metrics, one module each, as
 * `collectDefaultMetrics` registers them; its process CPU metric (the one
 * that needs @opentelemetry/api) is replaced by processCpu below, with the
 * same names and values.
 */
const DEFAULT_METRIC_MODULES = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  // prom-client skips it before Node 17 (no process.getActiveResourcesInfo); engines says ≥ 20.
  'processResources',
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
];

/** process_cpu_{user,system,}_seconds_total, as prom-client's default metrics name them. */
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

export function collectProcessMetrics(registry: Prom.Registry): void {
  processCpu(registry);
  const config = { eventLoopMonitoringPrecision: 10 };
  for (const name of DEFAULT_METRIC_MODULES) {
    (load(`prom-client/lib/metrics/${name}`) as DefaultMetric)(registry, config);
  }
}
