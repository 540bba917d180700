/**
 * Least connections (the gateway's default): the available endpoint with the
 * fewest active connections. The scan starts one position later on every
 * pick, so ties (an idle gateway, a burst of new connections) spread over
 * the endpoints instead of piling onto the first one.
 *
 * A full scan is O(endpoints) per connection; gateways route to the local
 * endpoints of one service, typically a handful to a few hundred, which costs
 * less than the TCP accept itself.
 */

import { isAvailable, registerLoadBalancer, type LoadBalancer } from './lb.js';
import type { EndpointState } from './endpoint-state.js';

export const LEAST_CONN = 'least-conn';

export class LeastConnLoadBalancer implements LoadBalancer {
  private next = 0;

  pick(
    endpoints: readonly EndpointState[],
    now: number,
    tried: readonly EndpointState[],
  ): EndpointState | undefined {
    const n = endpoints.length;
    if (n === 0) return undefined;
    const start = this.next++ % n;
    if (this.next >= 0x3fffffff) this.next = 0;
    let best: EndpointState | undefined;
    for (let i = 0; i < n; i++) {
      const endpoint = endpoints[(start + i) % n];
      if (endpoint === undefined || !isAvailable(endpoint, now, tried)) continue;
      if (best === undefined || endpoint.active < best.active) best = endpoint;
    }
    return best;
  }
}

registerLoadBalancer(LEAST_CONN, () => new LeastConnLoadBalancer());
