/**
 * Refusals on the zone's gRPC services: a gRPC status code plus a message
 * that names the reason, built from MeshErrors where one exists so REST and
 * gRPC say the same thing.
 */

import { status, type StatusObject } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import { ErrorCodes, isMeshError, type ErrorCode } from '../core/errors.js';

/** An error that carries the gRPC status to end a call with. */
export class GrpcRefusal extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'GrpcRefusal';
  }

  /** What grpc-js wants for `callback(err)` / `call.emit('error', …)`. */
  toStatus(): Partial<StatusObject> & { code: status; details: string } {
    return { code: this.code, details: this.message, metadata: new Metadata() };
  }
}

const statusByMeshCode: Partial<Record<ErrorCode, status>> = {
  [ErrorCodes.TOKEN_INVALID]: status.UNAUTHENTICATED,
  [ErrorCodes.UNAUTHENTICATED]: status.UNAUTHENTICATED,
  [ErrorCodes.FORBIDDEN]: status.PERMISSION_DENIED,
  [ErrorCodes.INVALID_ARGUMENT]: status.INVALID_ARGUMENT,
  [ErrorCodes.PKI]: status.INVALID_ARGUMENT,
  [ErrorCodes.VALIDATION]: status.INVALID_ARGUMENT,
  [ErrorCodes.UNAVAILABLE]: status.UNAVAILABLE,
  [ErrorCodes.STORE_UNAVAILABLE]: status.UNAVAILABLE,
  [ErrorCodes.CLOSED]: status.UNAVAILABLE,
  [ErrorCodes.NOT_FOUND]: status.NOT_FOUND,
  [ErrorCodes.RESOURCE_EXHAUSTED]: status.RESOURCE_EXHAUSTED,
};

/** Any thrown value as a refusal; unknown errors become INTERNAL without leaking details. */
export function toRefusal(err: unknown): GrpcRefusal {
  if (err instanceof GrpcRefusal) return err;
  if (isMeshError(err)) return new GrpcRefusal(statusByMeshCode[err.code] ?? status.INTERNAL, err.message);
  return new GrpcRefusal(status.INTERNAL, 'internal error');
}
