/**
 * The zone's gRPC caller authentication (CA and MDS) with revoked
 * certificates refused: a VM that left, or one replaced by a newer join,
 * can neither renew its certificate nor read its config, even though its
 * certificate still verifies and has not expired. Also the CA's hook for VM
 * join tokens: those are redeemed once at `POST /api/v1/vm/join`, never at
 * the CA, so a join token cannot mint certificates beyond its use count.
 */

import { X509Certificate } from 'node:crypto';
import { status, type Metadata } from '@grpc/grpc-js';
import type { TokenClaims } from '../../core/token/token.js';
import {
  CallerAuthenticator,
  type CallerAuthOptions,
  type CallerIdentity,
  type PeerAuth,
  type VmTokenAuthenticator,
} from '../ca/caller-auth.js';
import { GrpcRefusal } from '../grpc-status.js';
import type { RevokedCertificates } from './vm-revocations.js';

export class RevocationCheckingAuthenticator extends CallerAuthenticator {
  constructor(
    options: CallerAuthOptions,
    private readonly revoked: Pick<RevokedCertificates, 'has'>,
  ) {
    super(options);
  }

  override async authenticate(metadata: Metadata, auth: PeerAuth): Promise<CallerIdentity> {
    const identity = await super.authenticate(metadata, auth);
    const raw = auth.sslPeerCertificate?.raw;
    if (identity.via === 'certificate' && raw !== undefined) {
      const serial = new X509Certificate(raw).serialNumber;
      if (this.revoked.has(serial)) {
        throw new GrpcRefusal(
          status.UNAUTHENTICATED,
          `certificate serial ${serial} was revoked (the VM left the mesh or a newer join replaced it): run meshfed vm-agent join again`,
        );
      }
    }
    return identity;
  }
}

/** Refuses VM join tokens at the CA with what to do instead. */
export const joinTokensNotAtCa: VmTokenAuthenticator = {
  authenticate(claims: TokenClaims): Promise<never> {
    return Promise.reject(
      new GrpcRefusal(
        status.PERMISSION_DENIED,
        `VM join token ${claims.jti} is redeemed with meshfed vm-agent join (POST /api/v1/vm/join), not at the CA; the VM renews with its certificate`,
      ),
    );
  },
};
