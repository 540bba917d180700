/**
 * The control-plane benchmark's mesh, generated the same way in every
 * process: `services` services spread over ten namespaces, two workloads
 * each (versions v1 and v2), every workload declaring `deps` dependencies
 * on neighbouring services, so each service is called by a fixed, known
 * set of proxies.
 */

import type { LocalService, WorkloadEndpoint } from '../../zone-cp/discovery/discovery.js';

export const NAMESPACES = 10;
export const WORKLOADS_PER_SERVICE = 2;
/** Offsets of the services a workload of service i calls: i+1, i+7, i+13, … */
const OFFSETS = [1, 7, 13, 29, 31];

export interface BenchProxy {
  workload: string;
  namespace: string;
  service: number;
}

export function serviceName(i: number): string {
  return `svc-${i}`;
}

export function namespaceOf(i: number): string {
  return `ns-${i % NAMESPACES}`;
}

/** Services service i's workloads depend on. */
export function dependenciesOf(i: number, services: number, deps: number): number[] {
  return OFFSETS.slice(0, deps).map((o) => (i + o) % services);
}

/** Proxies (one per workload) whose outbound config includes service `target`. */
export function callersOf(target: number, services: number, deps: number): BenchProxy[] {
  const callers: BenchProxy[] = [];
  for (const offset of OFFSETS.slice(0, deps)) {
    const i = (target - offset + services) % services;
    for (let w = 0; w < WORKLOADS_PER_SERVICE; w++) callers.push(proxyOf(i, w));
  }
  return callers;
}

export function proxyOf(i: number, w: number): BenchProxy {
  return { workload: `${serviceName(i)}-w${w}`, namespace: namespaceOf(i), service: i };
}

export function allProxies(services: number, proxies: number): BenchProxy[] {
  const out: BenchProxy[] = [];
  for (let n = 0; n < proxies; n++)
    out.push(proxyOf(Math.floor(n / WORKLOADS_PER_SERVICE) % services, n % WORKLOADS_PER_SERVICE));
  return out;
}

export function generateServices(services: number, deps: number): LocalService[] {
  const list: LocalService[] = [];
  for (let i = 0; i < services; i++) {
    const namespace = namespaceOf(i);
    const endpoints: WorkloadEndpoint[] = [];
    for (let w = 0; w < WORKLOADS_PER_SERVICE; w++) {
      endpoints.push({
        name: `${serviceName(i)}-w${w}`,
        namespace,
        address: `10.${(i >> 8) & 255}.${i & 255}.${w + 1}`,
        inboundPort: 15006,
        labels: { app: serviceName(i), version: `v${w + 1}` },
        serviceAccount: serviceName(i),
        locality: 'bench/zone-a',
        weight: 1,
        healthy: true,
        sidecar: true,
        ports: { http: 8080 },
        source: 'bench',
        annotations: {
          'meshfed.io/dependencies': dependenciesOf(i, services, deps)
            .map((d) => `${serviceName(d)}.${namespaceOf(d)}`)
            .join(','),
        },
      });
    }
    list.push({
      name: serviceName(i),
      namespace,
      ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'http' }],
      endpoints,
      exportTo: ['*'],
      source: 'bench',
    });
  }
  return list;
}
