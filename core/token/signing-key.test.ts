import { describe, expect, it } from '@jest/globals';
import { generateKeyPairSync } from 'node:crypto';
import { ErrorCodes, isMeshError } from '../errors.js';
import {
  exportPublicKeyPem,
  exportSigningKeyPem,
  generateSigningKey,
  importPublicKeyPem,
  importSigningKeyPem,
  signingKeyId,
} from './signing-key.js';
import { TokenIssuer, TokenVerifier } from './token.js';

describe('signing keys', () => {
  it('round-trips through PEM and still signs and verifies tokens', () => {
    const { privateKey, publicKey } = generateSigningKey();
    const privatePem = exportSigningKeyPem(privateKey);
    const publicPem = exportPublicKeyPem(publicKey);
    expect(privatePem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(publicPem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    const { token } = new TokenIssuer(importSigningKeyPem(privatePem)).issue({ kind: 'admin', sub: 'a' });
    expect(new TokenVerifier([importPublicKeyPem(publicPem)], () => false).verify(token).sub).toBe('a');
    // The public half can be taken from the private PEM as well.
    expect(exportPublicKeyPem(importPublicKeyPem(privatePem))).toBe(publicPem);
  });

  it('derives the same key id from either half, different ids for different keys', () => {
    const a = generateSigningKey();
    const b = generateSigningKey();
    expect(signingKeyId(a.privateKey)).toBe(signingKeyId(a.publicKey));
    expect(signingKeyId(a.publicKey)).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(signingKeyId(a.publicKey)).not.toBe(signingKeyId(b.publicKey));
  });

  it('rejects garbage and non-P-256 keys with MeshError(PKI)', () => {
    const rsaPem = generateKeyPairSync('rsa', { modulusLength: 1024 })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    const p384Pem = generateKeyPairSync('ec', { namedCurve: 'P-384' })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    const cases: [() => unknown, RegExp][] = [
      [() => importSigningKeyPem('nope'), /not a valid private key PEM/],
      [() => importPublicKeyPem('nope'), /not a valid public key PEM/],
      [() => importSigningKeyPem(rsaPem), /must be an ECDSA P-256 key, got rsa/],
      [() => importSigningKeyPem(p384Pem), /got ec secp384r1/],
    ];
    for (const [fn, message] of cases) {
      let caught: unknown;
      try {
        fn();
      } catch (err) {
        caught = err;
      }
      expect(isMeshError(caught, ErrorCodes.PKI)).toBe(true);
      expect((caught as Error).message).toMatch(message);
    }
  });
});
