/**
 * prom-client's metric classes, loaded without its index module. The index
 * also loads the Pushgateway, the cluster aggregator and the default-metrics
 * bundle, whose process-CPU metric pulls in @opentelemetry/api for exemplars:
 * about 7.5 MiB of resident memory in every process, measured on Node 20
 * (tls+http alone 45 MiB, with `prom-client` 52.6, with these modules 45.5).
 * A sidecar runs next to every workload, so that is paid once per pod.
 *
 * Everything else imports prom-client's values from here (eslint refuses a
 * value import of 'prom-client' elsewhere), the default process metrics one
 * module at a time (core/process-metrics.ts); its types come from the package.
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

/** One of prom-client's default process metrics, registering itself: `prom-client/lib/metrics/<name>`. */
export type DefaultMetric = (registry: Prom.Registry, config: Record<string, unknown>) => void;

export function defaultMetric(name: string): DefaultMetric {
  return load(`prom-client/lib/metrics/${name}`) as DefaultMetric;
}
