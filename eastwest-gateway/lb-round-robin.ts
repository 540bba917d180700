/** Round robin over the available endpoints, for operators who want an even spread of connections over time. */

import { isAvailable, registerLoadBalancer, type LoadBalancer } from './lb.js';
import type { EndpointState } from './endpoint-state.js';

export const ROUND_ROBIN = 'round-robin';

export class RoundRobinLoadBalancer implements LoadBalancer {
  private next = 0;

  pick(
    endpoints: readonly EndpointState[],
    now: number,
    tried: readonly EndpointState[],
  ): EndpointState | undefined {
    const n = endpoints.length;
    for (let i = 0; i < n; i++) {
      const index = this.next++ % n;
      if (this.next >= 0x3fffffff) this.next = 0;
      const endpoint = endpoints[index];
      if (endpoint !== undefined && isAvailable(endpoint, now, tried)) return endpoint;
    }
    return undefined;
  }
}

registerLoadBalancer(ROUND_ROBIN, () => new RoundRobinLoadBalancer());
