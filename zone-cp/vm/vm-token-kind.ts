/**
 * The `vm` token kind a zone issues on `POST /api/v1/tokens`: a join token
 * bound to this zone and to one of its WorkloadGroups (the shared contract,
 * also issued by the global CP, is core/vm/vm-token-spec.ts). The token
 * carries the fingerprint of the mesh root, so `meshfed vm-agent join` can
 * pin the zone CP's certificate with nothing but the token.
 */

import type { TokenKindSpec } from '../../core/api/token-routes.js';
import type { Store } from '../../core/store/store.js';
import { vmTokenKindSpec } from '../../core/vm/vm-token-spec.js';

export { firstRootFingerprint } from '../../core/vm/vm-token-spec.js';

export interface VmTokenKindDeps {
  zone: string;
  store: Store;
  /** PEM roots of the trust bundle (the first one is pinned by joining VMs); '' while unknown. */
  bundlePem: () => string;
}

export function vmTokenKind(deps: VmTokenKindDeps): TokenKindSpec {
  return vmTokenKindSpec({ ...deps, where: 'in this zone' });
}
