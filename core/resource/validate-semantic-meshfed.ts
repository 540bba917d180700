/**
 * Semantic rules of meshfed's own kinds (Mesh, Zone) that a structural
 * schema cannot say.
 */

import { ErrorCodes, isMeshError } from '../errors.js';
import { validateTrustDomain } from '../pki/spiffe.js';
import { invalid } from './validate-common.js';
import type { Obj } from './validate-common.js';

/**
 * The trust domain names every workload identity (`spiffe://<td>/ns/...`),
 * so a Mesh that names an invalid one is refused at apply rather than when
 * the first certificate is issued.
 */
export function checkMesh(spec: Obj): void {
  checkPinnedServices(spec);
  const trustDomain = spec.trustDomain;
  // The schema has made it a string (defaulted when absent).
  if (typeof trustDomain !== 'string') return;
  try {
    validateTrustDomain(trustDomain);
  } catch (err) {
    // spiffe.ts speaks PKI; at apply time this is the user's field.
    if (isMeshError(err, ErrorCodes.PKI)) throw invalid('spec.trustDomain', err.message);
    throw err;
  }
}

/** One pinned-service entry: `name.namespace`, the service's FQDN, or `*.namespace`. */
const PINNED_HOST =
  /^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.svc(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+)?$/;

/**
 * A pinned service the compiler cannot match would silently allow
 * cross-zone calls the user meant to forbid, so a malformed one is refused.
 */
function checkPinnedServices(spec: Obj): void {
  const routing = spec.routing;
  if (typeof routing !== 'object' || routing === null || Array.isArray(routing)) return;
  const pinned = (routing as Obj).pinnedServices;
  if (!Array.isArray(pinned)) return;
  pinned.forEach((entry, i) => {
    if (typeof entry !== 'string' || !PINNED_HOST.test(entry)) {
      throw invalid(
        `spec.routing.pinnedServices[${i}]`,
        `${JSON.stringify(entry)} is not a service: write name.namespace, the FQDN (name.namespace.svc.cluster.local) or *.namespace`,
      );
    }
  });
}
