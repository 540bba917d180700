/**
 * Real certificates for tests, made with core/pki the way the mesh makes
 * them: one root (global), per-zone intermediates, workload leaves with
 * SPIFFE IDs. Also the odd ones a test needs to prove refusals: a leaf from
 * another trust domain's root, an expired leaf, a zone CP server
 * certificate (DNS SAN `meshfed-zone-cp`, what MDS/CA clients check).
 */

import { createPrivateKey, type KeyObject } from 'node:crypto';
import {
  createRootCa,
  generateKeyPair,
  loadCa,
  type CertificateAuthority,
  type WorkloadCertificate,
} from '../../core/pki/ca.js';
import { derToPem, pemToDerList } from '../../core/pki/pem.js';
import { formatSpiffeId } from '../../core/pki/spiffe.js';
import { buildCertificate, p256Spki } from '../../core/pki/x509-build.js';
import { readCertificate } from '../../core/pki/x509-read.js';

/** What a workload holds: its chain (leaf first), key and the roots it trusts. */
export interface WorkloadCredentials {
  certChainPem: string;
  keyPem: string;
  trustBundlePem: string;
  spiffeId: string;
  notAfter: Date;
}

export interface TestZoneCa {
  zone: string;
  ca: CertificateAuthority;
  /** PKCS#8 PEM of the intermediate's key (tests sign odd certificates with it). */
  keyPem: string;
}

export interface TestMesh {
  trustDomain: string;
  rootPem: string;
  rootKeyPem: string;
  root: CertificateAuthority;
  /** A zone intermediate, created on first use. */
  zone(name: string): TestZoneCa;
  /** A workload leaf signed by `zone`'s intermediate (default zone `zone-a`). */
  workload(options: WorkloadLeafOptions): WorkloadCredentials;
}

export interface WorkloadLeafOptions {
  namespace: string;
  serviceAccount: string;
  zone?: string;
  /** Default 3600. */
  ttlSeconds?: number;
  dnsNames?: string[];
}

/** A mesh PKI: root → zone intermediates → leaves, all ECDSA P-256. */
export function createTestMesh(trustDomain = 'cluster.local'): TestMesh {
  const material = createRootCa({ trustDomain, commonName: `${trustDomain} test root` });
  const root = loadCa(material.certPem, material.keyPem);
  const zones = new Map<string, TestZoneCa>();
  const mesh: TestMesh = {
    trustDomain,
    rootPem: material.certPem,
    rootKeyPem: material.keyPem,
    root,
    zone(name) {
      const existing = zones.get(name);
      if (existing) return existing;
      const { privateKey, publicKey } = generateKeyPair();
      const certPem = root.signIntermediate(publicKey, { name: `${name} CA`, ttlSeconds: 86_400 });
      const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      const zoneCa = { zone: name, ca: loadCa(certPem + root.chainPem, keyPem), keyPem };
      zones.set(name, zoneCa);
      return zoneCa;
    },
    workload(options) {
      const zoneCa = mesh.zone(options.zone ?? 'zone-a');
      const spiffeId = formatSpiffeId({
        trustDomain,
        namespace: options.namespace,
        serviceAccount: options.serviceAccount,
      });
      const { privateKey, publicKey } = generateKeyPair();
      const cert = zoneCa.ca.signWorkload(publicKey, {
        spiffeId,
        ttlSeconds: options.ttlSeconds ?? 3600,
        ...(options.dnsNames ? { dnsNames: options.dnsNames } : {}),
      });
      return credentialsOf(cert, privateKey, material.certPem, spiffeId);
    },
  };
  return mesh;
}

function credentialsOf(
  cert: WorkloadCertificate,
  privateKey: KeyObject,
  trustBundlePem: string,
  spiffeId: string,
): WorkloadCredentials {
  return {
    certChainPem: cert.chainPem,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    trustBundlePem,
    spiffeId,
    notAfter: cert.notAfter,
  };
}

/**
 * A leaf that expired an hour ago, signed by `zone`'s real intermediate: the
 * chain verifies, only the validity window is wrong.
 */
export function expiredWorkload(
  mesh: TestMesh,
  options: { namespace: string; serviceAccount: string; zone?: string },
): WorkloadCredentials {
  const zoneCa = mesh.zone(options.zone ?? 'zone-a');
  const spiffeId = formatSpiffeId({
    trustDomain: mesh.trustDomain,
    namespace: options.namespace,
    serviceAccount: options.serviceAccount,
  });
  const [issuerDer] = pemToDerList(zoneCa.ca.certPem);
  if (!issuerDer) throw new Error('zone CA has no certificate');
  const issuer = readCertificate(issuerDer);
  const { privateKey, publicKey } = generateKeyPair();
  const now = Date.now();
  const der = buildCertificate(
    {
      subject: {},
      issuerName: Buffer.from(issuer.subject),
      notBefore: new Date(now - 2 * 3_600_000),
      notAfter: new Date(now - 3_600_000),
      subjectPublicKey: p256Spki(publicKey),
      isCa: false,
      uris: [spiffeId],
    },
    createPrivateKey(zoneCa.keyPem),
  );
  const certPem = derToPem(der);
  return {
    certChainPem: certPem + zoneCa.ca.chainPem,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    trustBundlePem: mesh.rootPem,
    spiffeId,
    notAfter: new Date(now - 3_600_000),
  };
}

/**
 * The certificate a zone CP serves MDS and CA with: a leaf with the DNS SAN
 * `meshfed-zone-cp` that MdsClient and the CA client check.
 */
export function zoneCpServerCredentials(mesh: TestMesh, zone = 'zone-a'): WorkloadCredentials {
  return mesh.workload({
    namespace: 'meshfed-system',
    serviceAccount: `zone-cp-${zone}`,
    zone,
    dnsNames: ['meshfed-zone-cp', 'localhost'],
  });
}
