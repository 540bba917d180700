import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate, createHash, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { ErrorCodes, isMeshError } from '../errors.js';
import { createRootCa, generateKeyPair, loadCa, type CaMaterial, type CertificateAuthority } from './ca.js';
import { derToPem, pemToDerList } from './pem.js';
import { buildCertificate, encodeName, p256Spki } from './x509-build.js';
import { ExtensionOids, readCertificate, readSanUris } from './x509-read.js';

const TD = 'cluster.local';
const pkcs8 = (key: KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }).toString();

function pkiMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isMeshError(err, ErrorCodes.PKI)) return err.message;
    throw err;
  }
  throw new Error('expected a MeshError(PKI)');
}

let dir: string;
let root: CaMaterial;
let rootCa: CertificateAuthority;
let zoneKey: ReturnType<typeof generateKeyPair>;
let intermediatePem: string;
let zoneCa: CertificateAuthority;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'meshfed-pki-'));
  root = createRootCa({ trustDomain: TD });
  rootCa = loadCa(root.certPem, root.keyPem);
  zoneKey = generateKeyPair();
  intermediatePem = rootCa.signIntermediate(zoneKey.publicKey, {
    name: 'meshfed zone east CA',
    ttlSeconds: 86_400,
  });
  zoneCa = loadCa(intermediatePem + rootCa.chainPem, pkcs8(zoneKey.privateKey));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Runs `openssl verify` with strict X.509 checks; returns its exit status and output. */
function opensslVerify(rootPem: string, untrustedPem: string, leafPem: string, purpose: string) {
  const result = spawnSync(
    'openssl',
    [
      'verify',
      '-x509_strict',
      '-purpose',
      purpose,
      '-CAfile',
      write('v-root.pem', rootPem),
      '-untrusted',
      write('v-inter.pem', untrustedPem),
      write('v-leaf.pem', leafPem),
    ],
    { encoding: 'utf8' },
  );
  return { status: result.status, output: result.stdout + result.stderr };
}

describe('createRootCa', () => {
  it('creates a self-signed ECDSA P-256 CA with the trust domain as URI SAN and a pinnable fingerprint', () => {
    const cert = new X509Certificate(root.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.subjectAltName).toBe('URI:spiffe://cluster.local');
    expect(cert.subject).toContain('CN=meshfed root CA');
    expect(root.fingerprint).toBe('sha256:' + createHash('sha256').update(cert.raw).digest('hex'));
    const years = (Date.parse(cert.validTo) - Date.now()) / (365.25 * 86_400_000);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    expect(rootCa.trustDomain).toBe(TD);
    expect(rootCa.fingerprint).toBe(root.fingerprint);
    expect(rootCa.chainPem).toBe(root.certPem);
  });

  it('validates its options', () => {
    expect(pkiMessage(() => createRootCa({ trustDomain: 'Bad Domain' }))).toMatch(/invalid trust domain/);
    expect(() => createRootCa({ trustDomain: TD, ttlDays: 0 })).toThrow(/ttlDays/);
  });
});

