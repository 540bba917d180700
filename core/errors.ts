/**
 * One error type for the whole mesh. Callers match on `code`, never on the
 * message; every code is documented in docs/errors.md (a test checks it).
 */

export const ErrorCodes = {
  /** A request or option argument is malformed (bad flag, bad query). */
  INVALID_ARGUMENT: 'MESHFED_ERR_INVALID_ARGUMENT',
  /** A body could not be decoded as YAML or JSON. */
  DECODE: 'MESHFED_ERR_DECODE',
  /** A resource failed schema or semantic validation; `field` names the path. */
  VALIDATION: 'MESHFED_ERR_VALIDATION',
  /** apiVersion/kind names no kind meshfed knows. */
  UNKNOWN_KIND: 'MESHFED_ERR_UNKNOWN_KIND',
  /** The addressed resource does not exist. */
  NOT_FOUND: 'MESHFED_ERR_NOT_FOUND',
  /** Create of a resource that already exists. */
  ALREADY_EXISTS: 'MESHFED_ERR_ALREADY_EXISTS',
  /** A compare-and-set failed: the resourceVersion given is not the current one. */
  CONFLICT: 'MESHFED_ERR_CONFLICT',
  /** A watch asked for a revision the store no longer holds history for: relist. */
  REVISION_TOO_OLD: 'MESHFED_ERR_REVISION_TOO_OLD',
  /** The request body exceeds the size limit. */
  BODY_TOO_LARGE: 'MESHFED_ERR_BODY_TOO_LARGE',
  /** The content type is not one the endpoint accepts. */
  UNSUPPORTED_MEDIA_TYPE: 'MESHFED_ERR_UNSUPPORTED_MEDIA_TYPE',
  /** No valid credentials were presented. */
  UNAUTHENTICATED: 'MESHFED_ERR_UNAUTHENTICATED',
  /** Credentials are valid but do not allow this action. */
  FORBIDDEN: 'MESHFED_ERR_FORBIDDEN',
  /** A token is malformed, forged, expired, revoked or of the wrong kind. */
  TOKEN_INVALID: 'MESHFED_ERR_TOKEN_INVALID',
  /** The store backend failed (I/O, connection lost). */
  STORE_UNAVAILABLE: 'MESHFED_ERR_STORE_UNAVAILABLE',
  /** The store's on-disk data is damaged beyond the torn tail it repairs itself. */
  STORE_CORRUPT: 'MESHFED_ERR_STORE_CORRUPT',
  /** A remote meshfed service (an API server, a control plane) cannot be reached. */
  UNAVAILABLE: 'MESHFED_ERR_UNAVAILABLE',
  /** The object was closed and cannot serve this call. */
  CLOSED: 'MESHFED_ERR_CLOSED',
  /** A certificate, key or CSR could not be parsed or does not match. */
  PKI: 'MESHFED_ERR_PKI',
  /** A configuration file or setting is invalid. */
  CONFIG: 'MESHFED_ERR_CONFIG',
  /** The method is not allowed on this path. */
  METHOD_NOT_ALLOWED: 'MESHFED_ERR_METHOD_NOT_ALLOWED',
  /** An unexpected failure inside meshfed: a bug. */
  INTERNAL: 'MESHFED_ERR_INTERNAL',
  /** Two meshfed components share no protocol version (e.g. a zone CP and global over KDS). */
  UNSUPPORTED_VERSION: 'MESHFED_ERR_UNSUPPORTED_VERSION',
  /** A peer exceeded a rate or queue limit (message flood, a stream it does not read). */
  RESOURCE_EXHAUSTED: 'MESHFED_ERR_RESOURCE_EXHAUSTED',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** HTTP status each code maps to when it crosses a REST boundary. */
const httpStatusByCode: Record<ErrorCode, number> = {
  MESHFED_ERR_INVALID_ARGUMENT: 400,
  MESHFED_ERR_DECODE: 400,
  MESHFED_ERR_VALIDATION: 422,
  MESHFED_ERR_UNKNOWN_KIND: 400,
  MESHFED_ERR_NOT_FOUND: 404,
  MESHFED_ERR_ALREADY_EXISTS: 409,
  MESHFED_ERR_CONFLICT: 409,
  MESHFED_ERR_REVISION_TOO_OLD: 410,
  MESHFED_ERR_BODY_TOO_LARGE: 413,
  MESHFED_ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  MESHFED_ERR_UNAUTHENTICATED: 401,
  MESHFED_ERR_FORBIDDEN: 403,
  MESHFED_ERR_TOKEN_INVALID: 401,
  MESHFED_ERR_STORE_UNAVAILABLE: 503,
  MESHFED_ERR_STORE_CORRUPT: 500,
  MESHFED_ERR_UNAVAILABLE: 503,
  MESHFED_ERR_CLOSED: 503,
  MESHFED_ERR_PKI: 400,
  MESHFED_ERR_CONFIG: 400,
  MESHFED_ERR_METHOD_NOT_ALLOWED: 405,
  MESHFED_ERR_INTERNAL: 500,
  MESHFED_ERR_UNSUPPORTED_VERSION: 400,
  MESHFED_ERR_RESOURCE_EXHAUSTED: 429,
};

export interface MeshErrorOptions {
  /** Path of the offending field, JSON-pointer-like: `spec.http[0].route[1].weight`. */
  field?: string;
  /** Extra machine-readable context (e.g. the document index of a multi-document apply). */
  details?: Record<string, unknown>;
  cause?: unknown;
}

export class MeshError extends Error {
  readonly code: ErrorCode;
  readonly field: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: MeshErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshError';
    this.code = code;
    this.field = options.field;
    this.details = options.details;
  }

  get httpStatus(): number {
    return httpStatusByCode[this.code];
  }

  /** The JSON body every REST endpoint answers errors with. */
  toJSON(): { code: ErrorCode; message: string; field?: string; details?: Record<string, unknown> } {
    return {
      code: this.code,
      message: this.message,
      ...(this.field === undefined ? {} : { field: this.field }),
      ...(this.details === undefined ? {} : { details: this.details }),
    };
  }
}

export function isMeshError(err: unknown, code?: ErrorCode): err is MeshError {
  return err instanceof MeshError && (code === undefined || err.code === code);
}

export function httpStatusOf(code: ErrorCode): number {
  return httpStatusByCode[code];
}
