/**
 * The east-west gateway's table (GatewaySnapshot): every service with
 * sidecar endpoints in this zone, the `_` cluster and one per
 * DestinationRule subset that has endpoints here. Only sidecar endpoints:
 * the gateway forwards mTLS it cannot terminate, so the far end must be a
 * meshfed proxy. A service the Mesh pins to its zone (data residency) is
 * not exported: it is listed by name only, so that the gateway refuses
 * callers from other zones and says why, whatever their own config claims.
 * (A DestinationRule's pin applies to some callers only, so it stays with
 * them: the gateway cannot tell who is calling.)
 */

import {
  GATEWAY_SNAPSHOT_TYPE,
  type GatewayEndpoint,
  type GatewayService,
  type GatewaySnapshot,
} from '../../core/mesh/snapshot.js';
import { ANY_SUBSET } from '../../core/mesh/sni.js';
import { selectorMatches } from './labels.js';
import type { MeshView } from './mesh-view.js';
import { compiled, type CompiledSnapshot } from './snapshot-version.js';

export function compileGateway(view: MeshView): CompiledSnapshot {
  const services: GatewayService[] = [];
  const notExported: string[] = [];
  const hosts = [...view.services.keys()].sort();
  for (const host of hosts) {
    const svc = view.services.get(host);
    if (svc === undefined) continue;
    const sidecars = svc.local.filter((e) => e.sidecar);
    if (sidecars.length === 0) continue;
    if (view.isPinnedByMesh(svc)) {
      notExported.push(`${svc.name}.${svc.namespace}`);
      continue;
    }
    const toGateway = (labels: Record<string, string> | undefined): GatewayEndpoint[] =>
      sidecars
        .filter((e) => selectorMatches(labels, e.labels))
        .map((e) => ({ address: e.address, port: e.inboundPort, healthy: e.healthy, workload: e.name }));
    const clusters = [{ subset: ANY_SUBSET, endpoints: toGateway(undefined) }];
    // The service's own namespace decides subsets for callers from other zones.
    const dr = view.destinationRuleFor(svc, svc.namespace, {});
    for (const subset of dr?.resource.spec.subsets ?? []) {
      const endpoints = toGateway(subset.labels ?? {});
      if (endpoints.length > 0) clusters.push({ subset: subset.name, endpoints });
    }
    services.push({
      name: svc.name,
      namespace: svc.namespace,
      ports: svc.portSpecs.map((p) => p.port),
      clusters,
    });
  }
  const snapshot: GatewaySnapshot = {
    type: GATEWAY_SNAPSHOT_TYPE,
    zone: view.zone,
    services,
    ...(notExported.length === 0 ? {} : { notExported }),
  };
  return compiled(GATEWAY_SNAPSHOT_TYPE, JSON.stringify(snapshot));
}