describe('loadCa', () => {
  it('rejects a key that does not match the certificate', () => {
    const other = createRootCa({ trustDomain: TD });
    expect(pkiMessage(() => loadCa(root.certPem, other.keyPem))).toBe(
      'CA private key does not match the CA certificate',
    );
  });

  it('rejects a certificate that is not a CA', () => {
    const key = generateKeyPair();
    const leaf = rootCa.signWorkload(key.publicKey, { spiffeId: `spiffe://${TD}/ns/default/sa/web` });
    expect(pkiMessage(() => loadCa(leaf.certPem, pkcs8(key.privateKey)))).toMatch(
      /^certificate URI:spiffe:\/\/cluster.local\/ns\/default\/sa\/web \(serial [0-9A-F]+\) is not a CA/,
    );
  });

  it('rejects an expired CA, saying when it expired', () => {
    const { privateKey, publicKey } = generateKeyPair();
    const subject = { commonName: 'old root' };
    const der = buildCertificate(
      {
        subject,
        issuerName: encodeName(subject),
        notBefore: new Date('2020-01-01T00:00:00Z'),
        notAfter: new Date('2021-01-01T00:00:00Z'),
        subjectPublicKey: publicKey.export({ type: 'spki', format: 'der' }),
        isCa: true,
      },
      privateKey,
    );
    expect(pkiMessage(() => loadCa(derToPem(der), pkcs8(privateKey)))).toBe(
      'CA certificate expired at 2021-01-01T00:00:00.000Z',
    );
    // The clock is injectable, so a live root expires too.
    expect(
      pkiMessage(() => loadCa(root.certPem, root.keyPem, { now: Date.now() + 3651 * 86_400_000 })),
    ).toMatch(/expired at/);
  });

  it.each([
    ['RSA', ['-newkey', 'rsa:2048'], /CA certificate key is rsa; meshfed CAs use ECDSA P-256/],
    [
      'P-384',
      ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'],
      /key is ec secp384r1; meshfed CAs use ECDSA P-256/,
    ],
  ])('rejects a %s CA', (name, keyArgs, message) => {
    const keyPath = join(dir, `${name}.key`);
    const certPath = join(dir, `${name}.crt`);
    execFileSync('openssl', [
      'req', '-x509', ...keyArgs, '-nodes', '-keyout', keyPath, '-out', certPath, '-subj', `/CN=${name} root`,
      '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
    ], { stdio: 'ignore' }); // prettier-ignore
    expect(pkiMessage(() => loadCa(readFileSync(certPath, 'utf8'), readFileSync(keyPath, 'utf8')))).toMatch(
      message,
    );
  });

  it('rejects garbage PEM and a broken chain', () => {
    expect(pkiMessage(() => loadCa('not a pem', root.keyPem))).toMatch(/no PEM CERTIFICATE block/);
    expect(pkiMessage(() => loadCa(root.certPem, 'nope'))).toMatch(/not a valid private key PEM/);
    const stranger = createRootCa({ trustDomain: TD });
    expect(pkiMessage(() => loadCa(intermediatePem + stranger.certPem, pkcs8(zoneKey.privateKey)))).toMatch(
      /chain certificate 1 did not issue certificate 0/,
    );
  });

  it('takes the trust domain from the URI SAN, else the option, and refuses a contradiction', () => {
    const other = createRootCa({ trustDomain: 'mesh.example' });
    expect(loadCa(other.certPem, other.keyPem).trustDomain).toBe('mesh.example');
    expect(pkiMessage(() => loadCa(other.certPem, other.keyPem, { trustDomain: TD }))).toMatch(
      /trust domain mesh.example, not cluster.local/,
    );
    const { privateKey, publicKey } = generateKeyPair();
    const subject = { commonName: 'no san root' };
    const der = buildCertificate(
      {
        subject,
        issuerName: encodeName(subject),
        notBefore: new Date(Date.now() - 1000),
        notAfter: new Date(Date.now() + 86_400_000),
        subjectPublicKey: publicKey.export({ type: 'spki', format: 'der' }),
        isCa: true,
      },
      privateKey,
    );
    expect(loadCa(derToPem(der), pkcs8(privateKey), { trustDomain: 'given.td' }).trustDomain).toBe(
      'given.td',
    );
    expect(loadCa(derToPem(der), pkcs8(privateKey)).trustDomain).toBe('cluster.local');
  });
});

