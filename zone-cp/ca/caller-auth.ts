/**
 * Who is calling the zone's gRPC services (CA and MDS), decided from what
 * the caller proved, never from what it asks for:
 *   - a meshfed proxy token signed by this zone (or global) for this zone;
 *   - a Kubernetes ServiceAccount token, checked by TokenReview;
 *   - its current workload certificate (mTLS), issued by this zone's CA;
 *   - a VM join token, through a pluggable hook (issue #8);
 *   - an admin token (only for an east-west gateway's MDS stream).
 */

import { X509Certificate, type KeyObject } from 'node:crypto';
import { status, type Metadata } from '@grpc/grpc-js';
import { ErrorCodes, isMeshError } from '../../core/errors.js';
import type { TokenService } from '../../core/auth/token-service.js';
import { TOKEN_KINDS, type TokenClaims } from '../../core/token/token.js';
import { parseSpiffeId } from '../../core/pki/spiffe.js';
import { GrpcRefusal } from '../grpc-status.js';
import type { ZoneCaKeeper } from './zone-ca-keeper.js';
import type { TokenReviewer } from './token-reviewer.js';

export type CredentialKind = 'proxy-token' | 'kubernetes-token' | 'certificate' | 'vm-token' | 'admin-token';

/** What a caller proved. */
export interface CallerIdentity {
  via: CredentialKind;
  /** Workload identity: absent only for admin tokens. */
  namespace?: string;
  serviceAccount?: string;
  /** The workload a proxy token is bound to (or the pod a Kubernetes token is bound to). */
  workload?: string;
  /** A proxy token issued for an east-west gateway (`role: gateway`). */
  gateway: boolean;
  /** For certificates: when the presented certificate expires. */
  certificateNotAfter?: Date;
  tokenId?: string;
}

/** Hook for VM join tokens (issue #8): answer the identity a valid VM token grants, or throw. */
export interface VmTokenAuthenticator {
  authenticate(
    claims: TokenClaims,
  ): Promise<{ namespace: string; serviceAccount: string; workload?: string }>;
}

export interface CallerAuthOptions {
  zone: string;
  tokens: TokenService;
  keeper: ZoneCaKeeper;
  reviewer?: TokenReviewer;
  vm?: VmTokenAuthenticator;
}

/** The part of grpc-js's AuthContext this needs: the verified peer certificate, if any. */
export interface PeerAuth {
  sslPeerCertificate?: { raw?: Buffer };
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;
const MAX_TOKEN_TEXT = 16 * 1024;

export class CallerAuthenticator {
  private readonly issuerKeys = new Map<string, KeyObject>();

  constructor(private readonly options: CallerAuthOptions) {}

  /** The caller of a call, or a GrpcRefusal (UNAUTHENTICATED / PERMISSION_DENIED) naming why not. */
  async authenticate(metadata: Metadata, auth: PeerAuth): Promise<CallerIdentity> {
    const token = bearerOf(metadata);
    if (token !== undefined) {
      return token.startsWith('mf') ? this.meshfedToken(token) : this.kubernetesToken(token);
    }
    if (auth.sslPeerCertificate?.raw !== undefined) return this.certificate(auth.sslPeerCertificate.raw);
    throw new GrpcRefusal(
      status.UNAUTHENTICATED,
      'no credential: send "authorization: Bearer <token>" or present your current workload certificate',
    );
  }

  private async meshfedToken(token: string): Promise<CallerIdentity> {
    let claims: TokenClaims;
    try {
      claims = this.options.tokens.verify(token, TOKEN_KINDS);
    } catch (err) {
      if (isMeshError(err, ErrorCodes.TOKEN_INVALID)) {
        throw new GrpcRefusal(status.UNAUTHENTICATED, `token refused: ${err.message}`);
      }
      throw err;
    }
    if (claims.kind === 'admin') return { via: 'admin-token', gateway: false, tokenId: claims.jti };
    if (claims.kind !== 'proxy' && claims.kind !== 'vm') {
      throw new GrpcRefusal(status.PERMISSION_DENIED, `a ${claims.kind} token cannot act as a workload`);
    }
    if (claims.zone !== this.options.zone) {
      throw new GrpcRefusal(
        status.PERMISSION_DENIED,
        claims.zone === undefined
          ? `the ${claims.kind} token names no zone; this is zone ${this.options.zone}`
          : `the ${claims.kind} token is for zone ${claims.zone}, this is zone ${this.options.zone}`,
      );
    }
    if (claims.kind === 'vm') {
      if (this.options.vm === undefined) {
        throw new GrpcRefusal(
          status.PERMISSION_DENIED,
          'this zone does not accept VM join tokens (no VM enrollment configured)',
        );
      }
      const granted = await this.options.vm.authenticate(claims);
      return { via: 'vm-token', ...granted, gateway: false, tokenId: claims.jti };
    }
    const ext = claims.ext ?? {};
    return {
      via: 'proxy-token',
      namespace: ext.namespace ?? 'default',
      serviceAccount: ext.serviceAccount ?? 'default',
      workload: ext.workload ?? claims.sub,
      gateway: ext.role === 'gateway',
      tokenId: claims.jti,
    };
  }

