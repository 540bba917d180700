/**
 * The proxy's TLS identity: its certificate chain and key, the roots it
 * trusts (the CA's bundle plus the snapshot's roots, two during a root
 * rotation), and the secure contexts built from them once per change —
 * never per connection. A rotation builds new contexts; connections already
 * open keep theirs, so no request fails while certificates change.
 */

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createSecureContext, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { pemToDerList, derToPem } from '../../core/pki/pem.js';
import { parseSpiffeId } from '../../core/pki/spiffe.js';
import { formatIsoTime } from '../../core/utc-format.js';

/** What `ProxyHandle.setCredentials` takes (the CertificateManager's `current()` fits). */
export interface ProxyCredentials {
  /** Leaf first, then intermediates. */
  certChainPem: string;
  /** PKCS#8 (or SEC1) PEM of the leaf's key. */
  keyPem: string;
  /** Roots to trust for peers. */
  trustBundlePem: string;
}

export interface CertificateInfo {
  spiffeId: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  issuer: string;
  fingerprint256: string;
}

const SPIFFE_URI = /URI:(spiffe:\/\/[^,\s]+)/;

/** The SPIFFE ID in a certificate's subjectAltName string (`URI:spiffe://…`), or ''. */
export function spiffeIdOfAltName(altName: string | undefined): string {
  if (altName === undefined) return '';
  const match = SPIFFE_URI.exec(altName);
  return match?.[1] ?? '';
}

/** The verified peer's SPIFFE ID on a TLS socket, or '' when it presented none. */
export function peerSpiffeId(socket: TLSSocket): string {
  const cert: PeerCertificate | undefined = socket.getPeerCertificate(false);
  return spiffeIdOfAltName(cert?.subjectaltname);
}

function pkiError(message: string, cause?: unknown): MeshError {
  return new MeshError(ErrorCodes.PKI, message, cause === undefined ? {} : { cause });
}

function splitPems(text: string, what: string): string[] {
  let ders: Buffer[];
  try {
    ders = pemToDerList(text);
  } catch (err) {
    throw pkiError(`${what} is not PEM`, err);
  }
  if (ders.length === 0) throw pkiError(`${what} holds no certificate`);
  return ders.map((der) => derToPem(der));
}

export class TlsMaterial {
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly principal: string;
  readonly leaf: CertificateInfo;
  readonly chain: CertificateInfo[];
  readonly roots: string[];
  /** The extra roots as given, to tell whether a new snapshot changes them. */
  readonly extraRootsKey: string;
  readonly notAfter: Date;
  /** Contexts for both directions: our chain and key, the roots as CA store. */
  readonly context: SecureContext;
  /** Options `tls.Server.setSecureContext` takes (the server keeps its own context). */
  readonly serverOptions: { key: string; cert: string; ca: string[] };

  private constructor(
    credentials: ProxyCredentials,
    roots: string[],
    extraRoots: readonly string[],
    leaf: X509Certificate,
    chain: X509Certificate[],
  ) {
    this.extraRootsKey = extraRoots.join('\n');
    this.spiffeId = spiffeIdOfAltName(leaf.subjectAltName);
    const id = parseSpiffeId(this.spiffeId);
    this.trustDomain = id.trustDomain;
    this.principal = `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
    this.leaf = infoOf(leaf);
    this.chain = chain.map(infoOf);
    this.roots = roots;
    this.notAfter = new Date(leaf.validTo);
    this.serverOptions = { key: credentials.keyPem, cert: credentials.certChainPem, ca: roots };
    try {
      this.context = createSecureContext({ ...this.serverOptions, minVersion: 'TLSv1.2' });
    } catch (err) {
      throw pkiError(`cannot build a TLS context from the credentials: ${(err as Error).message}`, err);
    }
  }

  /**
   * Checks and loads credentials. `extraRoots` (the snapshot's trust roots)
   * are trusted as well as the bundle.
   * @throws MeshError PKI naming what is wrong (unparsable, expired, no SPIFFE ID, key mismatch).
   */
  static load(credentials: ProxyCredentials, extraRoots: readonly string[] = []): TlsMaterial {
    const chainPems = splitPems(credentials.certChainPem, 'certChainPem');
    const chain = chainPems.map((pem, i) => {
      try {
        return new X509Certificate(pem);
      } catch (err) {
        throw pkiError(`certificate ${i} of certChainPem cannot be parsed`, err);
      }
    });
    const [leaf] = chain;
    if (leaf === undefined) throw pkiError('certChainPem holds no certificate');
    let key;
    try {
      key = createPrivateKey(credentials.keyPem);
    } catch (err) {
      throw pkiError('keyPem is not a private key', err);
    }
    if (!leaf.checkPrivateKey(key)) throw pkiError('keyPem does not match the leaf certificate');
    if (new Date(leaf.validTo).getTime() <= Date.now())
      throw pkiError(`the certificate expired at ${leaf.validTo}`);
    const spiffeId = spiffeIdOfAltName(leaf.subjectAltName);
    if (spiffeId === '') throw pkiError('the leaf certificate carries no spiffe:// URI SAN');
    try {
      parseSpiffeId(spiffeId);
    } catch (err) {
      throw pkiError(`the leaf's SPIFFE ID is invalid: ${(err as Error).message}`, err);
    }
    const roots = [
      ...new Set([
        ...splitPems(credentials.trustBundlePem, 'trustBundlePem'),
        ...extraRoots.flatMap((r) => splitPems(r, 'trust root')),
      ]),
    ];
    return new TlsMaterial(credentials, roots, extraRoots, leaf, chain);
  }
}

function infoOf(cert: X509Certificate): CertificateInfo {
  return {
    spiffeId: spiffeIdOfAltName(cert.subjectAltName),
    serial: cert.serialNumber,
    notBefore: formatIsoTime(Date.parse(cert.validFrom)),
    notAfter: formatIsoTime(Date.parse(cert.validTo)),
    issuer: cert.issuer.replace(/\n/g, ', '),
    fingerprint256: cert.fingerprint256,
  };
}