describe('intermediate and workload chain', () => {
  it('signs an intermediate with path length 0 under the root', () => {
    const cert = new X509Certificate(intermediatePem);
    const rootCert = new X509Certificate(root.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.verify(rootCert.publicKey)).toBe(true);
    expect(cert.checkIssued(rootCert)).toBe(true);
    expect(cert.subjectAltName).toBe('URI:spiffe://cluster.local');
    const text = execFileSync(
      'openssl',
      ['x509', '-noout', '-text', '-in', write('i.pem', intermediatePem)],
      {
        encoding: 'utf8',
      },
    );
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(zoneCa.trustDomain).toBe(TD);
    expect(pemToDerList(zoneCa.chainPem)).toHaveLength(2);
  });

  it('issues a workload certificate Node and openssl verify against the root', () => {
    const key = generateKeyPair();
    const spiffeId = `spiffe://${TD}/ns/default/sa/frontend`;
    const issued = zoneCa.signWorkload(key.publicKey, { spiffeId, dnsNames: ['frontend.default.svc'] });
    const leaf = new X509Certificate(issued.certPem);
    expect(leaf.verify(new X509Certificate(intermediatePem).publicKey)).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(leaf.subject ?? '').toBe('');
    expect(leaf.subjectAltName).toBe(`URI:${spiffeId}, DNS:frontend.default.svc`);
    expect(leaf.serialNumber).toBe(issued.serial);
    expect(leaf.checkPrivateKey(key.privateKey)).toBe(true);
    expect(pemToDerList(issued.chainPem)).toHaveLength(3);

    // 1 h lifetime, backdated 1 min for clock skew.
    const fields = readCertificate(leaf.raw);
    expect(fields.notAfter.getTime()).toBe(Math.floor(issued.notAfter.getTime() / 1000) * 1000);
    expect(fields.notAfter.getTime() - fields.notBefore.getTime()).toBeGreaterThanOrEqual(3_659_000);
    expect(fields.notAfter.getTime() - fields.notBefore.getTime()).toBeLessThanOrEqual(3_661_000);
    expect(fields.notBefore.getTime()).toBeLessThan(Date.now() - 55_000);
    const san = fields.extensions.get(ExtensionOids.SUBJECT_ALT_NAME);
    expect(san?.critical).toBe(true);
    expect(readSanUris(san?.value ?? Buffer.alloc(0))).toEqual([spiffeId]);

    for (const purpose of ['sslserver', 'sslclient']) {
      const ok = opensslVerify(root.certPem, intermediatePem, issued.certPem, purpose);
      expect(ok.output).toMatch(/v-leaf\.pem: OK/);
      expect(ok.status).toBe(0);
    }
    const stranger = createRootCa({ trustDomain: TD });
    const bad = opensslVerify(stranger.certPem, intermediatePem, issued.certPem, 'sslserver');
    expect(bad.status).not.toBe(0);
  });

  it('caps a child certificate at its issuer expiry', () => {
    const key = generateKeyPair();
    const issued = zoneCa.signWorkload(key.publicKey, {
      spiffeId: `spiffe://${TD}/ns/default/sa/long`,
      ttlSeconds: 10 * 86_400,
    });
    expect(issued.notAfter.getTime()).toBe(zoneCa.notAfter.getTime());
  });

  it('refuses identities outside its trust domain and bad requests', () => {
    const key = generateKeyPair();
    expect(
      pkiMessage(() => zoneCa.signWorkload(key.publicKey, { spiffeId: 'spiffe://other.td/ns/a/sa/b' })),
    ).toMatch(/outside this CA's trust domain cluster.local/);
    expect(
      pkiMessage(() => zoneCa.signWorkload(key.publicKey, { spiffeId: 'spiffe://cluster.local/ns/a' })),
    ).toMatch(/invalid SPIFFE ID/);
    expect(
      pkiMessage(() => zoneCa.signWorkload(key.privateKey, { spiffeId: `spiffe://${TD}/ns/a/sa/b` })),
    ).toMatch(/workload key must be a public ECDSA P-256 key/);
    expect(() =>
      zoneCa.signWorkload(key.publicKey, { spiffeId: `spiffe://${TD}/ns/a/sa/b`, dnsNames: ['bad name'] }),
    ).toThrow(/invalid DNS name/);
    expect(() =>
      zoneCa.signWorkload(key.publicKey, { spiffeId: `spiffe://${TD}/ns/a/sa/b`, ttlSeconds: 0 }),
    ).toThrow(/ttlSeconds/);
    expect(() => rootCa.signIntermediate(key.publicKey, { name: 'meshfed root CA', ttlSeconds: 60 })).toThrow(
      /issuer's own name/,
    );
  });
});

describe('p256Spki', () => {
  it('matches Node SPKI export byte for byte', () => {
    for (let i = 0; i < 200; i++) {
      const { publicKey } = generateKeyPair();
      expect(p256Spki(publicKey).equals(publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
    }
  });
});

describe('TLS with the issued chain', () => {
  it('completes mutual TLS with leaf+intermediate, each side seeing the peer SPIFFE ID', async () => {
    const serverKey = generateKeyPair();
    const clientKey = generateKeyPair();
    const serverId = `spiffe://${TD}/ns/default/sa/backend`;
    const clientId = `spiffe://${TD}/ns/default/sa/frontend`;
    const serverCert = zoneCa.signWorkload(serverKey.publicKey, { spiffeId: serverId });
    const clientCert = zoneCa.signWorkload(clientKey.publicKey, { spiffeId: clientId });

    let serverSawPeer = '';
    const server = tls.createServer(
      {
        key: pkcs8(serverKey.privateKey),
        cert: serverCert.certPem + intermediatePem,
        ca: root.certPem,
        requestCert: true,
        rejectUnauthorized: true,
      },
      (socket) => {
        serverSawPeer = socket.getPeerCertificate().subjectaltname ?? '';
        socket.end('hello');
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const connect = (clientRoot: string) =>
        new Promise<{ san: string; data: string }>((resolve, reject) => {
          const socket = tls.connect({
            host: '127.0.0.1',
            port,
            key: pkcs8(clientKey.privateKey),
            cert: clientCert.certPem + intermediatePem,
            ca: clientRoot,
            // Workload certificates carry no DNS identity; the mesh checks the SPIFFE ID instead.
            checkServerIdentity: () => undefined,
          });
          let data = '';
          let san = '';
          socket.on('secureConnect', () => {
            san = socket.getPeerCertificate().subjectaltname ?? '';
          });
          socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
          socket.on('end', () => resolve({ san, data }));
          socket.on('error', reject);
        });
      const result = await connect(root.certPem);
      expect(result).toEqual({ san: `URI:${serverId}`, data: 'hello' });
      expect(serverSawPeer).toBe(`URI:${clientId}`);
      await expect(connect(createRootCa({ trustDomain: TD }).certPem)).rejects.toThrow(/certificate/i);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
