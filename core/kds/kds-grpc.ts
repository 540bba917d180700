/**
 * gRPC plumbing of KDS shared by both ends: the service definition, the
 * channel options (message size, keepalive), and the mapping between
 * MeshError codes and gRPC statuses so a refusal reads the same on both
 * sides (`MESHFED_ERR_TOKEN_INVALID: token … is revoked`).
 */

import {
  Metadata,
  status as GrpcStatus,
  type ServiceClientConstructor,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { ErrorCodes, MeshError, type ErrorCode } from '../errors.js';
import { loadProto } from '../grpc/proto.js';
import { ERROR_CODE_METADATA, MAX_KDS_MESSAGE_BYTES } from './kds-protocol.js';

/** The generated client constructor of meshfed.kds.v1.GlobalSync. */
export function kdsServiceClient(): ServiceClientConstructor {
  const root = loadProto('kds.proto') as unknown as {
    meshfed: { kds: { v1: { GlobalSync: ServiceClientConstructor } } };
  };
  return root.meshfed.kds.v1.GlobalSync;
}

/** The service definition a server adds. */
export function kdsServiceDefinition(): ServiceDefinition {
  return kdsServiceClient().service;
}

export interface KeepaliveOptions {
  /** Ping the peer after this long without traffic. */
  timeMs: number;
  /** Drop the connection when a ping is not answered within this long. */
  timeoutMs: number;
}

/** Defaults: a half-open connection is noticed within about 40 s. */
export const DEFAULT_KEEPALIVE: KeepaliveOptions = { timeMs: 30_000, timeoutMs: 10_000 };

/** Channel/server options common to both ends. */
export function kdsChannelOptions(keepalive: KeepaliveOptions): Record<string, number | string> {
  return {
    'grpc.max_receive_message_length': MAX_KDS_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_KDS_MESSAGE_BYTES,
    'grpc.keepalive_time_ms': keepalive.timeMs,
    'grpc.keepalive_timeout_ms': keepalive.timeoutMs,
    'grpc.keepalive_permit_without_calls': 1,
  };
}

const grpcCodeOf: Partial<Record<ErrorCode, GrpcStatus>> = {
  MESHFED_ERR_INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  MESHFED_ERR_DECODE: GrpcStatus.INVALID_ARGUMENT,
  MESHFED_ERR_VALIDATION: GrpcStatus.INVALID_ARGUMENT,
  MESHFED_ERR_UNKNOWN_KIND: GrpcStatus.INVALID_ARGUMENT,
  MESHFED_ERR_PKI: GrpcStatus.INVALID_ARGUMENT,
  MESHFED_ERR_NOT_FOUND: GrpcStatus.NOT_FOUND,
  MESHFED_ERR_ALREADY_EXISTS: GrpcStatus.ALREADY_EXISTS,
  MESHFED_ERR_CONFLICT: GrpcStatus.ABORTED,
  MESHFED_ERR_REVISION_TOO_OLD: GrpcStatus.OUT_OF_RANGE,
  MESHFED_ERR_UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  MESHFED_ERR_TOKEN_INVALID: GrpcStatus.UNAUTHENTICATED,
  MESHFED_ERR_FORBIDDEN: GrpcStatus.PERMISSION_DENIED,
  MESHFED_ERR_UNSUPPORTED_VERSION: GrpcStatus.FAILED_PRECONDITION,
  MESHFED_ERR_RESOURCE_EXHAUSTED: GrpcStatus.RESOURCE_EXHAUSTED,
  MESHFED_ERR_STORE_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  MESHFED_ERR_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  MESHFED_ERR_CLOSED: GrpcStatus.UNAVAILABLE,
};

/** The status a server ends a call with for `err`. */
export function grpcStatusOf(err: unknown): { code: GrpcStatus; details: string; metadata: Metadata } {
  const meshErr =
    err instanceof MeshError
      ? err
      : new MeshError(ErrorCodes.INTERNAL, (err as Error | undefined)?.message ?? String(err));
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_METADATA, meshErr.code);
  return {
    code: grpcCodeOf[meshErr.code] ?? GrpcStatus.INTERNAL,
    details: `${meshErr.code}: ${meshErr.message}`,
    metadata,
  };
}

const knownCodes = new Set<string>(Object.values(ErrorCodes));

/** What a client makes of a call's ending status: the MeshError the server sent, or UNAVAILABLE. */
export function meshErrorOfStatus(status: { code: number; details: string; metadata?: Metadata }): MeshError {
  const fromTrailer = status.metadata?.get(ERROR_CODE_METADATA)[0];
  const prefix = /^(MESHFED_ERR_[A-Z_]+): /.exec(status.details);
  const code = typeof fromTrailer === 'string' && knownCodes.has(fromTrailer) ? fromTrailer : prefix?.[1];
  if (code !== undefined && knownCodes.has(code)) {
    const message = prefix === null ? status.details : status.details.slice(prefix[0].length);
    return new MeshError(code as ErrorCode, message, { details: { grpcStatus: status.code } });
  }
  const name = GrpcStatus[status.code] ?? String(status.code);
  return new MeshError(
    status.code === GrpcStatus.UNAUTHENTICATED ? ErrorCodes.UNAUTHENTICATED : ErrorCodes.UNAVAILABLE,
    `KDS stream ended: ${name}: ${status.details}`,
    { details: { grpcStatus: status.code } },
  );
}
