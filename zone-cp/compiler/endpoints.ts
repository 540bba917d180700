/**
 * Endpoints of one cluster (a service, or one DestinationRule subset of
 * it): this zone's workloads, reached at their sidecar's inbound port (or
 * in plaintext at the target port when they run without a sidecar), and
 * one weighted endpoint per other zone that runs the service: that zone's
 * east-west gateway, weighted by its healthy endpoints matching the
 * subset's labels.
 */

import type { EndpointConfig } from '../../core/mesh/snapshot.js';
import { formatSpiffeId } from '../../core/pki/spiffe.js';
import type { WorkloadEndpoint } from '../discovery/discovery.js';
import { selectorMatches } from './labels.js';
import type { ServiceView } from './mesh-view.js';

/** Topology label carrying the zone, as Istio's failoverPriority expects. */
export const CLUSTER_LABEL = 'topology.istio.io/cluster';

export function clusterEndpoints(
  svc: ServiceView,
  subsetLabels: Readonly<Record<string, string>> | undefined,
  zone: string,
  trustDomain: string,
  options: { remote: boolean } = { remote: true },
): EndpointConfig[] {
  const endpoints: EndpointConfig[] = [];
  for (const endpoint of svc.local) {
    if (!selectorMatches(subsetLabels, endpoint.labels)) continue;
    const labels = { ...endpoint.labels, [CLUSTER_LABEL]: zone };
    const base = {
      zone,
      ...(endpoint.locality === undefined ? {} : { locality: endpoint.locality }),
      weight: endpoint.weight > 0 ? endpoint.weight : 1,
      healthy: endpoint.healthy,
      labels,
      workload: endpoint.name,
    };
    if (endpoint.sidecar) {
      endpoints.push({
        address: endpoint.address,
        port: endpoint.inboundPort,
        via: 'sidecar',
        ...base,
        identities: [identityOf(endpoint, trustDomain)],
      });
      continue;
    }
    // Without a sidecar each service port has its own target port on the workload.
    for (const spec of svc.portSpecs) {
      const port = targetPortOf(spec.targetPort, endpoint);
      if (port === undefined) continue;
      endpoints.push({
        address: endpoint.address,
        port,
        via: 'plaintext',
        servicePort: spec.port,
        ...base,
        identities: [],
      });
    }
  }
  // A pinned service (data residency) stops here: no other zone's gateway.
  if (!options.remote) return endpoints;
  for (const { zone: remote, service } of svc.remote) {
    if (remote.gateway === undefined) continue;
    let healthy = 0;
    let total = 0;
    const identities = new Set<string>();
    const localities = new Set<string>();
    for (const group of service.endpointGroups) {
      if (!selectorMatches(subsetLabels, group.labels)) continue;
      healthy += group.healthy;
      total += group.total;
      for (const id of group.identities) identities.add(id);
      if (group.locality !== undefined) localities.add(group.locality);
    }
    if (total === 0) continue;
    const [locality] = localities;
    endpoints.push({
      address: remote.gateway.address,
      port: remote.gateway.port,
      via: 'gateway',
      zone: remote.zone,
      ...(localities.size === 1 && locality !== undefined ? { locality } : {}),
      weight: healthy,
      // A zone whose CP lost global is still in the catalog only for the grace
      // period; its gateway and proxies keep serving without their CP, so its
      // last reported health stands (the proxy's own connect failures and
      // outlier detection cover a zone that really went away).
      healthy: healthy > 0,
      labels: { [CLUSTER_LABEL]: remote.zone },
      identities: [...identities].sort(),
    });
  }
  return endpoints;
}

/** The SPIFFE ID a workload's certificate carries. */
export function identityOf(
  endpoint: Pick<WorkloadEndpoint, 'namespace' | 'serviceAccount'>,
  trustDomain: string,
): string {
  try {
    return formatSpiffeId({
      trustDomain,
      namespace: endpoint.namespace,
      serviceAccount: endpoint.serviceAccount || 'default',
    });
  } catch {
    return `spiffe://${trustDomain}/ns/${endpoint.namespace}/sa/${endpoint.serviceAccount}`;
  }
}

/** A service port's target on one workload: a number, or the name of one of the workload's ports. */
export function targetPortOf(
  target: number | string,
  endpoint: Pick<WorkloadEndpoint, 'ports'>,
): number | undefined {
  if (typeof target === 'number') return target;
  if (/^\d+$/.test(target)) return Number(target);
  return endpoint.ports[target];
}
