/**
 * One sidecar's snapshot (core/mesh/snapshot.ts SidecarSnapshot). The
 * JSON is assembled from per-service JSON cached on the view, in exactly
 * the key order JSON.stringify would write, so two thousand proxies that
 * call the same services serialise each service once.
 */

import { SIDECAR_SNAPSHOT_TYPE, type ProxyIdentity, type TelemetryConfig } from '../../core/mesh/snapshot.js';
import type { WorkloadEndpoint } from '../discovery/discovery.js';
import { identityOf } from './endpoints.js';
import { buildInbound } from './inbound.js';
import type { MeshView } from './mesh-view.js';
import { outboundJson } from './outbound.js';
import { dependenciesOf, scopedServices } from './service-scope.js';
import { contentHash, lazyCompiled, type CompiledSnapshot } from './snapshot-version.js';

export function compileSidecar(
  view: MeshView,
  proxyId: string,
  workload: WorkloadEndpoint,
): CompiledSnapshot {
  const proxy: ProxyIdentity = {
    proxyId,
    workload: workload.name,
    namespace: workload.namespace,
    serviceAccount: workload.serviceAccount || 'default',
    spiffeId: identityOf(workload, view.trust.trustDomain),
    zone: view.zone,
    labels: workload.labels,
    canonicalService: workload.labels.app ?? workload.labels['app.kubernetes.io/name'] ?? workload.name,
  };
  const services = scopedServices(view, workload.namespace, dependenciesOf(workload));
  const outbound: Array<{ json: string; hash: string }> = [];
  for (const svc of services) {
    outbound.push(
      outboundJson(view, {
        svc,
        vs: view.virtualServiceFor(svc, workload.namespace),
        dr: view.destinationRuleFor(svc, workload.namespace, workload.labels),
        sameNamespace: svc.namespace === workload.namespace,
      }),
    );
  }
  const telemetry: TelemetryConfig = { accessLog: view.settings.accessLog };
  const proxyJson = JSON.stringify(proxy);
  const inboundJson = JSON.stringify(buildInbound(view, workload));
  const trust = trustJson(view);
  const telemetryJson = JSON.stringify(telemetry);
  // The hash of the parts' hashes: no need to assemble the snapshot to know whether it changed.
  const version = contentHash(
    `${proxyJson}\n${trust.hash}\n${inboundJson}\n${outbound.map((o) => o.hash).join(',')}\n${telemetryJson}`,
  );
  return lazyCompiled(
    SIDECAR_SNAPSHOT_TYPE,
    version,
    () =>
      `{"type":${JSON.stringify(SIDECAR_SNAPSHOT_TYPE)}` +
      `,"proxy":${proxyJson}` +
      `,"trust":${trust.json}` +
      `,"inbound":${inboundJson}` +
      `,"outbound":{"services":[${outbound.map((o) => o.json).join(',')}]}` +
      `,"telemetry":${telemetryJson}}`,
  );
}

function trustJson(view: MeshView): { json: string; hash: string } {
  const cached = view.cache.get('trust-json') as { json: string; hash: string } | undefined;
  if (cached !== undefined) return cached;
  const json = JSON.stringify({ trustDomain: view.trust.trustDomain, roots: view.trust.roots });
  const entry = { json, hash: contentHash(json) };
  view.cache.set('trust-json', entry);
  return entry;
}
