/** POST /api/v1/tokens and DELETE /api/v1/tokens/{id}: admin-only token management. */

import { ErrorCodes, MeshError } from '../core/errors.js';
import type { Router } from '../core/http/router.js';
import { parseJsonBody, readBody } from '../core/http/body.js';
import { sendJson } from '../core/http/respond.js';
import { principalOf } from '../core/api/api-server.js';
import { parseDuration } from '../core/resource/duration.js';
import type { TokenKind } from '../core/token/token.js';
import { API_TOKEN_KINDS, type TokenService } from './token-service.js';

const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,62}$/;

export function registerTokenRoutes(router: Router, tokens: TokenService): void {
  router
    .add('POST', '/api/v1/tokens', 'write', async (ctx) => {
      requireAdmin(ctx.req);
      const body = parseJsonBody(await readBody(ctx.req, 64 * 1024));
      const request = parseTokenRequest(body);
      const issued = await tokens.issue(request.kind, request.name, request.ttlSeconds);
      sendJson(ctx.res, 201, {
        token: issued.token,
        id: issued.claims.jti,
        kind: issued.claims.kind,
        name: issued.claims.sub,
        ...(issued.claims.exp === undefined
          ? {}
          : { expiresAt: new Date(issued.claims.exp * 1000).toISOString() }),
      });
    })
    .add('DELETE', '/api/v1/tokens/:id', 'write', async (ctx) => {
      requireAdmin(ctx.req);
      const id = ctx.params.id ?? '';
      await tokens.revoke(id);
      sendJson(ctx.res, 200, { id, revoked: true });
    });
}

function requireAdmin(req: Parameters<typeof principalOf>[0]): void {
  if (principalOf(req)?.kind !== 'admin') {
    throw new MeshError(ErrorCodes.FORBIDDEN, 'only an admin token can manage tokens');
  }
}

interface TokenRequest {
  kind: TokenKind;
  name: string;
  ttlSeconds: number | undefined;
}

function parseTokenRequest(body: unknown): TokenRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'expected a JSON object {"kind", "name", "ttl"}');
  }
  const { kind, name, ttl, ...rest } = body as Record<string, unknown>;
  const unknown = Object.keys(rest)[0];
  if (unknown !== undefined) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${unknown}: unknown field`, { field: unknown });
  }
  if (typeof kind !== 'string' || !(API_TOKEN_KINDS as readonly string[]).includes(kind)) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `kind must be one of ${API_TOKEN_KINDS.join(', ')}; got ${JSON.stringify(kind)}`,
      { field: 'kind' },
    );
  }
  const tokenName = name === undefined ? kind : name;
  if (typeof tokenName !== 'string' || !NAME_PATTERN.test(tokenName)) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'name must be 1-63 letters, digits, or . _ @ -', {
      field: 'name',
    });
  }
  let ttlSeconds: number | undefined;
  if (ttl !== undefined) {
    if (typeof ttl !== 'string') {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'ttl must be a duration string such as "24h"', {
        field: 'ttl',
      });
    }
    let ms: number;
    try {
      ms = parseDuration(ttl);
    } catch {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `ttl "${ttl}" is not a duration such as "24h" or "30m"`,
        { field: 'ttl' },
      );
    }
    if (ms < 1000)
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'ttl must be at least 1s', { field: 'ttl' });
    ttlSeconds = Math.floor(ms / 1000);
  }
  return { kind: kind as TokenKind, name: tokenName, ttlSeconds };
}
