/**
 * Load-balancing policies for the gateway: an interface plus a small
 * registry (grpc-js' load-balancer.ts is the model), so a policy is chosen by
 * name from the options and new ones plug in without touching the listener.
 *
 * A policy picks among a route's endpoints that the zone reports healthy;
 * it must skip ejected endpoints and the ones this connection already tried.
 * When it finds none the caller falls back to the ejected endpoint whose
 * ejection ends first (Envoy's "panic" mode): the zone still calls them
 * healthy, and refusing every connection would be worse than one more try.
 */

import { ErrorCodes } from '../core/errors.js';
import { FactoryRegistry } from '../core/factory-registry.js';
import { isEjected, type EndpointState } from './endpoint-state.js';

export interface LoadBalancer {
  /**
   * Choose an endpoint for a new connection, or undefined when every
   * endpoint is ejected or in `tried`. Called once per connect attempt:
   * keep it allocation-free.
   */
  pick(
    endpoints: readonly EndpointState[],
    now: number,
    tried: readonly EndpointState[],
  ): EndpointState | undefined;
}

export type LoadBalancerFactory = () => LoadBalancer;

/** An unknown policy name comes from an option (`--lb-policy`): an invalid argument. */
const registry = new FactoryRegistry<LoadBalancerFactory>(
  'load-balancing policy',
  ErrorCodes.INVALID_ARGUMENT,
);

/** Make a policy available under `name` (replaces an earlier one of that name). */
export function registerLoadBalancer(name: string, factory: LoadBalancerFactory): void {
  registry.register(name, factory);
}

/**
 * A new instance of the named policy; one instance per route, since policies keep per-route state.
 * @throws MeshError INVALID_ARGUMENT naming an unknown policy and the known ones.
 */
export function createLoadBalancer(name: string): LoadBalancer {
  return registry.require(name)();
}

export function loadBalancerNames(): string[] {
  return registry.names();
}

/** The fallback when the policy found nothing: the untried endpoint whose ejection ends first. */
export function pickLeastEjected(
  endpoints: readonly EndpointState[],
  tried: readonly EndpointState[],
): EndpointState | undefined {
  let best: EndpointState | undefined;
  for (const endpoint of endpoints) {
    if (tried.includes(endpoint)) continue;
    if (best === undefined || endpoint.ejectedUntil < best.ejectedUntil) best = endpoint;
  }
  return best;
}

/** True when `endpoint` may take a connection now. */
export function isAvailable(endpoint: EndpointState, now: number, tried: readonly EndpointState[]): boolean {
  return !isEjected(endpoint, now) && (tried.length === 0 || !tried.includes(endpoint));
}
