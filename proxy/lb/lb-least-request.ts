/**
 * LEAST_REQUEST (Istio's default): power of two choices — draw two
 * endpoints at random (by weight) and take the one with fewer requests in
 * flight, weighted as Envoy does (weight / (active + 1)).
 */

import type { EndpointState } from '../cluster/endpoint-state.js';
import { registerLoadBalancer, type LbLevel, type LoadBalancer } from './lb.js';

export class LeastRequestBalancer implements LoadBalancer {
  pick(level: LbLevel, avoid: EndpointState | undefined): EndpointState | undefined {
    const endpoints = level.endpoints;
    const n = endpoints.length;
    if (n === 0) return undefined;
    if (n === 1) return endpoints[0];
    let a = level.weightedRandom();
    let b = level.weightedRandom();
    if (level.uniform && a === b) {
      // Two distinct candidates when weights are equal: the second draw skips the first.
      const i = a === undefined ? 0 : endpoints.indexOf(a);
      b = endpoints[(i + 1 + Math.floor(Math.random() * (n - 1))) % n];
    }
    if (a === avoid) a = b;
    if (b === avoid) b = a;
    if (a === undefined) return b;
    if (b === undefined) return a;
    const scoreA = a.weight / (a.active + 1);
    const scoreB = b.weight / (b.active + 1);
    return scoreB > scoreA ? b : a;
  }
}

registerLoadBalancer('LEAST_REQUEST', () => new LeastRequestBalancer());
