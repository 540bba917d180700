/**
 * Load-balancing policies: an interface and a small registry (grpc-js's
 * load-balancer.ts shape). A policy picks among the available endpoints of
 * one priority level; which level is in play is lb-locality's business.
 */

import { ErrorCodes } from '../../core/errors.js';
import { FactoryRegistry } from '../../core/factory-registry.js';
import type { EndpointState } from '../cluster/endpoint-state.js';

/** The available endpoints of one priority level, with weights pre-summed once per change. */
export class LbLevel {
  readonly endpoints: EndpointState[];
  /** Running sums of weights (weighted random draws). */
  readonly cumulative: number[];
  readonly total: number;
  /** Every weight equal: plain index arithmetic is enough. */
  readonly uniform: boolean;
  /** Round-robin position. */
  rrIndex = 0;

  constructor(endpoints: EndpointState[]) {
    this.endpoints = endpoints;
    const cumulative: number[] = [];
    let total = 0;
    let uniform = true;
    const first = endpoints[0]?.weight;
    for (const e of endpoints) {
      total += e.weight;
      cumulative.push(total);
      if (e.weight !== first) uniform = false;
    }
    this.cumulative = cumulative;
    this.total = total;
    this.uniform = uniform;
  }

  /** A weighted random endpoint (uniform when weights are equal). */
  weightedRandom(): EndpointState | undefined {
    const n = this.endpoints.length;
    if (n === 0) return undefined;
    if (this.uniform || this.total <= 0) return this.endpoints[Math.floor(Math.random() * n)];
    const draw = Math.random() * this.total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.cumulative[mid] ?? 0) > draw) hi = mid;
      else lo = mid + 1;
    }
    return this.endpoints[lo];
  }

  /** A weighted random endpoint other than `avoid` (when there is another one). */
  randomExcept(avoid: EndpointState | undefined): EndpointState | undefined {
    const first = this.weightedRandom();
    const n = this.endpoints.length;
    if (first === undefined || first !== avoid || n < 2) return first;
    if (this.uniform) {
      const i = this.endpoints.indexOf(first);
      return this.endpoints[(i + 1 + Math.floor(Math.random() * (n - 1))) % n];
    }
    for (let tries = 0; tries < 4; tries++) {
      const e = this.weightedRandom();
      if (e !== avoid) return e;
    }
    return this.endpoints.find((e) => e !== avoid && e.weight > 0) ?? first;
  }
}

export interface LoadBalancer {
  /**
   * Picks an endpoint of `level` (all of them available). `avoid` is the
   * endpoint the previous try used: a retry goes elsewhere when it can.
   */
  pick(level: LbLevel, avoid: EndpointState | undefined): EndpointState | undefined;
}

export type LoadBalancerFactory = () => LoadBalancer;

/** The policies by their DestinationRule names (ROUND_ROBIN, LEAST_REQUEST, RANDOM); an unknown one is a config error. */
const registry = new FactoryRegistry<LoadBalancerFactory>('load balancer', ErrorCodes.CONFIG);

export function registerLoadBalancer(name: string, factory: LoadBalancerFactory): void {
  registry.register(name, factory);
}

/** @throws MeshError CONFIG naming an unknown policy and the known ones. */
export function createLoadBalancer(name: string): LoadBalancer {
  return registry.require(name)();
}

export function registeredLoadBalancers(): string[] {
  return registry.names();
}
