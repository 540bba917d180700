/**
 * Bearer tokens of a control plane: the signing key (kept in the store, so
 * all replicas verify each other's tokens), issuing with a record per token
 * (never the token itself), revocation followed through a store watch, and
 * the admin token file. A zone CP also trusts tokens signed by global's key
 * (`addVerificationKey`), so one admin token works across the mesh.
 */

import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { IncomingMessage } from 'node:http';
import { ErrorCodes, MeshError, isMeshError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Authenticator, Principal } from '../api/auth.js';
import { bearerToken } from '../api/auth.js';
import { generateP256KeyPair } from '../pki/keygen.js';
import type { Store, Watch } from '../store/store.js';
import { TokenIssuer, TokenVerifier, type TokenClaims, type TokenKind } from '../token/token.js';
import {
  INTERNAL_API_VERSION,
  SECRET_KIND,
  TOKEN_KEY_SECRET,
  TOKEN_RECORD_KIND,
  secretResource,
} from './internal-kinds.js';
import { formatIsoTime } from '../utc-format.js';

/** Token kinds that authenticate REST API callers; only admin may write. */
export const API_TOKEN_KINDS: readonly TokenKind[] = ['admin', 'readonly'];

export interface IssueOptions {
  ttlSeconds?: number;
  zone?: string;
  ext?: Record<string, string>;
}

export interface IssuedToken {
  token: string;
  claims: TokenClaims;
}

export class TokenService implements Authenticator {
  /**
   * Ids of the tokens revoked here (kept current by a watch on the token
   * records) → when the token expires anyway (ms since the epoch; Infinity
   * for tokens without expiry).
   */
  private readonly revoked = new Map<string, number>();
  /** Ids another issuer (global, for a zone) has revoked: its latest full list. */
  private revokedElsewhere = new Set<string>();
  private readonly revokedListeners = new Set<(jti: string) => void>();
  private readonly resyncListeners = new Set<() => void>();
  private readonly issuer: TokenIssuer;
  private readonly verificationKeys: KeyObject[];
  private verifier: TokenVerifier;
  private watch: Watch | undefined;
  private closed = false;

  private constructor(
    private readonly store: Store,
    signingKey: KeyObject,
    private readonly logger: Logger,
  ) {
    this.issuer = new TokenIssuer(signingKey);
    this.verificationKeys = [createPublicKey(signingKey)];
    this.verifier = this.buildVerifier();
  }

  private buildVerifier(): TokenVerifier {
    return new TokenVerifier(
      [...this.verificationKeys],
      (jti) => this.revoked.has(jti) || this.revokedElsewhere.has(jti),
    );
  }

  /** The public key tokens issued here verify with (a zone receives global's over KDS). */
  get publicKeyPem(): string {
    const [own] = this.verificationKeys;
    return own === undefined ? '' : own.export({ type: 'spki', format: 'pem' }).toString();
  }

  /** Also accept tokens signed by another issuer's key (PEM). Idempotent. */
  addVerificationKey(publicKeyPem: string): void {
    const key = createPublicKey(publicKeyPem);
    const der = key.export({ type: 'spki', format: 'der' });
    if (this.verificationKeys.some((k) => k.export({ type: 'spki', format: 'der' }).equals(der))) return;
    this.verificationKeys.push(key);
    this.verifier = this.buildVerifier();
  }

  /** Verifies a token of one of `kinds`; throws TOKEN_INVALID with the reason. */
  verify(token: string, kinds: readonly TokenKind[]): TokenClaims {
    return this.verifier.verify(token, { kinds: [...kinds] });
  }

  /** Loads (or creates, once across replicas) the signing key and starts following revocations. */
  static async open(store: Store, logger: Logger): Promise<TokenService> {
    const service = new TokenService(store, await ensureSigningKey(store), logger);
    await service.followRevocations();
    return service;
  }

  authenticate(req: IncomingMessage): Principal {
    const claims = this.verify(bearerToken(req), API_TOKEN_KINDS);
    return { kind: claims.kind, subject: claims.sub, tokenId: claims.jti, canWrite: claims.kind === 'admin' };
  }

  /** Issues a token and records it (never the token itself) so it can be listed and revoked. */
  async issue(kind: TokenKind, subject: string, options: IssueOptions = {}): Promise<IssuedToken> {
    const issued = this.issuer.issue({ kind, sub: subject, ...options });
    await this.store.create({
      apiVersion: INTERNAL_API_VERSION,
      kind: TOKEN_RECORD_KIND,
      metadata: { name: tokenRecordName(issued.claims.jti) },
      spec: {
        jti: issued.claims.jti,
        kind,
        subject,
        ...(options.zone === undefined ? {} : { zone: options.zone }),
        ...(options.ext === undefined ? {} : { ext: options.ext }),
        createdAt: formatIsoTime(issued.claims.iat * 1000),
        ...(issued.claims.exp === undefined ? {} : { expiresAt: formatIsoTime(issued.claims.exp * 1000) }),
        revoked: false,
      },
    });
    return issued;
  }

  async revoke(tokenId: string): Promise<void> {
    const key = { kind: TOKEN_RECORD_KIND, namespace: '', name: tokenRecordName(tokenId) };
    const record = await this.store.get(key);
    if (record === undefined) throw new MeshError(ErrorCodes.NOT_FOUND, `no token with id ${tokenId}`);
    if (record.spec.revoked === true) return;
    await this.store.update(
      { ...record, spec: { ...record.spec, revoked: true, revokedAt: formatIsoTime() } },
      { expectedResourceVersion: record.metadata.resourceVersion },
    );
    // Effective at once on this replica; others learn it through their watch.
    this.markRevoked(tokenId, expiryOf(record));
  }

