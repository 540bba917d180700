/**
 * Semantic rules of the security kinds (PeerAuthentication,
 * AuthorizationPolicy) that Istio's webhook enforces and a structural schema
 * cannot say.
 */

import { asArray, asObject, index, invalid, key } from './validate-common.js';
import type { Obj } from './validate-common.js';

function isPort(text: string): boolean {
  if (!/^[0-9]{1,5}$/.test(text)) return false;
  const n = Number(text);
  return n >= 1 && n <= 65535;
}

export function checkPeerAuthentication(spec: Obj): void {
  const ports = asObject(spec.portLevelMtls);
  if (ports === undefined) return;
  const labels = asObject(asObject(spec.selector)?.matchLabels);
  if (Object.keys(ports).length > 0 && (labels === undefined || Object.keys(labels).length === 0)) {
    throw invalid('spec.portLevelMtls', 'requires a selector with matchLabels');
  }
  for (const port of Object.keys(ports)) {
    if (!isPort(port))
      throw invalid(key('spec.portLevelMtls', port), 'key must be a port number in 1..65535');
  }
}

export function checkAuthorizationPolicy(spec: Obj): void {
  const targets = ['selector', 'targetRef', 'targetRefs'].filter((f) => spec[f] !== undefined);
  if (targets.length > 1) throw invalid('spec', `set only one of ${targets.join(' and ')}`);
  const action = spec.action ?? 'ALLOW';
  const provider = asObject(spec.provider);
  if (action === 'CUSTOM') {
    if (typeof provider?.name !== 'string' || provider.name === '') {
      throw invalid('spec.provider.name', 'action CUSTOM requires a provider');
    }
  } else if (provider !== undefined) {
    throw invalid('spec.provider', `is only allowed with action CUSTOM, not ${String(action)}`);
  }
  asArray(spec.rules).forEach((r, i) => {
    const rp = index('spec.rules', i);
    const rule = asObject(r) ?? {};
    asArray(rule.from).forEach((f, j) => {
      const source = asObject(asObject(f)?.source);
      if (source !== undefined && Object.keys(source).length === 0) {
        throw invalid(key(index(key(rp, 'from'), j), 'source'), 'must not be empty');
      }
    });
    asArray(rule.to).forEach((t, j) => {
      const tp = key(index(key(rp, 'to'), j), 'operation');
      const operation = asObject(asObject(t)?.operation);
      if (operation === undefined) return;
      if (Object.keys(operation).length === 0) throw invalid(tp, 'must not be empty');
      for (const field of ['ports', 'notPorts']) {
        asArray(operation[field]).forEach((port, k) => {
          if (typeof port !== 'string' || !isPort(port)) {
            throw invalid(index(key(tp, field), k), 'must be a port number in 1..65535');
          }
        });
      }
    });
    asArray(rule.when).forEach((w, j) => {
      const cond = asObject(w) ?? {};
      if (asArray(cond.values).length === 0 && asArray(cond.notValues).length === 0) {
        throw invalid(index(key(rp, 'when'), j), 'set values or notValues');
      }
    });
  });
}
