/** Who is calling a control-plane REST API, and what they may do. */

import type { IncomingMessage } from 'node:http';
import { ErrorCodes, MeshError } from '../errors.js';

export type Access = 'read' | 'write';

export interface Principal {
  /** Token kind: 'admin', 'readonly', 'zone', … */
  kind: string;
  /** Token subject, for audit logs. */
  subject: string;
  /** Token id, for revocation. */
  tokenId: string;
  canWrite: boolean;
}

export interface Authenticator {
  /** Resolves the caller from the request's credentials; throws UNAUTHENTICATED / TOKEN_INVALID. */
  authenticate(req: IncomingMessage): Principal;
}

/** Reads `Authorization: Bearer <token>`; a missing or malformed header is UNAUTHENTICATED. */
export function bearerToken(req: IncomingMessage): string {
  const header = req.headers.authorization;
  if (header === undefined || header === '') {
    throw new MeshError(
      ErrorCodes.UNAUTHENTICATED,
      'missing bearer token: send "Authorization: Bearer <token>"',
    );
  }
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1]) {
    throw new MeshError(
      ErrorCodes.UNAUTHENTICATED,
      'malformed Authorization header: expected "Bearer <token>"',
    );
  }
  return match[1];
}

/** Throws FORBIDDEN unless the principal may perform `access`. */
export function authorize(principal: Principal, access: Access): void {
  if (access === 'write' && !principal.canWrite) {
    throw new MeshError(ErrorCodes.FORBIDDEN, `a ${principal.kind} token cannot make changes`);
  }
}
