/**
 * How a workload-side client (proxy, gateway, VM agent) talks to its zone
 * control plane's gRPC server (MDS + CA on one TLS port): the zone's trust
 * bundle is pinned, the caller proves itself with a bearer token in
 * metadata or with its current workload certificate (mTLS), and gRPC
 * failures come back as MeshErrors with the zone's reason.
 */

import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { ErrorCodes, MeshError, type ErrorCode } from '../errors.js';
import { GrpcChannel, type GrpcChannelOptions, type GrpcMetadata } from '../grpc/grpc-channel.js';
import { GrpcCode, grpcCodeName } from '../grpc/grpc-codes.js';

/**
 * DNS name every zone CP server certificate carries. Workload certificates
 * never do (the CA ignores what a CSR asks for), so a workload cannot pose
 * as its control plane even though both chain to the same root.
 */
export const ZONE_CP_SERVER_NAME = 'meshfed-zone-cp';

/** A bearer token (proxy, Kubernetes ServiceAccount or VM token), or the caller's current certificate. */
export type ZoneCredential = { token: string } | { certPem: string; keyPem: string };

/**
 * The server-identity check of a zone CP connection. TLS names the server
 * `meshfed-zone-cp` (SNI and this check) whatever address is dialled, since
 * proxies usually dial an IP; a certificate valid for the dialled name passes too.
 */
export function checkZoneServerIdentity(host: string, cert: PeerCertificate): Error | undefined {
  const standard = checkServerIdentity(host, cert);
  if (standard === undefined) return undefined;
  const names = (cert.subjectaltname ?? '').split(',').map((s) => s.trim());
  if (names.includes(`DNS:${ZONE_CP_SERVER_NAME}`)) return undefined;
  return new Error(`the server at ${host} is not a meshfed zone control plane (${standard.message})`);
}

/** A gRPC channel to the zone CP at `address`, trusting only `caPem`; with a certificate credential, mTLS. */
export function zoneChannel(
  address: string,
  caPem: string,
  credential: ZoneCredential | undefined,
  options: Pick<
    GrpcChannelOptions,
    'keepaliveMs' | 'keepaliveTimeoutMs' | 'connectTimeoutMs' | 'maxReceiveMessageBytes'
  > = {},
): GrpcChannel {
  return new GrpcChannel({
    address,
    tls: {
      ca: caPem,
      ...(credential !== undefined && 'certPem' in credential
        ? { cert: credential.certPem, key: credential.keyPem }
        : {}),
      servername: ZONE_CP_SERVER_NAME,
      checkServerIdentity: checkZoneServerIdentity,
    },
    authority: ZONE_CP_SERVER_NAME,
    ...options,
  });
}

/** Call metadata carrying a token credential (empty for a certificate credential). */
export function zoneCallMetadata(credential?: ZoneCredential): GrpcMetadata {
  return credential !== undefined && 'token' in credential
    ? { authorization: `Bearer ${credential.token}` }
    : {};
}

const codeByStatus: Partial<Record<number, ErrorCode>> = {
  [GrpcCode.UNAUTHENTICATED]: ErrorCodes.UNAUTHENTICATED,
  [GrpcCode.PERMISSION_DENIED]: ErrorCodes.FORBIDDEN,
  [GrpcCode.INVALID_ARGUMENT]: ErrorCodes.INVALID_ARGUMENT,
  [GrpcCode.FAILED_PRECONDITION]: ErrorCodes.CONFIG,
  [GrpcCode.UNAVAILABLE]: ErrorCodes.UNAVAILABLE,
  [GrpcCode.DEADLINE_EXCEEDED]: ErrorCodes.UNAVAILABLE,
  [GrpcCode.CANCELLED]: ErrorCodes.CLOSED,
  [GrpcCode.NOT_FOUND]: ErrorCodes.NOT_FOUND,
  [GrpcCode.RESOURCE_EXHAUSTED]: ErrorCodes.UNAVAILABLE,
};

/** A gRPC failure as a MeshError; `details.grpcStatus` keeps the gRPC code for callers that branch on it. */
export function meshErrorFromGrpc(
  err: { code: number; details: string; message: string },
  what: string,
): MeshError {
  const code = codeByStatus[err.code] ?? ErrorCodes.INTERNAL;
  const reason = err.details || err.message;
  return new MeshError(code, `${what}: ${grpcCodeName(err.code)}: ${reason}`, {
    details: { grpcStatus: err.code, grpcStatusName: grpcCodeName(err.code) },
    cause: err,
  });
}
