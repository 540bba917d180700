/**
 * What this zone reports to global over KDS (ZoneInventory): its services,
 * their ports, and their sidecar endpoints grouped by identical label sets
 * with healthy/total counts, identities and locality, so other zones can
 * weight this zone's gateway per subset without knowing its rules.
 */

import type { EndpointGroup, ServiceInventory, ZoneInventory } from '../../core/mesh/inventory.js';
import { identityOf } from './endpoints.js';
import { labelsKey } from './labels.js';
import type { MeshView } from './mesh-view.js';

export function buildInventory(
  view: MeshView,
  gateway: { address: string; port: number } | undefined,
): ZoneInventory {
  const services: ServiceInventory[] = [];
  for (const host of [...view.services.keys()].sort()) {
    const svc = view.services.get(host);
    if (svc === undefined || svc.portSpecs.length === 0) continue;
    const groups = new Map<string, EndpointGroup & { ids: Set<string> }>();
    for (const endpoint of svc.local) {
      // Only sidecars are reachable through the gateway.
      if (!endpoint.sidecar) continue;
      const key = `${labelsKey(endpoint.labels)}|${endpoint.locality ?? ''}`;
      let group = groups.get(key);
      if (group === undefined) {
        group = {
          labels: { ...endpoint.labels },
          healthy: 0,
          total: 0,
          identities: [],
          ids: new Set(),
          ...(endpoint.locality === undefined ? {} : { locality: endpoint.locality }),
        };
        groups.set(key, group);
      }
      group.total++;
      if (endpoint.healthy) group.healthy++;
      group.ids.add(identityOf(endpoint, view.trust.trustDomain));
    }
    services.push({
      name: svc.name,
      namespace: svc.namespace,
      ports: svc.portSpecs.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })),
      endpointGroups: [...groups.values()].map(({ ids, ...group }) => ({
        ...group,
        identities: [...ids].sort(),
      })),
    });
  }
  return { zone: view.zone, ...(gateway === undefined ? {} : { gateway }), services };
}
