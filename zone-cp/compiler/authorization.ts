/**
 * The AuthorizationPolicies that apply to one workload: root-namespace
 * policies (without selector: every workload; with one: the workloads it
 * matches, in any namespace), and the workload's namespace policies
 * without selector or with a matching one. Policies attached by targetRef
 * are for waypoints and gateways, not sidecars; CUSTOM needs an external
 * authorizer meshfed does not have: both are skipped and reported once
 * per view.
 */

import type { AuthorizationPolicyConfig } from '../../core/mesh/snapshot.js';
import { selectorMatches } from './labels.js';
import { ROOT_NAMESPACE, type MeshView } from './mesh-view.js';
import type { AuthorizationPolicySpec, Policy } from './policy-index.js';

export function authorizationFor(
  view: MeshView,
  namespace: string,
  labels: Readonly<Record<string, string>>,
): AuthorizationPolicyConfig[] {
  const out: AuthorizationPolicyConfig[] = [];
  for (const policy of usablePolicies(view)) {
    const spec = policy.resource.spec;
    if (policy.namespace !== ROOT_NAMESPACE && policy.namespace !== namespace) continue;
    if (spec.selector !== undefined && !selectorMatches(spec.selector.matchLabels ?? {}, labels)) continue;
    out.push({
      name: policy.name,
      namespace: policy.namespace,
      action: (spec.action ?? 'ALLOW') as AuthorizationPolicyConfig['action'],
      rules: spec.rules ?? [],
    });
  }
  return out;
}

/** The policies a sidecar can enforce (reports the others on the view once). */
export function usablePolicies(view: MeshView): readonly Policy<AuthorizationPolicySpec>[] {
  const cached = view.cache.get('authz-usable');
  if (Array.isArray(cached)) return cached as Policy<AuthorizationPolicySpec>[];
  const usable: Policy<AuthorizationPolicySpec>[] = [];
  for (const policy of view.authorizationPolicies) {
    const spec = policy.resource.spec;
    if (spec.targetRef !== undefined || (spec.targetRefs !== undefined && spec.targetRefs.length > 0)) {
      view.problems.add(
        policy.resource,
        'warning',
        'targetRef policies apply to waypoints and gateways, not sidecars; ignored',
      );
      continue;
    }
    if (spec.action === 'CUSTOM') {
      view.problems.add(
        policy.resource,
        'error',
        'action CUSTOM needs an external authorizer, which meshfed does not support; policy skipped',
      );
      continue;
    }
    usable.push(policy);
  }
  view.cache.set('authz-usable', usable);
  return usable;
}
