/**
 * Workload identities: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
 *
 * Validation follows the SPIFFE ID spec strictly (lower-case trust domain of
 * [a-z0-9._-], path segments of [A-Za-z0-9._-], no `.`/`..`, no query,
 * fragment, port, user info or percent-encoding), since a lenient parser
 * would let two spellings name the same identity in authorization policies.
 */

import { ErrorCodes, MeshError } from '../errors.js';

export interface SpiffeId {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const SEGMENT = /^[A-Za-z0-9._-]{1,253}$/;
const SPIFFE_ID = /^spiffe:\/\/([^/]*)\/ns\/([^/]*)\/sa\/([^/]*)$/;
/** The longest SPIFFE ID the spec allows. */
const MAX_LENGTH = 2048;

function bad(message: string): MeshError {
  return new MeshError(ErrorCodes.PKI, message);
}

/** Throws MeshError(PKI) unless `trustDomain` is a valid SPIFFE trust domain name. */
export function validateTrustDomain(trustDomain: string): void {
  if (typeof trustDomain !== 'string' || !TRUST_DOMAIN.test(trustDomain)) {
    throw bad(`invalid trust domain ${JSON.stringify(trustDomain)}: want 1-255 characters of [a-z0-9._-]`);
  }
}

function validateSegment(value: string, what: string): void {
  if (typeof value !== 'string' || !SEGMENT.test(value) || value === '.' || value === '..') {
    throw bad(
      `invalid ${what} ${JSON.stringify(value)}: want 1-253 characters of [A-Za-z0-9._-], not . or ..`,
    );
  }
}

/** Splits a workload SPIFFE ID; throws MeshError(PKI) for anything but the exact canonical form. */
export function parseSpiffeId(uri: string): SpiffeId {
  if (typeof uri !== 'string') throw bad('SPIFFE ID must be a string');
  if (uri.length > MAX_LENGTH) throw bad(`SPIFFE ID longer than ${MAX_LENGTH} characters`);
  const match = SPIFFE_ID.exec(uri);
  if (!match) {
    throw bad(
      `invalid SPIFFE ID ${JSON.stringify(uri)}: want spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`,
    );
  }
  const [, trustDomain = '', namespace = '', serviceAccount = ''] = match;
  validateTrustDomain(trustDomain);
  validateSegment(namespace, 'namespace');
  validateSegment(serviceAccount, 'service account');
  return { trustDomain, namespace, serviceAccount };
}

/** The SPIFFE ID for a workload; validates each part as parseSpiffeId does. */
export function formatSpiffeId(id: SpiffeId): string {
  validateTrustDomain(id.trustDomain);
  validateSegment(id.namespace, 'namespace');
  validateSegment(id.serviceAccount, 'service account');
  const uri = `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
  if (uri.length > MAX_LENGTH) throw bad(`SPIFFE ID longer than ${MAX_LENGTH} characters`);
  return uri;
}

/** Istio's principal form of a SPIFFE ID (`cluster.local/ns/default/sa/frontend`), used in authorization policies. */
export function principalOf(spiffeId: string): string {
  const { trustDomain, namespace, serviceAccount } = parseSpiffeId(spiffeId);
  return `${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** The trust domain's own SPIFFE ID (`spiffe://cluster.local`), written as a URI SAN on CA certificates. */
export function trustDomainUri(trustDomain: string): string {
  validateTrustDomain(trustDomain);
  return `spiffe://${trustDomain}`;
}
