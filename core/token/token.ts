/**
 * meshfed bearer tokens: `mf1.<base64url(JSON claims)>.<base64url(ES256 signature)>`.
 *
 * The signature (ECDSA P-256 over SHA-256, IEEE-P1363 r||s) covers the text
 * `mf1.<payload>`, so the format version is signed too. Signatures are
 * normalised to low-S and base64url must be canonical: a token then has
 * exactly one valid spelling, and `hashToken` is a stable identity for it.
 */

import { createHash, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError } from '../errors.js';
import { assertP256, signingKeyId } from './signing-key.js';
import { formatIsoTime } from '../utc-format.js';

export const TOKEN_KINDS = ['admin', 'readonly', 'zone', 'proxy', 'vm'] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

export interface TokenClaims {
  /** Claims format version. */
  v: 1;
  /** Random token id (16 bytes base64url): what revocation lists hold. */
  jti: string;
  kind: TokenKind;
  /** Who the token is for: a user name, the zone name (zone tokens), the workload (proxy tokens). */
  sub: string;
  zone?: string;
  /** Issued at, seconds since the epoch. */
  iat: number;
  /** Expiry, seconds since the epoch; absent = never expires. */
  exp?: number;
  /** Kind-specific string claims (e.g. `workloadGroup` for VM tokens). */
  ext?: Record<string, string>;
  /** Id of the signing key (see `signingKeyId`). */
  kid?: string;
}

export interface IssueRequest {
  kind: TokenKind;
  sub: string;
  zone?: string;
  /** Lifetime in whole seconds; absent = no expiry. */
  ttlSeconds?: number;
  ext?: Record<string, string>;
}

export interface VerifyOptions {
  /** Accept only these kinds. */
  kinds?: readonly TokenKind[];
  /** Current time in seconds since the epoch; default now. */
  now?: number;
}

const PREFIX = 'mf1';
/** Longer than any token we issue by a wide margin; bounds the work an attacker can make us do. */
export const MAX_TOKEN_LENGTH = 8192;
/** Tolerated clock difference between the issuing and the verifying replica. */
const CLOCK_SKEW_SECONDS = 60;
const SIGNATURE_BYTES = 64;
const MAX_NAME_LENGTH = 253;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const JTI = /^[A-Za-z0-9_-]{22}$/;
/** Order of the P-256 group. */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const P256_HALF_N = P256_N >> 1n;

function invalid(message: string): MeshError {
  return new MeshError(ErrorCodes.TOKEN_INVALID, message);
}

function badArgument(message: string): MeshError {
  return new MeshError(ErrorCodes.INVALID_ARGUMENT, message);
}

function isTokenKind(value: unknown): value is TokenKind {
  return typeof value === 'string' && (TOKEN_KINDS as readonly string[]).includes(value);
}

/**
 * A fresh token id: 16 random bytes in base64url, drawn again when it would
 * start with '-', so that `meshfed token revoke <id>` can never read an id as
 * an option (one id in 64 did; the CLI refused it as an unknown option).
 */
function newTokenId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** The largest time value a Date holds, in ms either side of the epoch (ECMA-262 §21.4.1.1). */
const MAX_TIME_MS = 8.64e15;

function iso(seconds: number): string {
  const ms = seconds * 1000;
  // Beyond ECMAScript's time range (±8.64e15 ms) no date can be written: the raw claim is shown instead.
  return Math.abs(ms) <= MAX_TIME_MS ? formatIsoTime(ms) : String(seconds);
}

/** Decodes base64url, accepting only the canonical unpadded spelling. */
function decodeBase64url(text: string, what: string): Buffer {
  if (!BASE64URL.test(text)) throw invalid(`malformed token: ${what} is not base64url`);
  const bytes = Buffer.from(text, 'base64url');
  // Non-canonical spellings (set trailing bits, impossible lengths) would give one token two texts.
  if (bytes.toString('base64url') !== text)
    throw invalid(`malformed token: ${what} is not canonical base64url`);
  return bytes;
}

interface TokenParts {
  signingInput: string;
  payload: Buffer;
  signature: Buffer;
}

function splitToken(token: unknown): TokenParts {
  if (typeof token !== 'string') throw invalid('malformed token: not a string');
  if (token.length > MAX_TOKEN_LENGTH)
    throw invalid(`malformed token: longer than ${MAX_TOKEN_LENGTH} characters`);
  const parts = token.split('.');
  const [prefix = '', payload = '', signature = ''] = parts;
  if (prefix !== PREFIX) {
    if (/^mf\d+$/.test(prefix)) throw invalid(`unknown token version ${prefix} (this build reads ${PREFIX})`);
    throw invalid(`malformed token: does not start with ${PREFIX}.`);
  }
  if (parts.length !== 3) throw invalid(`malformed token: want 3 dot-separated parts, got ${parts.length}`);
  return {
    signingInput: `${prefix}.${payload}`,
    payload: decodeBase64url(payload, 'payload'),
    signature: decodeBase64url(signature, 'signature'),
  };
}

