/**
 * The KDS server's TLS identity: a certificate issued from the mesh root at
 * every start, with global's SPIFFE ID (what zones check, so IP addresses
 * work) and `localhost` as DNS name. The key is generated here and never
 * leaves memory.
 */

import type { CertificateAuthority } from '../../core/pki/ca.js';
import { generateKeyPair } from '../../core/pki/ca.js';
import { globalCpSpiffeId } from '../../core/kds/kds-protocol.js';

export interface KdsServerIdentity {
  /** Leaf followed by the root. */
  certChainPem: string;
  keyPem: string;
  spiffeId: string;
  notAfter: Date;
}

/** One year, cut at the root's own expiry by the CA; a restart issues a fresh one. */
const SERVER_CERT_TTL_SECONDS = 365 * 86_400;

export function issueKdsServerIdentity(
  root: CertificateAuthority,
  dnsNames: readonly string[] = [],
): KdsServerIdentity {
  const { privateKey, publicKey } = generateKeyPair();
  const spiffeId = globalCpSpiffeId(root.trustDomain);
  const names = ['localhost', ...dnsNames.filter((n) => n !== 'localhost')];
  const cert = root.signWorkload(publicKey, {
    spiffeId,
    ttlSeconds: SERVER_CERT_TTL_SECONDS,
    dnsNames: names,
  });
  return {
    certChainPem: cert.chainPem,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    spiffeId,
    notAfter: cert.notAfter,
  };
}
