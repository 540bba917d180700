/**
 * The mesh's certificate authorities: the root global holds, the per-zone
 * intermediates it signs, and the workload certificates zones issue.
 *
 * Hot path: `signWorkload` touches no PEM parsing: the CA's key, its
 * subject Name and key identifier are decoded once in `loadCa`.
 */

import { X509Certificate, createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError } from '../errors.js';
import { generateP256KeyPair } from './keygen.js';
import { derToPem, pemToDerList } from './pem.js';
import { parseSpiffeId, trustDomainUri, validateTrustDomain } from './spiffe.js';
import {
  assertP256,
  buildCertificate,
  encodeName,
  p256Spki,
  randomSerial,
  subjectKeyIdOf,
} from './x509-build.js';
import { ExtensionOids, readCertificate, readSanUris, readSubjectKeyId } from './x509-read.js';
import { formatIsoTime } from '../utc-format.js';

/** What `createRootCa` returns: PEMs to store (the key stays in the global control plane) and the pin. */
export interface CaMaterial {
  certPem: string;
  /** PKCS#8 PEM of the CA key. */
  keyPem: string;
  /** `sha256:<hex>` of the certificate DER, the form VMs pin. */
  fingerprint: string;
}

export interface RootCaOptions {
  trustDomain: string;
  /** Default `meshfed root CA`. */
  commonName?: string;
  /** Default 3650. */
  ttlDays?: number;
}

export interface LoadCaOptions {
  /** Used when the CA certificate carries no `spiffe://<td>` URI SAN; default `cluster.local`. Must agree with the SAN if both exist. */
  trustDomain?: string;
  /** Clock for the expiry check, ms since the epoch; default Date.now(). */
  now?: number;
}

export interface IntermediateOptions {
  /** The intermediate's common name, e.g. `meshfed zone east CA`; must differ from the issuer's. */
  name: string;
  ttlSeconds: number;
  /** Write `spiffe://<td>` as a URI SAN so the zone derives its trust domain from the certificate; default true. */
  trustDomainSan?: boolean;
}

export interface WorkloadOptions {
  spiffeId: string;
  /** Default 3600. */
  ttlSeconds?: number;
  dnsNames?: readonly string[];
}

export interface WorkloadCertificate {
  certPem: string;
  /** The leaf followed by the CA's chain: what a workload serves in its TLS handshake. */
  chainPem: string;
  /** Upper-case hex, as `X509Certificate.serialNumber` shows it. */
  serial: string;
  notAfter: Date;
}

const DEFAULT_TRUST_DOMAIN = 'cluster.local';
/** Certificates start a minute in the past so a peer whose clock is slightly behind accepts them. */
const BACKDATE_MS = 60_000;
const DNS_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

function pkiError(message: string, cause?: unknown): MeshError {
  return new MeshError(ErrorCodes.PKI, message, cause === undefined ? {} : { cause });
}

function checkTtl(ttlSeconds: number, what: string): void {
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${what} must be a positive whole number of seconds`);
  }
}

/** The `sha256:<hex>` fingerprint of a certificate's DER. */
export function fingerprintOf(der: Buffer): string {
  return 'sha256:' + createHash('sha256').update(der).digest('hex');
}

/** A fresh ECDSA P-256 key pair (safe to export as JWK: see keygen.ts). */
export function generateKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateP256KeyPair();
}

/** Creates a self-signed root CA for `trustDomain` (URI SAN `spiffe://<td>`, no path length limit). */
export function createRootCa(options: RootCaOptions): CaMaterial {
  validateTrustDomain(options.trustDomain);
  const ttlDays = options.ttlDays ?? 3650;
  if (!Number.isFinite(ttlDays) || ttlDays <= 0) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'ttlDays must be a positive number');
  }
  const commonName = options.commonName ?? 'meshfed root CA';
  if (!commonName) throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'commonName must not be empty');
  const { privateKey, publicKey } = generateKeyPair();
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const subject = { organization: options.trustDomain, commonName };
  const now = Date.now();
  const der = buildCertificate(
    {
      subject,
      issuerName: encodeName(subject),
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + ttlDays * 86_400_000),
      subjectPublicKey: spki,
      isCa: true,
      authorityKeyId: subjectKeyIdOf(spki),
      uris: [trustDomainUri(options.trustDomain)],
    },
    privateKey,
  );
  return {
    certPem: derToPem(der),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    fingerprint: fingerprintOf(der),
  };
}

