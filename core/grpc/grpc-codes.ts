/**
 * gRPC status codes (grpc/doc/statuscodes.md), the numbers every
 * implementation puts in `grpc-status`, with their names for messages.
 */

export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** Name of a status code (`UNAUTHENTICATED`), for messages. */
export function grpcCodeName(code: number): string {
  const entry = Object.entries(GrpcCode).find(([, value]) => value === code);
  return entry?.[0] ?? `status ${code}`;
}

/**
 * What an HTTP status means as a gRPC status, for an answer that carries no
 * grpc-status (grpc/doc/http-grpc-status-mapping.md; Envoy's
 * httpToGrpcStatus is the same table).
 */
export function grpcCodeForHttpStatus(status: number): number {
  switch (status) {
    case 400:
      return GrpcCode.INTERNAL;
    case 401:
      return GrpcCode.UNAUTHENTICATED;
    case 403:
      return GrpcCode.PERMISSION_DENIED;
    case 404:
      return GrpcCode.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcCode.UNAVAILABLE;
    default:
      return GrpcCode.UNKNOWN;
  }
}

/** A call's end: its status code and the server's (or the client's) reason. */
export class GrpcStatusError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`${code} ${grpcCodeName(code)}: ${details}`);
    this.name = 'GrpcStatusError';
  }
}
