/**
 * The client side of `meshfed.ca.v1.CertificateAuthority/Sign`: send a CSR
 * for a key generated here (the private key never leaves), get back the
 * chain, the trust bundle and the identity the zone placed in the
 * certificate. Used by the proxy, the east-west gateway and the VM agent.
 */

import type { KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError } from '../errors.js';
import { buildCsr } from '../pki/csr.js';
import { decodeSignResponse, encodeSignRequest, type SignResponseWire } from './ca-codec.js';
import type { GrpcStatusError } from '../grpc/grpc-codes.js';
import { meshErrorFromGrpc, zoneCallMetadata, zoneChannel, type ZoneCredential } from './zone-channel.js';

export const CA_SERVICE = 'meshfed.ca.v1.CertificateAuthority';

export interface CertificateRequest {
  /** The zone CP's gRPC address, host:port. */
  address: string;
  /** PEM roots the zone CP's server certificate must chain to (its trust bundle). */
  caPem: string;
  /** Proves who the caller is: a token, or the current certificate and its key (renewal). */
  credential: ZoneCredential;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** Requested lifetime; the CA may shorten it. Default: the CA's (1 h). */
  ttlSeconds?: number;
  /** Give up after this long. Default 10 s. */
  timeoutMs?: number;
}

export interface IssuedCertificate {
  /** Leaf first, then intermediates, as one PEM text. */
  certChainPem: string;
  /** The roots to trust, as one PEM text (two during a root rotation). */
  trustBundlePem: string;
  /** The identity the zone put in the certificate. */
  spiffeId: string;
  notAfter: Date;
  /** Upper-case hex. */
  serial: string;
}

/** The one RPC, called by path with the lean codec (ca-codec.ts). */
const SIGN_METHOD = `/${CA_SERVICE}/Sign`;

/**
 * Asks the zone CA for a certificate. Rejects with a MeshError whose code
 * follows the gRPC status (UNAUTHENTICATED, FORBIDDEN, INVALID_ARGUMENT,
 * UNAVAILABLE) and whose message carries the zone's reason.
 */
export async function requestCertificate(request: CertificateRequest): Promise<IssuedCertificate> {
  const ttl = request.ttlSeconds ?? 0;
  if (!Number.isSafeInteger(ttl) || ttl < 0 || ttl > 0xffffffff) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'ttlSeconds must be a whole number of seconds');
  }
  const csrPem = buildCsr(request.privateKey, request.publicKey);
  // One short-lived channel per request: renewals are rare, and a fresh
  // channel picks up a renewed client certificate.
  const channel = zoneChannel(request.address, request.caPem, request.credential);
  try {
    const answer = await channel
      .unary(
        SIGN_METHOD,
        encodeSignRequest({ csr_pem: csrPem, ttl_seconds: ttl }),
        zoneCallMetadata(request.credential),
        request.timeoutMs ?? 10_000,
      )
      .catch((err: GrpcStatusError) => {
        throw meshErrorFromGrpc(err, `certificate request to ${request.address} failed`);
      });
    let response: SignResponseWire;
    try {
      response = decodeSignResponse(answer);
    } catch (err) {
      throw new MeshError(
        ErrorCodes.PKI,
        `the zone CA's answer is not a SignResponse: ${(err as Error).message}`,
      );
    }
    return parseResponse(response);
  } finally {
    channel.close();
  }
}

function parseResponse(response: SignResponseWire): IssuedCertificate {
  const chain = response.cert_chain_pem;
  const bundle = response.trust_bundle_pem;
  const notAfterSeconds = Number(response.not_after);
  if (chain.length === 0 || bundle.length === 0 || !response.spiffe_id || !(notAfterSeconds > 0)) {
    throw new MeshError(
      ErrorCodes.PKI,
      'the zone CA answered without a chain, trust bundle, identity or expiry',
    );
  }
  return {
    certChainPem: chain.map(withNewline).join(''),
    trustBundlePem: bundle.map(withNewline).join(''),
    spiffeId: response.spiffe_id,
    notAfter: new Date(notAfterSeconds * 1000),
    serial: response.serial,
  };
}

function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : pem + '\n';
}
