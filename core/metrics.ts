/**
 * Prometheus helpers shared by every component. Each component instance owns
 * its Registry (never prom-client's global one) so that several components in
 * one process — the demo, the tests — do not collide.
 */

import type { ApiObserver } from './api/api-server.js';
import { registerProcessMetrics, type ProcessMetricsSet } from './process-metrics.js';
import { Counter, Gauge, Histogram, Registry } from './prom-modules.js';

/** A registry labelled with its component, with that set of process metrics (core/process-metrics.ts). */
export function createRegistry(component: string, processMetrics: ProcessMetricsSet = 'full'): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  registerProcessMetrics(registry, processMetrics);
  return registry;
}

/** Request counters and latency for a REST API, labelled by route pattern (bounded cardinality). */
export function createApiMetrics(registry: Registry, prefix: string): ApiObserver {
  const requests = new Counter({
    name: `${prefix}_http_requests_total`,
    help: 'REST requests by route pattern, method and status code.',
    labelNames: ['route', 'method', 'code'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: `${prefix}_http_request_duration_seconds`,
    help: 'REST request latency by route pattern and method.',
    labelNames: ['route', 'method'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  return {
    onResponse(route, method, status, seconds) {
      requests.inc({ route, method, code: String(status) });
      duration.observe({ route, method }, seconds);
    },
  };
}

export { Counter, Gauge, Histogram, Registry };
