/**
 * One sidecar's snapshot (core/mesh/snapshot.ts SidecarSnapshot). The
 * JSON is assembled from per-service JSON cached on the view, in exactly
 * the key order JSON.stringify would write, so two thousand proxies that
 * call the same services serialise each service once; the proxy's own
 * identity JSON and its version survive view rebuilds (see ProxyMemo).
 */

import { SIDECAR_SNAPSHOT_TYPE, type ProxyIdentity, type TelemetryConfig } from '../../core/mesh/snapshot.js';
import type { WorkloadEndpoint } from '../discovery/discovery.js';
import { identityOf } from './endpoints.js';
import { buildInbound } from './inbound.js';
import type { MeshView } from './mesh-view.js';
import { outboundJson } from './outbound.js';
import { dependenciesOf, scopedServices } from './service-scope.js';
import { contentHash, lazyCompiled, type CompiledSnapshot } from './snapshot-version.js';

/**
 * Per workload object (discovery hands out the same object until the
 * workload changes) and proxy: the proxy identity JSON and the last
 * version with the text it hashed. A policy change rebuilds the view but
 * not the workloads, so the identity is not re-serialised, and a proxy
 * whose parts are unchanged reuses its version without hashing again.
 */
interface ProxyMemo {
  proxyId: string;
  /** The fields the identity is made of, checked by reference: a source that edits in place is still seen. */
  labels: Readonly<Record<string, string>>;
  name: string;
  namespace: string;
  serviceAccount: string;
  trustDomain: string;
  zone: string;
  proxyJson: string;
  versionInput: string;
  version: string;
}
const memos = new WeakMap<WorkloadEndpoint, ProxyMemo>();

export function compileSidecar(
  view: MeshView,
  proxyId: string,
  workload: WorkloadEndpoint,
): CompiledSnapshot {
  const memo = memoOf(view, proxyId, workload);
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
  const proxyJson = memo.proxyJson;
  const inboundJson = JSON.stringify(buildInbound(view, workload));
  const trust = trustJson(view);
  const telemetryJson = telemetryJsonOf(view);
  // The hash of the parts' hashes: no need to assemble the snapshot to know whether it changed.
  const versionInput = `${trust.hash}\n${inboundJson}\n${outbound.map((o) => o.hash).join(',')}\n${telemetryJson}`;
  if (versionInput !== memo.versionInput) {
    memo.versionInput = versionInput;
    memo.version = contentHash(`${proxyJson}\n${versionInput}`);
  }
  return lazyCompiled(
    SIDECAR_SNAPSHOT_TYPE,
    memo.version,
    () =>
      `{"type":${JSON.stringify(SIDECAR_SNAPSHOT_TYPE)}` +
      `,"proxy":${proxyJson}` +
      `,"trust":${trust.json}` +
      `,"inbound":${inboundJson}` +
      `,"outbound":{"services":[${outbound.map((o) => o.json).join(',')}]}` +
      `,"telemetry":${telemetryJson}}`,
  );
}

function memoOf(view: MeshView, proxyId: string, workload: WorkloadEndpoint): ProxyMemo {
  const trustDomain = view.trust.trustDomain;
  const known = memos.get(workload);
  if (
    known !== undefined &&
    known.proxyId === proxyId &&
    known.labels === workload.labels &&
    known.name === workload.name &&
    known.namespace === workload.namespace &&
    known.serviceAccount === workload.serviceAccount &&
    known.trustDomain === trustDomain &&
    known.zone === view.zone
  )
    return known;
  const memo: ProxyMemo = {
    proxyId,
    labels: workload.labels,
    name: workload.name,
    namespace: workload.namespace,
    serviceAccount: workload.serviceAccount,
    trustDomain,
    zone: view.zone,
    proxyJson: JSON.stringify(proxyIdentity(view, proxyId, workload)),
    versionInput: '',
    version: '',
  };
  memos.set(workload, memo);
  return memo;
}

function proxyIdentity(view: MeshView, proxyId: string, workload: WorkloadEndpoint): ProxyIdentity {
  return {
    proxyId,
    workload: workload.name,
    namespace: workload.namespace,
    serviceAccount: workload.serviceAccount || 'default',
    spiffeId: identityOf(workload, view.trust.trustDomain),
    zone: view.zone,
    labels: workload.labels,
    canonicalService: workload.labels.app ?? workload.labels['app.kubernetes.io/name'] ?? workload.name,
  };
}

function telemetryJsonOf(view: MeshView): string {
  const cached = view.cache.get('telemetry-json');
  if (typeof cached === 'string') return cached;
  const telemetry: TelemetryConfig = { accessLog: view.settings.accessLog };
  const json = JSON.stringify(telemetry);
  view.cache.set('telemetry-json', json);
  return json;
}

function trustJson(view: MeshView): { json: string; hash: string } {
  const cached = view.cache.get('trust-json') as { json: string; hash: string } | undefined;
  if (cached !== undefined) return cached;
  const json = JSON.stringify({ trustDomain: view.trust.trustDomain, roots: view.trust.roots });
  const entry = { json, hash: contentHash(json) };
  view.cache.set('trust-json', entry);
  return entry;
}
