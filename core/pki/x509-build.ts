/**
 * Builds and signs X.509 v3 certificates with ECDSA P-256 / SHA-256.
 *
 * The TBSCertificate is written with the lean encoders of der.ts (constant
 * parts precomputed at load) and signed with `crypto.sign`, whose default
 * output is the DER ECDSA-Sig-Value X.509 wants. This keeps a CA well above
 * 2,000 certificates/s, where ASN.1 libraries manage a few hundred.
 */

import { createHash, randomBytes, sign, type KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError } from '../errors.js';
import {
  bitString,
  boolean,
  explicit,
  ia5Bytes,
  implicit,
  integerFromBytes,
  integerFromNumber,
  octetString,
  oid,
  sequence,
  set,
  utf8String,
  x509Time,
} from './der.js';
import { ExtensionOids, readSpkiKeyBits } from './x509-read.js';

/** Distinguished name fields meshfed writes; both optional (workload certificates have an empty subject). */
export interface NameSpec {
  commonName?: string;
  organization?: string;
}

export interface CertificateSpec {
  subject: NameSpec;
  /** The issuer's subject Name as DER (`readCertificate(issuerDer).subject`; `encodeName(subject)` when self-signed). */
  issuerName: Buffer;
  /** Positive serial magnitude; default `randomSerial()`. */
  serial?: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** SubjectPublicKeyInfo DER (`publicKey.export({ type: 'spki', format: 'der' })`). */
  subjectPublicKey: Buffer;
  isCa: boolean;
  /** CA only: basicConstraints pathLenConstraint; absent = unlimited. */
  pathLength?: number;
  /** Key identifier of the issuer's key (its SubjectKeyIdentifier); omitted when absent. */
  authorityKeyId?: Buffer;
  uris?: readonly string[];
  dnsNames?: readonly string[];
}

const ECDSA_WITH_SHA256 = sequence(oid('1.2.840.10045.4.3.2'));
const VERSION_3 = explicit(0, integerFromNumber(2));
const OID_CN = oid('2.5.4.3');
const OID_O = oid('2.5.4.10');
const EMPTY_NAME = sequence();

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? sequence(oid(id), boolean(true), octetString(value))
    : sequence(oid(id), octetString(value));
}

