/** RANDOM: a weighted random endpoint, a different one from the last try when possible. */

import type { EndpointState } from '../cluster/endpoint-state.js';
import { registerLoadBalancer, type LbLevel, type LoadBalancer } from './lb.js';

export class RandomBalancer implements LoadBalancer {
  pick(level: LbLevel, avoid: EndpointState | undefined): EndpointState | undefined {
    return level.randomExcept(avoid);
  }
}

registerLoadBalancer('RANDOM', () => new RandomBalancer());
