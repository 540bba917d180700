/**
 * ES256 signing keys for meshfed tokens: generation and PEM round trips.
 * Imports check the key is ECDSA P-256 up front, so a wrong key fails at
 * startup rather than on the first token.
 */

import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError } from '../errors.js';
import { generateP256KeyPair } from '../pki/keygen.js';

export interface SigningKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** Throws MeshError(PKI) unless `key` is an ECDSA P-256 key (either half). */
export function assertP256(key: KeyObject, what: string): void {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    const actual = [key.asymmetricKeyType ?? key.type, key.asymmetricKeyDetails?.namedCurve]
      .filter(Boolean)
      .join(' ');
    throw new MeshError(ErrorCodes.PKI, `${what} must be an ECDSA P-256 key, got ${actual}`);
  }
}

/** A fresh ECDSA P-256 key pair for signing tokens. */
export function generateSigningKey(): SigningKeyPair {
  return generateP256KeyPair();
}

/** PKCS#8 PEM of a signing key. */
export function exportSigningKeyPem(privateKey: KeyObject): string {
  assertP256(privateKey, 'signing key');
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** SPKI PEM of a verification key. */
export function exportPublicKeyPem(publicKey: KeyObject): string {
  const key = publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey;
  assertP256(key, 'verification key');
  return key.export({ type: 'spki', format: 'pem' }).toString();
}

/** Parses a PEM private key and checks it is ECDSA P-256; MeshError(PKI) otherwise. */
export function importSigningKeyPem(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new MeshError(ErrorCodes.PKI, 'signing key is not a valid private key PEM', { cause: err });
  }
  assertP256(key, 'signing key');
  return key;
}

/** Parses a PEM public key (or the public half of a private key PEM) and checks it is ECDSA P-256. */
export function importPublicKeyPem(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new MeshError(ErrorCodes.PKI, 'verification key is not a valid public key PEM', { cause: err });
  }
  assertP256(key, 'verification key');
  return key;
}

/**
 * A short stable id for a key (base64url of the first 12 bytes of the
 * SHA-256 of its SPKI), written as `kid` into tokens so a verifier holding
 * several keys during rotation tries the right one first.
 */
export function signingKeyId(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest().subarray(0, 12).toString('base64url');
}