  private async kubernetesToken(token: string): Promise<CallerIdentity> {
    if (this.options.reviewer === undefined) {
      throw new GrpcRefusal(
        status.UNAUTHENTICATED,
        'token refused: not a meshfed token, and this zone has no Kubernetes API server to review ServiceAccount tokens',
      );
    }
    try {
      const account = await this.options.reviewer.review(token);
      return {
        via: 'kubernetes-token',
        namespace: account.namespace,
        serviceAccount: account.serviceAccount,
        ...(account.podName === undefined ? {} : { workload: account.podName }),
        gateway: false,
      };
    } catch (err) {
      if (isMeshError(err, ErrorCodes.UNAUTHENTICATED))
        throw new GrpcRefusal(status.UNAUTHENTICATED, err.message);
      if (isMeshError(err, ErrorCodes.FORBIDDEN))
        throw new GrpcRefusal(status.PERMISSION_DENIED, err.message);
      if (isMeshError(err)) throw new GrpcRefusal(status.UNAVAILABLE, err.message);
      throw err;
    }
  }

  /**
   * TLS already checked the chain against the trust bundle and the validity
   * dates (grpc-js reports a peer certificate only when it verified); this
   * also requires that this zone's CA issued it, so a certificate from
   * another zone cannot renew here.
   */
  private certificate(der: Buffer): CallerIdentity {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(der);
    } catch {
      throw new GrpcRefusal(status.UNAUTHENTICATED, 'the client certificate cannot be parsed');
    }
    const issuer = this.options.keeper.issuers.find((ca) =>
      cert.verify(this.issuerKey(ca.fingerprint, ca.certPem)),
    );
    if (issuer === undefined) {
      throw new GrpcRefusal(
        status.PERMISSION_DENIED,
        `the client certificate (serial ${cert.serialNumber}) was not issued by zone ${this.options.zone}'s CA`,
      );
    }
    const notAfter = new Date(cert.validTo);
    if (notAfter.getTime() <= Date.now()) {
      throw new GrpcRefusal(
        status.UNAUTHENTICATED,
        `the client certificate expired at ${notAfter.toISOString()}`,
      );
    }
    const uris = (cert.subjectAltName ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.startsWith('URI:'))
      .map((s) => s.slice(4));
    const [uri] = uris;
    if (uris.length !== 1 || uri === undefined) {
      throw new GrpcRefusal(status.PERMISSION_DENIED, 'the client certificate carries no single SPIFFE ID');
    }
    try {
      const id = parseSpiffeId(uri);
      if (id.trustDomain !== issuer.trustDomain)
        throw new Error(`trust domain ${id.trustDomain} is not ${issuer.trustDomain}`);
      return {
        via: 'certificate',
        namespace: id.namespace,
        serviceAccount: id.serviceAccount,
        gateway: false,
        certificateNotAfter: notAfter,
      };
    } catch (err) {
      throw new GrpcRefusal(
        status.PERMISSION_DENIED,
        `the client certificate's identity is not usable: ${(err as Error).message}`,
      );
    }
  }

  private issuerKey(fingerprint: string, certPem: string): KeyObject {
    let key = this.issuerKeys.get(fingerprint);
    if (key === undefined) {
      key = new X509Certificate(certPem).publicKey;
      this.issuerKeys.set(fingerprint, key);
    }
    return key;
  }
}

function bearerOf(metadata: Metadata): string | undefined {
  const [value] = metadata.get('authorization');
  if (value === undefined) return undefined;
  const text = typeof value === 'string' ? value : value.toString('utf8');
  if (text.length > MAX_TOKEN_TEXT)
    throw new GrpcRefusal(status.UNAUTHENTICATED, 'authorization metadata is too long');
  const match = BEARER.exec(text);
  if (!match?.[1]) {
    throw new GrpcRefusal(
      status.UNAUTHENTICATED,
      'malformed authorization metadata: expected "Bearer <token>"',
    );
  }
  return match[1];
}
