/**
 * The effective mTLS mode of a workload's ports, as Istio layers
 * PeerAuthentication: Mesh.spec.mtls.mode, then a root-namespace policy
 * without selector (mesh-wide), then the workload's namespace policy
 * without selector, then a policy whose selector matches the workload,
 * then that policy's portLevelMtls. UNSET (or no mode) inherits from the
 * layer below; with nothing set the mode is PERMISSIVE. Within a layer the
 * oldest policy wins.
 */

import type { MtlsMode } from '../../core/mesh/snapshot.js';
import { selectorMatches } from './labels.js';
import { ROOT_NAMESPACE, type MeshView } from './mesh-view.js';
import type { PeerAuthenticationSpec, Policy } from './policy-index.js';

export interface EffectiveMtls {
  /** Mode for a port without its own portLevelMtls. */
  workload: MtlsMode;
  /** Mode of a port (target or service port number), when the selecting policy names it. */
  forPort(targetPort: number, servicePort: number): MtlsMode;
}

export function effectiveMtls(
  view: MeshView,
  namespace: string,
  labels: Readonly<Record<string, string>>,
): EffectiveMtls {
  let mode: MtlsMode = view.settings.mtlsMode ?? 'PERMISSIVE';
  const policies = view.peerAuthentications;
  const meshWide = policies.find(
    (p) => p.namespace === ROOT_NAMESPACE && p.resource.spec.selector === undefined,
  );
  mode = layer(mode, meshWide);
  const namespaceWide = policies.find(
    (p) => p.namespace === namespace && p.resource.spec.selector === undefined,
  );
  mode = layer(mode, namespaceWide);
  const selecting = policies.find(
    (p) =>
      p.namespace === namespace &&
      p.resource.spec.selector !== undefined &&
      selectorMatches(p.resource.spec.selector.matchLabels ?? {}, labels),
  );
  const workload = layer(mode, selecting);
  const portLevel = selecting?.resource.spec.portLevelMtls ?? {};
  return {
    workload,
    forPort(targetPort, servicePort) {
      const setting = portLevel[String(targetPort)] ?? portLevel[String(servicePort)];
      return asMode(setting?.mode) ?? workload;
    },
  };
}

function layer(current: MtlsMode, policy: Policy<PeerAuthenticationSpec> | undefined): MtlsMode {
  return asMode(policy?.resource.spec.mtls?.mode) ?? current;
}

function asMode(mode: string | undefined): MtlsMode | undefined {
  return mode === 'STRICT' || mode === 'PERMISSIVE' || mode === 'DISABLE' ? mode : undefined;
}
