/**
 * POST /api/v1/tokens and DELETE /api/v1/tokens/{id}: admin-only token
 * management. Which kinds a server issues, and what each needs besides a
 * name, is a table the server passes in: the global CP issues admin,
 * readonly and zone tokens; a zone CP issues proxy and vm tokens.
 */

import { ErrorCodes, MeshError } from '../errors.js';
import type { Router } from '../http/router.js';
import { parseJsonBody, readBody } from '../http/body.js';
import { sendJson } from '../http/respond.js';
import { principalOf } from './api-server.js';
import { parseDuration } from '../resource/duration.js';
import type { TokenKind } from '../token/token.js';
import type { IssueOptions, TokenService } from '../auth/token-service.js';
import { formatIsoTime } from '../utc-format.js';

/** How one token kind is requested. */
export interface TokenKindSpec {
  kind: TokenKind;
  /**
   * Turns the request's extra fields (everything but kind, name, ttl) into
   * the token's zone/ext claims, throwing INVALID_ARGUMENT naming a bad or
   * missing field. May check the store (e.g. that a WorkloadGroup exists).
   */
  claims?: (
    fields: Record<string, unknown>,
  ) => Promise<Pick<IssueOptions, 'zone' | 'ext'>> | Pick<IssueOptions, 'zone' | 'ext'>;
  /** Extra fields this kind accepts; any other field is refused. */
  fields?: readonly string[];
}

const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,62}$/;

export function registerTokenRoutes(
  router: Router,
  tokens: TokenService,
  kinds: readonly TokenKindSpec[],
): void {
  const specs = new Map(kinds.map((spec) => [spec.kind, spec]));
  router
    .add('POST', '/api/v1/tokens', 'write', async (ctx) => {
      requireAdmin(ctx.req);
      const body = parseJsonBody(await readBody(ctx.req, 64 * 1024));
      const { spec, name, ttlSeconds, fields } = parseTokenRequest(body, specs);
      const claims = (await spec.claims?.(fields)) ?? {};
      const issued = await tokens.issue(spec.kind, name, { ttlSeconds, ...claims });
      sendJson(ctx.res, 201, {
        token: issued.token,
        id: issued.claims.jti,
        kind: issued.claims.kind,
        name: issued.claims.sub,
        ...(issued.claims.zone === undefined ? {} : { zone: issued.claims.zone }),
        ...(issued.claims.exp === undefined ? {} : { expiresAt: formatIsoTime(issued.claims.exp * 1000) }),
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
  spec: TokenKindSpec;
  name: string;
  ttlSeconds: number | undefined;
  fields: Record<string, unknown>;
}

function parseTokenRequest(body: unknown, specs: Map<TokenKind, TokenKindSpec>): TokenRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'expected a JSON object {"kind", "name", "ttl", …}');
  }
  const { kind, name, ttl, ...fields } = body as Record<string, unknown>;
  const spec = typeof kind === 'string' ? specs.get(kind as TokenKind) : undefined;
  if (spec === undefined) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `kind must be one of ${[...specs.keys()].join(', ')} on this server; got ${JSON.stringify(kind)}`,
      { field: 'kind' },
    );
  }
  const unknown = Object.keys(fields).find((field) => !(spec.fields ?? []).includes(field));
  if (unknown !== undefined) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${unknown}: unknown field for a ${spec.kind} token`, {
      field: unknown,
    });
  }
  const tokenName = name === undefined ? spec.kind : name;
  if (typeof tokenName !== 'string' || !NAME_PATTERN.test(tokenName)) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'name must be 1-63 letters, digits, or . _ @ -', {
      field: 'name',
    });
  }
  return { spec, name: tokenName, ttlSeconds: parseTtl(ttl), fields };
}

function parseTtl(ttl: unknown): number | undefined {
  if (ttl === undefined) return undefined;
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
      {
        field: 'ttl',
      },
    );
  }
  if (ms < 1000)
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'ttl must be at least 1s', { field: 'ttl' });
  return Math.floor(ms / 1000);
}