function parsePayload(payload: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    throw invalid('malformed token: payload is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid('malformed token: payload is not a JSON object');
  }
  return value as Record<string, unknown>;
}

function isName(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_NAME_LENGTH;
}

function isSeconds(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isStringRecord(value: unknown): value is Record<string, string> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every((v) => typeof v === 'string')
  );
}

/** Checks the claim types of a signed payload and copies only the known claims. */
function readClaims(raw: Record<string, unknown>): TokenClaims {
  if (raw.v !== 1) throw invalid(`unknown token version ${JSON.stringify(raw.v) ?? 'undefined'} (want 1)`);
  const { jti, kind, sub, zone, iat, exp, ext, kid } = raw;
  if (typeof jti !== 'string' || !JTI.test(jti)) throw invalid('malformed token: bad jti claim');
  if (!isTokenKind(kind))
    throw invalid(`malformed token: unknown kind ${JSON.stringify(kind) ?? 'undefined'}`);
  if (!isName(sub)) throw invalid('malformed token: bad sub claim');
  if (zone !== undefined && !isName(zone)) throw invalid('malformed token: bad zone claim');
  if (!isSeconds(iat)) throw invalid('malformed token: bad iat claim');
  if (exp !== undefined && !isSeconds(exp)) throw invalid('malformed token: bad exp claim');
  if (ext !== undefined && !isStringRecord(ext)) throw invalid('malformed token: bad ext claim');
  if (kid !== undefined && typeof kid !== 'string') throw invalid('malformed token: bad kid claim');
  return {
    v: 1,
    jti,
    kind,
    sub,
    ...(zone === undefined ? {} : { zone }),
    iat,
    ...(exp === undefined ? {} : { exp }),
    // fromEntries defines own properties, so a `__proto__` key cannot reach a prototype.
    ...(ext === undefined ? {} : { ext: Object.fromEntries(Object.entries(ext)) }),
    ...(kid === undefined ? {} : { kid }),
  };
}

function toLowS(signature: Buffer): Buffer {
  const s = BigInt('0x' + signature.subarray(32).toString('hex'));
  if (s <= P256_HALF_N) return signature;
  const out = Buffer.from(signature);
  out.write((P256_N - s).toString(16).padStart(64, '0'), 32, 'hex');
  return out;
}

function isLowS(signature: Buffer): boolean {
  return BigInt('0x' + signature.subarray(32).toString('hex')) <= P256_HALF_N;
}

/** Issues tokens signed with one ECDSA P-256 private key. */
export class TokenIssuer {
  readonly #key: KeyObject;
  readonly #keyId: string;

  /** `options.keyId` defaults to `signingKeyId(signingKey)`. */
  constructor(signingKey: KeyObject, options: { keyId?: string } = {}) {
    if (signingKey.type !== 'private')
      throw new MeshError(ErrorCodes.PKI, 'token signing key must be a private key');
    assertP256(signingKey, 'token signing key');
    this.#key = signingKey;
    this.#keyId = options.keyId ?? signingKeyId(signingKey);
  }

