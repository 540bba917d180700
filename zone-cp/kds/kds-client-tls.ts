/**
 * How a zone trusts global: only certificates chaining to the pinned mesh
 * root, and only if they carry global's SPIFFE ID. The hostname is not
 * checked, so zones can dial global by IP address or through any DNS name.
 */

import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { GLOBAL_CP_SPIFFE_PATH, globalCpSpiffeId } from '../../core/kds/kds-protocol.js';

/** The trust domain a CA certificate names in its `spiffe://<td>` URI SAN, if any. */
export function trustDomainOfCa(caPem: string): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(caPem);
  } catch (err) {
    throw new MeshError(ErrorCodes.CONFIG, `globalCaPem is not a PEM certificate: ${(err as Error).message}`);
  }
  if (!cert.ca)
    throw new MeshError(ErrorCodes.CONFIG, 'globalCaPem is not a CA certificate (basicConstraints CA:FALSE)');
  const match = /URI:spiffe:\/\/([^/,\s]+)(?:,|$)/.exec(cert.subjectAltName ?? '');
  return match?.[1];
}

/** The SPIFFE check as a function of the peer certificate (exported for tests). */
export function checkGlobalIdentity(
  cert: PeerCertificate,
  trustDomain: string | undefined,
): Error | undefined {
  const uris = (cert.subjectaltname ?? '')
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice(4));
  const ok = uris.some((uri) =>
    trustDomain === undefined
      ? uri.startsWith('spiffe://') && uri.endsWith(GLOBAL_CP_SPIFFE_PATH)
      : uri === globalCpSpiffeId(trustDomain),
  );
  if (ok) return undefined;
  const want =
    trustDomain === undefined ? `spiffe://<td>${GLOBAL_CP_SPIFFE_PATH}` : globalCpSpiffeId(trustDomain);
  return new Error(
    `the KDS server is not the global control plane: its certificate names ${uris.length > 0 ? uris.join(', ') : 'no SPIFFE ID'}, want ${want}`,
  );
}

/** TLS credentials that pin `caPem` and check global's SPIFFE ID. */
export function kdsChannelCredentials(caPem: string): ChannelCredentials {
  const trustDomain = trustDomainOfCa(caPem);
  return credentials.createSsl(Buffer.from(caPem), null, null, {
    checkServerIdentity: (_host, cert) => checkGlobalIdentity(cert, trustDomain),
  });
}
