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
