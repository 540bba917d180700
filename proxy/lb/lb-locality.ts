/**
 * The proxy's side of locality load balancing: the planning itself lives
 * in `core/mesh/locality-plan.ts` so that the zone CP answers `meshfed
 * inspect service` with the very code the proxy runs. The plan is made on
 * a config or health change, never per request.
 */

import {
  planLocality as planCore,
  type LocalityContext,
  type LocalityPlan as CorePlan,
} from '../../core/mesh/locality-plan.js';
import type { LocalityConfig } from '../../core/mesh/snapshot.js';
import type { EndpointState } from '../cluster/endpoint-state.js';
import type { LocalityPolicy } from '../config/config-types.js';

export { localityMatches, localityOfLabels, type LocalityContext } from '../../core/mesh/locality-plan.js';

/** The proxy's plan: priority levels (or distribute groups) of live endpoints. */
export type LocalityPlan = CorePlan<EndpointState>;

/** Plans `all` for this proxy (see core/mesh/locality-plan.ts for the rules). */
export function planLocality(
  all: EndpointState[],
  ctx: LocalityContext,
  config: LocalityConfig,
  policy: LocalityPolicy | undefined,
): LocalityPlan {
  return planCore(all, ctx, config, policy);
}