function parseCertificate(der: Buffer, what: string): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (err) {
    throw pkiError(`${what} is not a valid X.509 certificate`, err);
  }
}

/** Subject, else SAN, else serial: workload certificates have an empty subject (Node then reports undefined). */
function describeCertificate(cert: X509Certificate): string {
  const subject: string | undefined = cert.subject;
  const name = subject ? subject.replace(/\n/g, ', ') : cert.subjectAltName;
  return name ? `${name} (serial ${cert.serialNumber})` : `serial ${cert.serialNumber}`;
}

function keyDescription(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return [key.asymmetricKeyType ?? key.type, curve].filter(Boolean).join(' ');
}

function trustDomainFromSan(value: Buffer | undefined): string | undefined {
  if (!value) return undefined;
  for (const uri of readSanUris(value)) {
    const match = /^spiffe:\/\/([^/]+)$/.exec(uri);
    if (match?.[1] !== undefined) {
      validateTrustDomain(match[1]);
      return match[1];
    }
  }
  return undefined;
}

/**
 * Loads a CA from PEM. `certPem` holds the CA certificate first, then
 * (for an intermediate) its parents up to the root; they become `chainPem`.
 * Rejects with MeshError(PKI) naming the problem: unparsable PEM, a
 * certificate that is not a CA, an expired one, a key other than ECDSA
 * P-256, a key that does not match, or a chain whose links do not verify.
 */
export function loadCa(certPem: string, keyPem: string, options: LoadCaOptions = {}): CertificateAuthority {
  const ders = pemToDerList(certPem);
  const certs = ders.map((der, i) =>
    parseCertificate(der, i === 0 ? 'CA certificate' : `chain certificate ${i}`),
  );
  const [cert] = certs;
  const [der] = ders;
  if (!cert || !der) throw pkiError('no CA certificate');
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw pkiError('CA key is not a valid private key PEM', err);
  }
  if (!cert.ca)
    throw pkiError(`certificate ${describeCertificate(cert)} is not a CA (basicConstraints CA:FALSE)`);
  const fields = readCertificate(der);
  const now = options.now ?? Date.now();
  if (fields.notAfter.getTime() <= now) {
    throw pkiError(`CA certificate expired at ${formatIsoTime(fields.notAfter.getTime())}`);
  }
  const certKey = cert.publicKey;
  if (certKey.asymmetricKeyType !== 'ec' || certKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw pkiError(`CA certificate key is ${keyDescription(certKey)}; meshfed CAs use ECDSA P-256`);
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw pkiError(`CA private key is ${keyDescription(key)}; meshfed CAs use ECDSA P-256`);
  }
  if (!cert.checkPrivateKey(key)) throw pkiError('CA private key does not match the CA certificate');
  for (let i = 0; i + 1 < certs.length; i++) {
    const child = certs[i];
    const parent = certs[i + 1];
    if (child && parent && !(child.checkIssued(parent) && child.verify(parent.publicKey))) {
      throw pkiError(`chain certificate ${i + 1} did not issue certificate ${i}`);
    }
  }

  const sanDomain = trustDomainFromSan(fields.extensions.get(ExtensionOids.SUBJECT_ALT_NAME)?.value);
  if (options.trustDomain !== undefined) validateTrustDomain(options.trustDomain);
  if (sanDomain && options.trustDomain !== undefined && sanDomain !== options.trustDomain) {
    throw pkiError(`CA certificate is for trust domain ${sanDomain}, not ${options.trustDomain}`);
  }
  const skiExt = fields.extensions.get(ExtensionOids.SUBJECT_KEY_ID);
  return new CertificateAuthority({
    key,
    certPem: derToPem(der),
    chainPem: ders.map((d) => derToPem(d)).join(''),
    fingerprint: fingerprintOf(der),
    trustDomain: sanDomain ?? options.trustDomain ?? DEFAULT_TRUST_DOMAIN,
    subject: Buffer.from(fields.subject),
    // Children name the CA by its own SKI when it has one (it may come from another tool).
    keyId: skiExt ? Buffer.from(readSubjectKeyId(skiExt.value)) : subjectKeyIdOf(fields.spki),
    notAfter: fields.notAfter,
  });
}