  /**
   * Makes sure `path` holds a valid admin token: an existing one is kept (so
   * restarts don't break scripts that read it), otherwise a new one is
   * written with mode 0600.
   */
  async ensureAdminTokenFile(path: string): Promise<void> {
    const current = await readFile(path, 'utf8').then(
      (text) => text.trim(),
      () => undefined,
    );
    if (current !== undefined) {
      try {
        this.verify(current, ['admin']);
        await chmod(path, 0o600);
        return;
      } catch (err) {
        if (!isMeshError(err)) throw err;
        this.logger.warn('admin token file holds no valid admin token; writing a new one', {
          path,
          reason: err.message,
        });
      }
    }
    const { token } = await this.issue('admin', 'bootstrap-admin');
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, token + '\n', { mode: 0o600 });
    await rename(tmp, path);
    this.logger.info('wrote the admin token', { path });
  }

  close(): void {
    this.closed = true;
    this.watch?.close();
  }

  /**
   * Tells `listener` of every token revoked from now on, here or on another
   * replica (a KDS server cuts that zone's stream). Returns an unsubscribe function.
   */
  onRevoked(listener: (jti: string) => void): () => void {
    this.revokedListeners.add(listener);
    return () => this.revokedListeners.delete(listener);
  }

  /**
   * Tells `listener` after the revocation watch had a gap and the records
   * were relisted: holders of long-lived sessions should re-verify them.
   */
  onRevocationResync(listener: () => void): () => void {
    this.resyncListeners.add(listener);
    return () => this.resyncListeners.delete(listener);
  }

  /**
   * Ids of the tokens revoked here that have not expired yet: what global
   * sends its zones so that they refuse them too.
   */
  revokedTokenIds(now = Date.now()): string[] {
    const ids: string[] = [];
    for (const [jti, expiresAt] of this.revoked) if (expiresAt > now) ids.push(jti);
    return ids.sort();
  }

  /**
   * Refuse the tokens another issuer (global, for a zone) has revoked. `ids`
   * is that issuer's whole current list of revoked, unexpired tokens, so it
   * replaces the previous one: an id that left it belongs to a token that has
   * expired, which its expiry refuses anyway, and the set stays as small as
   * the issuer's instead of growing with every revocation ever made.
   */
  setRevokedElsewhere(ids: Iterable<string>): void {
    const previous = this.revokedElsewhere;
    this.revokedElsewhere = new Set([...ids].filter((jti) => jti !== ''));
    for (const jti of this.revokedElsewhere) {
      if (!previous.has(jti) && !this.revoked.has(jti)) this.notifyRevoked(jti);
    }
  }

  private markRevoked(jti: string, expiresAt: number): void {
    if (this.revoked.has(jti)) return;
    this.revoked.set(jti, expiresAt);
    if (!this.revokedElsewhere.has(jti)) this.notifyRevoked(jti);
  }

  private notifyRevoked(jti: string): void {
    for (const listener of this.revokedListeners) listener(jti);
  }

  private async followRevocations(resync = false): Promise<void> {
    const initial = await this.store.list({ kind: TOKEN_RECORD_KIND });
    for (const record of initial.items) {
      if (record.spec.revoked === true) this.markRevoked(jtiOf(record), expiryOf(record));
    }
    if (resync) for (const listener of this.resyncListeners) listener();
    if (this.closed) return;
    this.watch = this.store.watch(
      { kind: TOKEN_RECORD_KIND, fromRevision: initial.revision },
      {
        onEvent: (event) => {
          if (event.object.spec.revoked === true)
            this.markRevoked(jtiOf(event.object), expiryOf(event.object));
        },
        onError: (err) => {
          if (this.closed) return;
          this.logger.warn('token revocation watch ended; relisting', { err });
          // Relist so a revocation missed while the watch was down still takes effect.
          const retry = setTimeout(() => {
            this.followRevocations(true).catch((e: unknown) =>
              this.logger.error('revocation relist failed', { err: e }),
            );
          }, 1000);
          retry.unref();
        },
      },
    );
  }
}

async function ensureSigningKey(store: Store): Promise<KeyObject> {
  const key = { kind: SECRET_KIND, namespace: '', name: TOKEN_KEY_SECRET };
  const existing = await store.get(key);
  if (existing !== undefined) return createPrivateKey(String(existing.spec.keyPem));
  const { privateKey } = generateP256KeyPair();
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  try {
    await store.create(secretResource(TOKEN_KEY_SECRET, { keyPem }));
    return privateKey;
  } catch (err) {
    // Another replica won the race: use its key so tokens verify everywhere.
    if (!isMeshError(err, ErrorCodes.ALREADY_EXISTS)) throw err;
    const winner = await store.get(key);
    if (winner === undefined) throw err;
    return createPrivateKey(String(winner.spec.keyPem));
  }
}

/**
 * Store name of a token's record. A jti is base64url (upper case, `_`),
 * which Kubernetes object names refuse; its bytes in hex are a valid
 * DNS-1123 name in every store.
 */
export function tokenRecordName(jti: string): string {
  return `token-${Buffer.from(jti, 'base64url').toString('hex')}`;
}

/** When a recorded token expires (ms since the epoch), Infinity when it does not. */
function expiryOf(record: { spec: Record<string, unknown> }): number {
  const at = typeof record.spec.expiresAt === 'string' ? Date.parse(record.spec.expiresAt) : Number.NaN;
  return Number.isNaN(at) ? Number.POSITIVE_INFINITY : at;
}

/** The token id a record stands for (records written before `spec.jti` existed are named by it). */
export function jtiOf(record: { metadata: { name: string }; spec: Record<string, unknown> }): string {
  return typeof record.spec.jti === 'string' ? record.spec.jti : record.metadata.name;
}