  /** Signs a new token; throws MeshError(INVALID_ARGUMENT) for bad claims. */
  issue(request: IssueRequest): { token: string; claims: TokenClaims } {
    if (!isTokenKind(request.kind)) throw badArgument(`unknown token kind ${JSON.stringify(request.kind)}`);
    if (!isName(request.sub)) throw badArgument(`token subject must be 1-${MAX_NAME_LENGTH} characters`);
    if (request.zone !== undefined && !isName(request.zone)) {
      throw badArgument(`token zone must be 1-${MAX_NAME_LENGTH} characters`);
    }
    const ttl = request.ttlSeconds;
    if (ttl !== undefined && (!Number.isSafeInteger(ttl) || ttl <= 0)) {
      throw badArgument('ttlSeconds must be a positive whole number of seconds');
    }
    if (request.ext !== undefined && !isStringRecord(request.ext)) {
      throw badArgument('ext must map names to strings');
    }
    const iat = nowSeconds();
    const claims: TokenClaims = {
      v: 1,
      jti: newTokenId(),
      kind: request.kind,
      sub: request.sub,
      ...(request.zone === undefined ? {} : { zone: request.zone }),
      iat,
      ...(ttl === undefined ? {} : { exp: iat + ttl }),
      ...(request.ext === undefined ? {} : { ext: { ...request.ext } }),
      kid: this.#keyId,
    };
    const signingInput = `${PREFIX}.${Buffer.from(JSON.stringify(claims), 'utf8').toString('base64url')}`;
    const signature = toLowS(
      sign('sha256', Buffer.from(signingInput), { key: this.#key, dsaEncoding: 'ieee-p1363' }),
    );
    const token = `${signingInput}.${signature.toString('base64url')}`;
    if (token.length > MAX_TOKEN_LENGTH)
      throw badArgument(`token would exceed ${MAX_TOKEN_LENGTH} characters`);
    return { token, claims };
  }
}

interface VerificationKey {
  key: KeyObject;
  id: string;
}

/** Verifies tokens against one or more public keys (several during key rotation). */
/** How many correctly signed tokens a verifier remembers (FIFO). */
const VERIFIED_CACHE_SIZE = 4096;

export class TokenVerifier {
  readonly #keys: VerificationKey[];
  readonly #isRevoked: (jti: string) => boolean;
  /**
   * Tokens whose signature already verified. A signature over a given
   * string never stops being valid under a fixed key set, so this skips the
   * ECDSA check (the bulk of a CA request's cost) for a proxy presenting the
   * same token again; revocation, expiry and kind are still checked on every
   * call.
   */
  readonly #verified = new Set<string>();

  /**
   * `isRevoked` is consulted only for correctly signed tokens; an error it
   * throws propagates as is (a store outage is not an invalid token).
   */
  constructor(publicKeys: readonly KeyObject[], isRevoked: (jti: string) => boolean = () => false) {
    if (!publicKeys.length)
      throw new MeshError(ErrorCodes.PKI, 'a token verifier needs at least one public key');
    this.#keys = publicKeys.map((k) => {
      const key = k.type === 'private' ? createPublicKey(k) : k;
      assertP256(key, 'token verification key');
      return { key, id: signingKeyId(key) };
    });
    this.#isRevoked = isRevoked;
  }

  /**
   * Returns the claims of a valid token. Throws MeshError(TOKEN_INVALID)
   * for every other string: malformed, bad signature, unknown version,
   * revoked, not yet valid, expired, or a kind outside `options.kinds`.
   */
  verify(token: string, options: VerifyOptions = {}): TokenClaims {
    const parts = splitToken(token);
    const raw = parsePayload(parts.payload);
    if (!this.#verified.has(token)) {
      if (!this.#signatureValid(parts, raw.kid)) throw invalid('bad token signature');
      if (this.#verified.size >= VERIFIED_CACHE_SIZE) {
        const oldest = this.#verified.values().next();
        if (!oldest.done) this.#verified.delete(oldest.value);
      }
      this.#verified.add(token);
    }
    const claims = readClaims(raw);
    const now = options.now ?? nowSeconds();
    if (this.#isRevoked(claims.jti)) throw invalid(`token ${claims.jti} is revoked`);
    if (claims.iat > now + CLOCK_SKEW_SECONDS) throw invalid(`token not valid before ${iso(claims.iat)}`);
    if (claims.exp !== undefined && now >= claims.exp) throw invalid(`token expired at ${iso(claims.exp)}`);
    if (options.kinds && !options.kinds.includes(claims.kind)) {
      throw invalid(`wrong token kind: expected ${options.kinds.join(' or ')}, got ${claims.kind}`);
    }
    return claims;
  }

  /** `kid` is unverified at this point: it only orders the keys, every key is still tried. */
  #signatureValid(parts: TokenParts, kid: unknown): boolean {
    if (parts.signature.length !== SIGNATURE_BYTES || !isLowS(parts.signature)) return false;
    const data = Buffer.from(parts.signingInput);
    const ordered = [...this.#keys.filter((k) => k.id === kid), ...this.#keys.filter((k) => k.id !== kid)];
    return ordered.some(({ key }) => {
      try {
        return verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, parts.signature);
      } catch {
        return false;
      }
    });
  }
}

/** SHA-256 hex of a token, for stores that keep tokens only hashed. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * The jti of a token WITHOUT verifying it, for revocation UIs ("revoke this
 * token I hold"). Never use the result to authorize anything.
 */
export function tokenId(token: string): string {
  const { payload } = splitToken(token);
  const jti = parsePayload(payload).jti;
  if (typeof jti !== 'string' || !JTI.test(jti)) throw invalid('malformed token: bad jti claim');
  return jti;
}