/** Internal state of a loaded CA; build one with `loadCa`. */
export interface CaState {
  key: KeyObject;
  certPem: string;
  chainPem: string;
  fingerprint: string;
  trustDomain: string;
  subject: Buffer;
  keyId: Buffer;
  notAfter: Date;
}

/** A CA that can sign intermediates and workload certificates. Create with `loadCa`. */
export class CertificateAuthority {
  readonly certPem: string;
  /** This CA's certificate followed by its parents up to the root. */
  readonly chainPem: string;
  readonly fingerprint: string;
  readonly trustDomain: string;
  readonly notAfter: Date;
  readonly #key: KeyObject;
  readonly #subject: Buffer;
  readonly #keyId: Buffer;

  constructor(state: CaState) {
    this.certPem = state.certPem;
    this.chainPem = state.chainPem;
    this.fingerprint = state.fingerprint;
    this.trustDomain = state.trustDomain;
    this.notAfter = state.notAfter;
    this.#key = state.key;
    this.#subject = state.subject;
    this.#keyId = state.keyId;
  }

  /** Validity window starting now (backdated), cut at this CA's own expiry: a child never outlives its issuer. */
  #validity(ttlSeconds: number): { notBefore: Date; notAfter: Date } {
    const now = Date.now();
    const notAfter = Math.min(now + ttlSeconds * 1000, this.notAfter.getTime());
    return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(notAfter) };
  }

  /**
   * Signs a zone intermediate CA (path length 0: it can sign only leaves)
   * for `publicKey`, an ECDSA P-256 public key the zone generated. Returns
   * the certificate PEM; the zone loads it with `loadCa(certPem + chainPem, key)`.
   */
  signIntermediate(publicKey: KeyObject, options: IntermediateOptions): string {
    assertP256(publicKey, 'public', 'intermediate key');
    checkTtl(options.ttlSeconds, 'ttlSeconds');
    if (typeof options.name !== 'string' || !options.name || options.name.length > 64) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'intermediate name must be 1-64 characters');
    }
    const subject = { organization: this.trustDomain, commonName: options.name };
    const subjectName = encodeName(subject);
    if (subjectName.equals(this.#subject)) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `intermediate name ${options.name} is the issuer's own name`,
      );
    }
    const der = buildCertificate(
      {
        subject,
        issuerName: this.#subject,
        ...this.#validity(options.ttlSeconds),
        subjectPublicKey: p256Spki(publicKey),
        isCa: true,
        pathLength: 0,
        authorityKeyId: this.#keyId,
        uris: options.trustDomainSan === false ? [] : [trustDomainUri(this.trustDomain)],
      },
      this.#key,
    );
    return derToPem(der);
  }

  /**
   * Signs a workload certificate: empty subject, the SPIFFE ID as its only
   * URI SAN (critical), serverAuth + clientAuth. The SPIFFE ID must be in
   * this CA's trust domain: a zone cannot mint identities for another.
   */
  signWorkload(publicKey: KeyObject, options: WorkloadOptions): WorkloadCertificate {
    const id = parseSpiffeId(options.spiffeId);
    if (id.trustDomain !== this.trustDomain) {
      throw pkiError(`SPIFFE ID ${options.spiffeId} is outside this CA's trust domain ${this.trustDomain}`);
    }
    assertP256(publicKey, 'public', 'workload key');
    const ttlSeconds = options.ttlSeconds ?? 3600;
    checkTtl(ttlSeconds, 'ttlSeconds');
    for (const dns of options.dnsNames ?? []) {
      if (dns.length > 253 || !DNS_NAME.test(dns)) {
        throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `invalid DNS name ${JSON.stringify(dns)}`);
      }
    }
    const validity = this.#validity(ttlSeconds);
    // The serial is generated here rather than read back from the DER, so we know its hex form.
    const serial = randomSerial();
    const der = buildCertificate(
      {
        subject: {},
        issuerName: this.#subject,
        serial,
        ...validity,
        subjectPublicKey: p256Spki(publicKey),
        isCa: false,
        authorityKeyId: this.#keyId,
        uris: [options.spiffeId],
        ...(options.dnsNames?.length ? { dnsNames: options.dnsNames } : {}),
      },
      this.#key,
    );
    const certPem = derToPem(der);
    return {
      certPem,
      chainPem: certPem + this.chainPem,
      serial: serial.toString('hex').toUpperCase(),
      notAfter: validity.notAfter,
    };
  }
}
