import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { buildCsr, readCsr } from './csr.js';
import { isMeshError } from '../errors.js';

function keyPair() {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

describe('CSR', () => {
  it('builds a CSR that OpenSSL verifies and reads back its public key', () => {
    const { privateKey, publicKey } = keyPair();
    const pem = buildCsr(privateKey, publicKey, { commonName: 'zone-a' });
    const dir = mkdtempSync(join(tmpdir(), 'meshfed-csr-'));
    try {
      writeFileSync(join(dir, 'req.pem'), pem);
      const out = execFileSync('openssl', ['req', '-in', join(dir, 'req.pem'), '-noout', '-verify'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      expect(out + '').not.toMatch(/fail/i);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const parsed = readCsr(pem);
    expect(parsed.publicKey.export({ type: 'spki', format: 'der' })).toEqual(
      publicKey.export({ type: 'spki', format: 'der' }),
    );
  });

  it('accepts a CSR made by OpenSSL', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshfed-csr-'));
    try {
      execFileSync('openssl', [
        'ecparam',
        '-name',
        'prime256v1',
        '-genkey',
        '-noout',
        '-out',
        join(dir, 'k.pem'),
      ]);
      const pem = execFileSync(
        'openssl',
        ['req', '-new', '-key', join(dir, 'k.pem'), '-subj', '/CN=x', '-sha256'],
        {
          encoding: 'utf8',
        },
      );
      expect(readCsr(pem).publicKey.asymmetricKeyType).toBe('ec');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a CSR whose signature was made by another key', () => {
    const a = keyPair();
    const b = keyPair();
    // Signed by a's private key but carrying b's public key: possession not proven.
    const forged = buildCsr(a.privateKey, b.publicKey);
    expect(() => readCsr(forged)).toThrow(/does not verify/);
  });

  it('refuses RSA keys and garbage with PKI errors only', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() => buildCsr(rsa.privateKey, rsa.publicKey)).toThrow(/P-256/);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(bytes).toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
        try {
          readCsr(pem);
        } catch (err) {
          expect(isMeshError(err, 'MESHFED_ERR_PKI')).toBe(true);
        }
      }),
    );
    expect(() => readCsr('not a pem')).toThrow(/PEM/);
  });
});
