/** ROUND_ROBIN: in turn; with unequal weights, nginx's smooth weighted round robin. */

import type { EndpointState } from '../cluster/endpoint-state.js';
import { registerLoadBalancer, type LbLevel, type LoadBalancer } from './lb.js';

export class RoundRobinBalancer implements LoadBalancer {
  pick(level: LbLevel, avoid: EndpointState | undefined): EndpointState | undefined {
    const endpoints = level.endpoints;
    const n = endpoints.length;
    if (n === 0) return undefined;
    if (n === 1) return endpoints[0];
    if (level.uniform) {
      let e = endpoints[level.rrIndex++ % n];
      if (e === avoid) e = endpoints[level.rrIndex++ % n];
      if (level.rrIndex > 1e9) level.rrIndex = 0;
      return e;
    }
    let best: EndpointState | undefined;
    for (const e of endpoints) {
      e.rrCurrent += e.weight;
      if (e !== avoid && (best === undefined || e.rrCurrent > best.rrCurrent)) best = e;
    }
    if (best !== undefined) best.rrCurrent -= level.total;
    return best;
  }
}

registerLoadBalancer('ROUND_ROBIN', () => new RoundRobinBalancer());
