/**
 * @grpc/grpc-js clients of a zone CP for tests and benchmarks that call its
 * services directly (raw MDS streams, the CA at high rates): the same TLS,
 * server name and credentials the workload side's own channel uses
 * (core/ca/zone-channel.ts), in grpc-js's terms.
 */

import { credentials, Metadata, type ChannelCredentials } from '@grpc/grpc-js';
import {
  checkZoneServerIdentity,
  ZONE_CP_SERVER_NAME,
  type ZoneCredential,
} from '../../core/ca/zone-channel.js';

/** Channel options: TLS names the server `meshfed-zone-cp` whatever address is dialled. */
export function grpcJsZoneOptions(): Record<string, string | number> {
  return {
    'grpc.ssl_target_name_override': ZONE_CP_SERVER_NAME,
    'grpc.default_authority': ZONE_CP_SERVER_NAME,
  };
}

/** TLS to the zone CP, trusting only `caPem`; with a certificate credential, also mTLS. */
export function grpcJsZoneCredentials(caPem: string, credential?: ZoneCredential): ChannelCredentials {
  const verify = { checkServerIdentity: checkZoneServerIdentity };
  if (credential !== undefined && 'certPem' in credential) {
    return credentials.createSsl(
      Buffer.from(caPem),
      Buffer.from(credential.keyPem),
      Buffer.from(credential.certPem),
      verify,
    );
  }
  return credentials.createSsl(Buffer.from(caPem), null, null, verify);
}

/** Call metadata carrying a token credential (empty for a certificate credential). */
export function grpcJsZoneMetadata(credential?: ZoneCredential): Metadata {
  const metadata = new Metadata();
  if (credential !== undefined && 'token' in credential) {
    metadata.set('authorization', `Bearer ${credential.token}`);
  }
  return metadata;
}
