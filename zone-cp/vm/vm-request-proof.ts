/**
 * How an enrolled VM proves itself on the zone REST API (heartbeat, leave)
 * after its join token is spent: with its current workload certificate and
 * a signature by that certificate's key over the request, so the REST port
 * needs no client-certificate TLS (it may sit behind an operator's TLS
 * certificate). The headers and the signed text are core/vm/vm-request-proof.ts's.
 * The zone accepts a leaf issued by its CA (current or previous), valid
 * now, not revoked, signed within five minutes of its own clock.
 */

import { X509Certificate, verify, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { pemToDerList } from '../../core/pki/pem.js';
import { parseSpiffeId } from '../../core/pki/spiffe.js';
import type { CertificateAuthority } from '../../core/pki/ca.js';
import {
  CHAIN_HEADER,
  PROOF_HEADER,
  PROOF_MAX_SKEW_SECONDS,
  proofText,
} from '../../core/vm/vm-request-proof.js';

const MAX_CHAIN_HEADER = 16 * 1024;

export interface ProvenVm {
  namespace: string;
  serviceAccount: string;
  spiffeId: string;
  /** Upper-case hex, as X509Certificate shows it. */
  serial: string;
  notAfter: Date;
}

export interface ProofVerifierDeps {
  zone: string;
  /** The zone's CA now and the one before a rotation. */
  issuers: () => readonly CertificateAuthority[];
  isRevoked: (serial: string) => boolean;
}

function unauthenticated(message: string): MeshError {
  return new MeshError(ErrorCodes.UNAUTHENTICATED, message);
}

export class ProofVerifier {
  private readonly issuerKeys = new Map<string, KeyObject>();

  constructor(private readonly deps: ProofVerifierDeps) {}

  /** The VM a request comes from, or UNAUTHENTICATED / FORBIDDEN naming what is wrong. */
  verify(req: IncomingMessage, body: Buffer, now = new Date()): ProvenVm {
    const proofHeader = req.headers[PROOF_HEADER];
    const chainHeader = req.headers[CHAIN_HEADER];
    if (typeof proofHeader !== 'string' || typeof chainHeader !== 'string') {
      throw unauthenticated(
        `this endpoint takes the VM's certificate proof (${PROOF_HEADER} and ${CHAIN_HEADER} headers), as meshfed vm-agent sends it`,
      );
    }
    if (chainHeader.length > MAX_CHAIN_HEADER) throw unauthenticated(`${CHAIN_HEADER} is too long`);
    const match = /^v1\s+t=(\d{1,12})\s+sig=([A-Za-z0-9_-]{16,200})$/.exec(proofHeader.trim());
    if (!match?.[1] || !match[2]) {
      throw unauthenticated(`malformed ${PROOF_HEADER}: expected "v1 t=<seconds> sig=<base64url>"`);
    }
    const time = Number(match[1]);
    const skew = Math.abs(now.getTime() / 1000 - time);
    if (skew > PROOF_MAX_SKEW_SECONDS) {
      throw unauthenticated(
        `the request was signed ${Math.round(skew)} s away from the zone's clock (at most ${PROOF_MAX_SKEW_SECONDS} s): check the VM's clock`,
      );
    }
    let leaf: X509Certificate;
    try {
      const [der] = pemToDerList(Buffer.from(chainHeader, 'base64').toString('utf8'));
      if (der === undefined) throw new Error('no certificate');
      leaf = new X509Certificate(der);
    } catch (err) {
      throw unauthenticated(`${CHAIN_HEADER} holds no readable certificate: ${(err as Error).message}`);
    }
    const issuer = this.deps.issuers().find((ca) => leaf.verify(this.issuerKey(ca)));
    if (issuer === undefined) {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `the certificate (serial ${leaf.serialNumber}) was not issued by zone ${this.deps.zone}'s CA`,
      );
    }
    const notAfter = new Date(leaf.validTo);
    if (notAfter.getTime() <= now.getTime() || new Date(leaf.validFrom).getTime() > now.getTime()) {
      throw unauthenticated(
        `the certificate (serial ${leaf.serialNumber}) is not valid now (valid ${leaf.validFrom} to ${leaf.validTo}): join again`,
      );
    }
    if (this.deps.isRevoked(leaf.serialNumber)) {
      throw unauthenticated(
        `certificate serial ${leaf.serialNumber} was revoked (the VM left or a newer join replaced it): join again`,
      );
    }
    const signature = Buffer.from(match[2], 'base64url');
    const text = Buffer.from(proofText(req.method ?? 'GET', pathOf(req), time, body));
    let valid: boolean;
    try {
      valid = verify('sha256', text, leaf.publicKey, signature);
    } catch {
      // A signature that is not even DER.
      valid = false;
    }
    if (!valid) throw unauthenticated('the request signature does not verify with the certificate presented');
    const uri = (leaf.subjectAltName ?? '')
      .split(',')
      .map((s) => s.trim())
      .find((s) => s.startsWith('URI:'));
    try {
      const id = parseSpiffeId(uri?.slice(4) ?? '');
      if (id.trustDomain !== issuer.trustDomain) throw new Error(`trust domain ${id.trustDomain}`);
      return {
        namespace: id.namespace,
        serviceAccount: id.serviceAccount,
        spiffeId: uri?.slice(4) ?? '',
        serial: leaf.serialNumber,
        notAfter,
      };
    } catch (err) {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `the certificate carries no usable SPIFFE ID: ${(err as Error).message}`,
      );
    }
  }

  private issuerKey(ca: CertificateAuthority): KeyObject {
    let key = this.issuerKeys.get(ca.fingerprint);
    if (key === undefined) {
      const [der] = pemToDerList(ca.certPem);
      if (der === undefined) throw new MeshError(ErrorCodes.PKI, 'the zone CA has no certificate');
      key = new X509Certificate(der).publicKey;
      this.issuerKeys.set(ca.fingerprint, key);
    }
    return key;
  }
}

/** The request path without the query, as signed. */
function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}
