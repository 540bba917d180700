/**
 * PKCS#10 certificate signing requests (RFC 2986), reduced to what meshfed
 * needs: a workload (or a zone, for its intermediate) proves possession of
 * its key by signing a request; the CA takes only the public key from it.
 * The subject and any requested extensions are ignored on purpose: the
 * identity comes from the authenticated caller, never from the CSR.
 */

import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError, isMeshError } from '../errors.js';
import { Tag, integerFromNumber, bitString, sequence, oid } from './der.js';
import { childrenOf, contentOf, decodeOid, encodingOf, readRoot, decodeWholeBitString } from './der-read.js';
import { derToPem, pemToDerList } from './pem.js';
import { P256_SPKI_PREFIX, assertP256, encodeName, p256Spki } from './x509-build.js';

const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
const CSR_LABEL = 'CERTIFICATE REQUEST';

/** Builds a CSR for a P-256 key pair, signed with the private key. */
export function buildCsr(
  privateKey: KeyObject,
  publicKey: KeyObject,
  subject: { commonName?: string } = {},
): string {
  assertP256(privateKey, 'private', 'CSR signing key');
  assertP256(publicKey, 'public', 'CSR public key');
  const info = sequence(
    integerFromNumber(0),
    encodeName({ commonName: subject.commonName }),
    p256Spki(publicKey),
    // attributes [0] IMPLICIT SET: empty, no extension requests.
    Buffer.from([0xa0, 0x00]),
  );
  const signature = sign('sha256', info, privateKey);
  const der = sequence(info, sequence(oid(ECDSA_WITH_SHA256)), bitString(signature));
  return derToPem(der, CSR_LABEL);
}

export interface ParsedCsr {
  publicKey: KeyObject;
}

/**
 * Parses a PEM CSR and checks its self-signature, so the requester holds the
 * private key. Only ECDSA P-256 with SHA-256 is accepted. Any malformed input
 * is MeshError(PKI), never another exception.
 */
export function readCsr(pem: string): ParsedCsr {
  try {
    const blocks = pemToDerList(pem, CSR_LABEL);
    if (blocks.length !== 1) throw pkiError(`expected one CSR, found ${blocks.length}`);
    const der = blocks[0] ?? Buffer.alloc(0);
    const root = readRoot(der, Tag.SEQUENCE, 'CSR');
    const [infoNode, algNode, sigNode] = childrenOf(der, root);
    if (infoNode === undefined || algNode === undefined || sigNode === undefined)
      throw pkiError('CSR has too few fields');
    const [versionNode, , spkiNode] = childrenOf(der, infoNode);
    if (versionNode === undefined || spkiNode === undefined) throw pkiError('CSR info has too few fields');
    if (!contentOf(der, versionNode).equals(Buffer.from([0]))) throw pkiError('CSR version must be 1 (0)');
    const [algOid] = childrenOf(der, algNode);
    if (algOid === undefined || decodeOid(contentOf(der, algOid)) !== ECDSA_WITH_SHA256) {
      throw pkiError('CSR must be signed with ecdsa-with-SHA256');
    }
    const publicKey = importSpki(encodingOf(der, spkiNode));
    assertP256(publicKey, 'public', 'CSR public key');
    const signature = decodeWholeBitString(der, sigNode);
    if (!verify('sha256', encodingOf(der, infoNode), publicKey, signature)) {
      throw pkiError('CSR signature does not verify: the requester does not hold the key');
    }
    return { publicKey };
  } catch (err) {
    if (isMeshError(err, ErrorCodes.PKI)) throw err;
    const reason = isMeshError(err) ? err.message : (err as Error).message;
    throw pkiError(`malformed CSR: ${reason}`);
  }
}

/**
 * Imports an SPKI public key. A P-256 key goes through its JWK coordinates,
 * which Node imports in about half the time of DER — this runs once per CA
 * request.
 */
function importSpki(spki: Buffer): KeyObject {
  if (spki.length === 91 && spki.subarray(0, 26).equals(P256_SPKI_PREFIX) && spki[26] === 0x04) {
    const x = spki.subarray(27, 59).toString('base64url');
    const y = spki.subarray(59, 91).toString('base64url');
    return createPublicKey({ key: { kty: 'EC', crv: 'P-256', x, y }, format: 'jwk' });
  }
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

function pkiError(message: string): MeshError {
  return new MeshError(ErrorCodes.PKI, message);
}
