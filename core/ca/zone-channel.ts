/**
 * How a workload-side client (proxy, gateway, VM agent) talks to its zone
 * control plane's gRPC server (MDS + CA on one TLS port): the zone's trust
 * bundle is pinned, the caller proves itself with a bearer token in
 * metadata or with its current workload certificate (mTLS), and gRPC
 * failures come back as MeshErrors with the zone's reason.
 */

import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { credentials, Metadata, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { ErrorCodes, MeshError, type ErrorCode } from '../errors.js';

/**
 * DNS name every zone CP server certificate carries. Workload certificates
 * never do (the CA ignores what a CSR asks for), so a workload cannot pose
 * as its control plane even though both chain to the same root.
 */
export const ZONE_CP_SERVER_NAME = 'meshfed-zone-cp';

/** A bearer token (proxy, Kubernetes ServiceAccount or VM token), or the caller's current certificate. */
export type ZoneCredential = { token: string } | { certPem: string; keyPem: string };

/**
 * Channel options for a zone CP connection: TLS names the server
 * `meshfed-zone-cp` (SNI and hostname check) whatever address is dialled,
 * since proxies usually dial an IP.
 */
export function zoneChannelOptions(): Record<string, string | number> {
  return {
    'grpc.ssl_target_name_override': ZONE_CP_SERVER_NAME,
    'grpc.default_authority': ZONE_CP_SERVER_NAME,
  };
}

/** TLS to the zone CP, trusting only `caPem`; with a certificate credential, also mTLS. */
export function zoneChannelCredentials(caPem: string, credential?: ZoneCredential): ChannelCredentials {
  const verify = {
    checkServerIdentity(host: string, cert: PeerCertificate): Error | undefined {
      // Connecting by IP or by a name missing from the certificate is normal
      // (127.0.0.1, a Service VIP): the control-plane name vouches instead.
      const standard = checkServerIdentity(host, cert);
      if (standard === undefined) return undefined;
      const names = (cert.subjectaltname ?? '').split(',').map((s) => s.trim());
      if (names.includes(`DNS:${ZONE_CP_SERVER_NAME}`)) return undefined;
      return new Error(`the server at ${host} is not a meshfed zone control plane (${standard.message})`);
    },
  };
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
export function zoneCallMetadata(credential?: ZoneCredential): Metadata {
  const metadata = new Metadata();
  if (credential !== undefined && 'token' in credential) {
    metadata.set('authorization', `Bearer ${credential.token}`);
  }
  return metadata;
}

const codeByStatus: Partial<Record<number, ErrorCode>> = {
  [status.UNAUTHENTICATED]: ErrorCodes.UNAUTHENTICATED,
  [status.PERMISSION_DENIED]: ErrorCodes.FORBIDDEN,
  [status.INVALID_ARGUMENT]: ErrorCodes.INVALID_ARGUMENT,
  [status.FAILED_PRECONDITION]: ErrorCodes.CONFIG,
  [status.UNAVAILABLE]: ErrorCodes.UNAVAILABLE,
  [status.DEADLINE_EXCEEDED]: ErrorCodes.UNAVAILABLE,
  [status.CANCELLED]: ErrorCodes.CLOSED,
  [status.NOT_FOUND]: ErrorCodes.NOT_FOUND,
  [status.RESOURCE_EXHAUSTED]: ErrorCodes.UNAVAILABLE,
};

/** Name of a gRPC status code (`UNAUTHENTICATED`), for messages. */
export function statusName(code: number): string {
  const entry = Object.entries(status).find(([, value]) => value === code);
  return entry?.[0] ?? `status ${code}`;
}

/** A gRPC failure as a MeshError; `details.grpcStatus` keeps the gRPC code for callers that branch on it. */
export function meshErrorFromGrpc(err: ServiceError, what: string): MeshError {
  const code = codeByStatus[err.code] ?? ErrorCodes.INTERNAL;
  const reason = err.details || err.message;
  return new MeshError(code, `${what}: ${statusName(err.code)}: ${reason}`, {
    details: { grpcStatus: err.code, grpcStatusName: statusName(err.code) },
    cause: err,
  });
}

/** True for a gRPC ServiceError (has a numeric code and details). */
export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'number';
}