// Key usage bits are numbered from the most significant bit of the first byte;
// DER drops trailing zero bits, hence the unused-bit counts.
const KEY_USAGE_CA = extension(ExtensionOids.KEY_USAGE, true, bitString(Uint8Array.of(0x06), 1)); // keyCertSign(5) | cRLSign(6)
const KEY_USAGE_LEAF = extension(ExtensionOids.KEY_USAGE, true, bitString(Uint8Array.of(0xa0), 5)); // digitalSignature(0) | keyEncipherment(2)
const EXT_KEY_USAGE_LEAF = extension(
  ExtensionOids.EXT_KEY_USAGE,
  false,
  sequence(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2')), // serverAuth, clientAuth
);
const BASIC_CONSTRAINTS_LEAF = extension(ExtensionOids.BASIC_CONSTRAINTS, true, sequence());
const BASIC_CONSTRAINTS_CA = extension(ExtensionOids.BASIC_CONSTRAINTS, true, sequence(boolean(true)));

function invalid(message: string): MeshError {
  return new MeshError(ErrorCodes.INVALID_ARGUMENT, message);
}

/** DER Name with O then CN, each in its own RDN; empty when neither is given. */
export function encodeName(name: NameSpec): Buffer {
  const rdns: Buffer[] = [];
  if (name.organization !== undefined) rdns.push(set(sequence(OID_O, utf8String(name.organization))));
  if (name.commonName !== undefined) rdns.push(set(sequence(OID_CN, utf8String(name.commonName))));
  return rdns.length ? sequence(...rdns) : EMPTY_NAME;
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function subjectKeyIdOf(spki: Buffer): Buffer {
  return createHash('sha1').update(readSpkiKeyBits(spki)).digest();
}

/** 16 random bytes with the top bit cleared and a non-zero first byte, so the DER INTEGER is positive and exactly 16 bytes. */
export function randomSerial(): Buffer {
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f || 0x01;
  return serial;
}

/** SubjectPublicKeyInfo header of an uncompressed P-256 point: id-ecPublicKey, prime256v1, BIT STRING of 66 bytes. */
export const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');

/**
 * SPKI DER of a P-256 public key. Assembled from the JWK coordinates
 * because `export({ type: 'spki' })` costs ~100 µs a call on Node 20, four
 * times a whole signature, while the JWK export is cheap.
 */
export function p256Spki(publicKey: KeyObject): Buffer {
  const { x, y } = publicKey.export({ format: 'jwk' });
  const xb = Buffer.from(x ?? '', 'base64url');
  const yb = Buffer.from(y ?? '', 'base64url');
  if (xb.length !== 32 || yb.length !== 32) return publicKey.export({ type: 'spki', format: 'der' });
  return Buffer.concat([P256_SPKI_PREFIX, Uint8Array.of(0x04), xb, yb], 91);
}

/** Throws unless `key` is an ECDSA P-256 key of the given type. */
export function assertP256(key: KeyObject, type: 'private' | 'public', what: string): void {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.type !== type || key.asymmetricKeyType !== 'ec' || curve !== 'prime256v1') {
    const actual =
      key.type === 'secret'
        ? 'a secret key'
        : `a ${key.type} ${key.asymmetricKeyType ?? ''} ${curve ?? ''} key`;
    throw new MeshError(
      ErrorCodes.PKI,
      `${what} must be a ${type} ECDSA P-256 key, got ${actual.replace(/ +/g, ' ')}`,
    );
  }
}

function subjectAltName(spec: CertificateSpec, subjectEmpty: boolean): Buffer | undefined {
  const names: Buffer[] = [];
  // GeneralName: uniformResourceIdentifier [6] and dNSName [2], both IMPLICIT IA5String.
  for (const uri of spec.uris ?? []) names.push(implicit(6, ia5Bytes(uri)));
  for (const dns of spec.dnsNames ?? []) names.push(implicit(2, ia5Bytes(dns)));
  if (!names.length) {
    if (subjectEmpty) throw invalid('a certificate with an empty subject needs a subjectAltName');
    return undefined;
  }
  // RFC 5280 4.2.1.6: the SAN is critical when it is the only identity.
  return extension(ExtensionOids.SUBJECT_ALT_NAME, subjectEmpty, sequence(...names));
}

function checkSpec(spec: CertificateSpec): void {
  if (!(spec.notAfter.getTime() > spec.notBefore.getTime()))
    throw invalid('notAfter must be after notBefore');
  if (spec.pathLength !== undefined) {
    if (!spec.isCa) throw invalid('pathLength is only valid on a CA certificate');
    if (!Number.isSafeInteger(spec.pathLength) || spec.pathLength < 0)
      throw invalid('pathLength must be >= 0');
  }
  for (const name of [...(spec.uris ?? []), ...(spec.dnsNames ?? [])]) {
    if (!name || name.length > 2048) throw invalid(`bad subjectAltName entry ${JSON.stringify(name)}`);
  }
}

/**
 * Builds the certificate described by `spec`, signed by `issuerKey`
 * (an ECDSA P-256 private key), and returns its DER. The caller vouches
 * for the identity in the spec; this only encodes it.
 */
export function buildCertificate(spec: CertificateSpec, issuerKey: KeyObject): Buffer {
  checkSpec(spec);
  assertP256(issuerKey, 'private', 'issuer key');
  const subject = encodeName(spec.subject);
  const subjectEmpty = subject === EMPTY_NAME;
  const extensions: Buffer[] = [
    spec.isCa
      ? spec.pathLength === undefined
        ? BASIC_CONSTRAINTS_CA
        : extension(
            ExtensionOids.BASIC_CONSTRAINTS,
            true,
            sequence(boolean(true), integerFromNumber(spec.pathLength)),
          )
      : BASIC_CONSTRAINTS_LEAF,
    spec.isCa ? KEY_USAGE_CA : KEY_USAGE_LEAF,
  ];
  if (!spec.isCa) extensions.push(EXT_KEY_USAGE_LEAF);
  extensions.push(
    extension(ExtensionOids.SUBJECT_KEY_ID, false, octetString(subjectKeyIdOf(spec.subjectPublicKey))),
  );
  if (spec.authorityKeyId) {
    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
    extensions.push(
      extension(ExtensionOids.AUTHORITY_KEY_ID, false, sequence(implicit(0, spec.authorityKeyId))),
    );
  }
  const san = subjectAltName(spec, subjectEmpty);
  if (san) extensions.push(san);

  const tbs = sequence(
    VERSION_3,
    integerFromBytes(spec.serial ?? randomSerial()),
    ECDSA_WITH_SHA256,
    spec.issuerName,
    sequence(x509Time(spec.notBefore), x509Time(spec.notAfter)),
    subject,
    spec.subjectPublicKey,
    explicit(3, sequence(...extensions)),
  );
  const signature = sign('sha256', tbs, issuerKey);
  return sequence(tbs, ECDSA_WITH_SHA256, bitString(signature));
}
