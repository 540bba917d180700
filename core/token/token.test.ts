import { describe, expect, it } from '@jest/globals';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import fc from 'fast-check';
import { ErrorCodes, isMeshError } from '../errors.js';
import { generateSigningKey } from './signing-key.js';
import { TokenIssuer, TokenVerifier, hashToken, tokenId, type TokenKind } from './token.js';

const keys = generateSigningKey();
const issuer = new TokenIssuer(keys.privateKey);

function rejection(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isMeshError(err, ErrorCodes.TOKEN_INVALID)) return err.message;
    throw err;
  }
  throw new Error('expected MeshError(TOKEN_INVALID)');
}

function verifier(revoked: readonly string[] = []): TokenVerifier {
  return new TokenVerifier([keys.publicKey], (jti) => revoked.includes(jti));
}

/** Signs an arbitrary payload with the real key, as a buggy or future issuer might. */
function signRaw(payload: unknown, key = keys.privateKey): string {
  const input = `mf1.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  let signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  // Low-S, like the issuer, so the verifier reaches the claims.
  const n = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
  const s = BigInt('0x' + signature.subarray(32).toString('hex'));
  if (s > n / 2n) {
    signature = Buffer.concat([
      signature.subarray(0, 32),
      Buffer.from((n - s).toString(16).padStart(64, '0'), 'hex'),
    ]);
  }
  return `${input}.${signature.toString('base64url')}`;
}

describe('issue and verify', () => {
  it('round-trips claims', () => {
    const { token, claims } = issuer.issue({
      kind: 'vm',
      sub: 'vm-1',
      zone: 'east',
      ttlSeconds: 600,
      ext: { workloadGroup: 'payments' },
    });
    expect(token).toMatch(/^mf1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{86}$/);
    expect(claims).toMatchObject({
      v: 1,
      kind: 'vm',
      sub: 'vm-1',
      zone: 'east',
      ext: { workloadGroup: 'payments' },
    });
    expect(claims.jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(claims.exp).toBe(claims.iat + 600);
    expect(Math.abs(claims.iat - Date.now() / 1000)).toBeLessThan(5);
    expect(verifier().verify(token)).toEqual(claims);
    expect(verifier().verify(token, { kinds: ['vm'] }).sub).toBe('vm-1');
  });

  it("issues ids that never start with '-', which a command line would take for an option", () => {
    // One base64url id in 64 starts with '-': among 2,000 ids, about 31 would.
    const ids = Array.from({ length: 2000 }, () => issuer.issue({ kind: 'admin', sub: 'ops' }).claims.jti);
    expect(ids.filter((id) => id.startsWith('-'))).toEqual([]);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('issues tokens without expiry that stay valid', () => {
    const { token, claims } = issuer.issue({ kind: 'admin', sub: 'alice' });
    expect(claims.exp).toBeUndefined();
    expect(verifier().verify(token, { now: claims.iat + 100 * 365 * 86_400 }).sub).toBe('alice');
  });

  it('validates issue requests', () => {
    expect(() => issuer.issue({ kind: 'root' as TokenKind, sub: 'x' })).toThrow(/unknown token kind/);
    expect(() => issuer.issue({ kind: 'admin', sub: '' })).toThrow(/subject/);
    expect(() => issuer.issue({ kind: 'admin', sub: 'a', ttlSeconds: -1 })).toThrow(/ttlSeconds/);
    expect(() => issuer.issue({ kind: 'admin', sub: 'a', ttlSeconds: 1.5 })).toThrow(/ttlSeconds/);
    expect(() => issuer.issue({ kind: 'admin', sub: 'a', ext: { n: 1 as unknown as string } })).toThrow(
      /ext/,
    );
  });

  it('refuses a tampered payload', () => {
    const { token } = issuer.issue({ kind: 'readonly', sub: 'bob' });
    const [prefix, payload, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...claims, kind: 'admin' })).toString('base64url');
    expect(rejection(() => verifier().verify(`${prefix}.${forged}.${signature}`))).toBe(
      'bad token signature',
    );
  });

  it('refuses a tampered or non-canonical signature', () => {
    const { token } = issuer.issue({ kind: 'readonly', sub: 'bob' });
    const sig = Buffer.from(token.split('.')[2] ?? '', 'base64url');
    sig[5] = (sig[5] ?? 0) ^ 1;
    const tampered = token.replace(/[^.]+$/, sig.toString('base64url'));
    expect(rejection(() => verifier().verify(tampered))).toBe('bad token signature');
    // The high-S twin of a valid signature verifies in ECDSA, but would give the token a second spelling.
    const original = Buffer.from(token.split('.')[2] ?? '', 'base64url');
    const n = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
    const s = BigInt('0x' + original.subarray(32).toString('hex'));
    const twin = Buffer.concat([
      original.subarray(0, 32),
      Buffer.from((n - s).toString(16).padStart(64, '0'), 'hex'),
    ]);
    expect(rejection(() => verifier().verify(token.replace(/[^.]+$/, twin.toString('base64url'))))).toBe(
      'bad token signature',
    );
    expect(rejection(() => verifier().verify(token + '='))).toMatch(/signature is not base64url/);
  });

  it('refuses a token signed by an unknown key', () => {
    const other = new TokenIssuer(generateSigningKey().privateKey);
    expect(rejection(() => verifier().verify(other.issue({ kind: 'admin', sub: 'eve' }).token))).toBe(
      'bad token signature',
    );
  });

  it('refuses expired and not-yet-valid tokens, saying when', () => {
    const { token, claims } = issuer.issue({ kind: 'proxy', sub: 'default/web-1', ttlSeconds: 60 });
    const exp = claims.exp ?? 0;
    expect(verifier().verify(token, { now: exp - 1 }).kind).toBe('proxy');
    expect(rejection(() => verifier().verify(token, { now: exp }))).toBe(
      `token expired at ${new Date(exp * 1000).toISOString()}`,
    );
    expect(rejection(() => verifier().verify(token, { now: claims.iat - 3600 }))).toBe(
      `token not valid before ${new Date(claims.iat * 1000).toISOString()}`,
    );
    // A minute of clock skew between replicas is tolerated.
    expect(verifier().verify(token, { now: claims.iat - 30 }).sub).toBe('default/web-1');
  });

  it('refuses revoked tokens', () => {
    const { token, claims } = issuer.issue({ kind: 'admin', sub: 'alice' });
    const other = issuer.issue({ kind: 'admin', sub: 'alice' });
    const v = verifier([claims.jti]);
    expect(rejection(() => v.verify(token))).toBe(`token ${claims.jti} is revoked`);
    expect(v.verify(other.token).jti).toBe(other.claims.jti);
  });

  it('still refuses a token revoked or expired after its signature was verified once', () => {
    const revoked = new Set<string>();
    const v = new TokenVerifier([keys.publicKey], (jti) => revoked.has(jti));
    const { token, claims } = issuer.issue({ kind: 'proxy', sub: 'web', ttlSeconds: 60 });
    expect(v.verify(token).jti).toBe(claims.jti);
    expect(rejection(() => v.verify(token, { now: claims.iat + 61 }))).toMatch(/expired/);
    revoked.add(claims.jti);
    expect(rejection(() => v.verify(token))).toBe(`token ${claims.jti} is revoked`);
    // A tampered copy of a verified token is not covered by the remembered signature.
    const tampered = token.slice(0, -2) + (token.endsWith('A') ? 'BB' : 'AA');
    expect(rejection(() => v.verify(tampered))).toMatch(/signature|malformed/);
  });

  it('refuses the wrong kind, naming expected and actual', () => {
    const { token } = issuer.issue({ kind: 'zone', sub: 'east' });
    expect(rejection(() => verifier().verify(token, { kinds: ['admin', 'readonly'] }))).toBe(
      'wrong token kind: expected admin or readonly, got zone',
    );
  });

  it('refuses unknown versions and malformed tokens with distinct messages', () => {
    const { token, claims } = issuer.issue({ kind: 'admin', sub: 'alice' });
    const v = verifier();
    expect(rejection(() => v.verify(token.replace(/^mf1/, 'mf2')))).toBe(
      'unknown token version mf2 (this build reads mf1)',
    );
    expect(rejection(() => v.verify(signRaw({ ...claims, v: 2 })))).toBe('unknown token version 2 (want 1)');
    expect(rejection(() => v.verify(''))).toMatch(/^malformed token: does not start with mf1/);
    expect(rejection(() => v.verify('Bearer ' + token))).toMatch(/^malformed token/);
    expect(rejection(() => v.verify(token + '.x'))).toBe(
      'malformed token: want 3 dot-separated parts, got 4',
    );
    expect(rejection(() => v.verify('mf1.!!.AA'))).toBe('malformed token: payload is not base64url');
    expect(rejection(() => v.verify('mf1.' + 'a'.repeat(9000)))).toMatch(/longer than 8192/);
    expect(rejection(() => v.verify(signRaw([1, 2])))).toBe('malformed token: payload is not a JSON object');
    expect(rejection(() => v.verify(signRaw({ ...claims, kind: 'root' })))).toBe(
      'malformed token: unknown kind "root"',
    );
    expect(rejection(() => v.verify(signRaw({ ...claims, exp: '1' })))).toBe(
      'malformed token: bad exp claim',
    );
    expect(rejection(() => v.verify(signRaw({ ...claims, ext: { a: 1 } })))).toBe(
      'malformed token: bad ext claim',
    );
  });
});

describe('key rotation', () => {
  it('accepts tokens from any configured key and nothing after a key is dropped', () => {
    const next = generateSigningKey();
    const nextIssuer = new TokenIssuer(next.privateKey);
    const oldToken = issuer.issue({ kind: 'admin', sub: 'old' }).token;
    const newToken = nextIssuer.issue({ kind: 'admin', sub: 'new' }).token;
    const both = new TokenVerifier([keys.publicKey, next.publicKey], () => false);
    expect(both.verify(oldToken).sub).toBe('old');
    expect(both.verify(newToken).sub).toBe('new');
    const reversed = new TokenVerifier([next.publicKey, keys.publicKey], () => false);
    expect(reversed.verify(oldToken).sub).toBe('old');
    const nextOnly = new TokenVerifier([next.publicKey], () => false);
    expect(rejection(() => nextOnly.verify(oldToken))).toBe('bad token signature');
  });

  it('still tries every key when the kid is custom or lies', () => {
    const custom = new TokenIssuer(keys.privateKey, { keyId: 'k-2024' });
    const { token, claims } = custom.issue({ kind: 'readonly', sub: 'r' });
    expect(claims.kid).toBe('k-2024');
    const next = generateSigningKey();
    expect(new TokenVerifier([next.publicKey, keys.publicKey], () => false).verify(token).kid).toBe('k-2024');
  });

  it('refuses non-P-256 keys up front', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() => new TokenIssuer(rsa.privateKey)).toThrow(/ECDSA P-256/);
    expect(() => new TokenVerifier([rsa.publicKey], () => false)).toThrow(/ECDSA P-256/);
    expect(() => new TokenIssuer(keys.publicKey)).toThrow(/private key/);
    expect(() => new TokenVerifier([], () => false)).toThrow(/at least one public key/);
  });
});

describe('hashToken and tokenId', () => {
  it('hashes with sha256 hex and reads the jti without verifying', () => {
    const { token, claims } = issuer.issue({ kind: 'admin', sub: 'alice' });
    expect(hashToken(token)).toBe(createHash('sha256').update(token).digest('hex'));
    expect(hashToken(token)).toMatch(/^[0-9a-f]{64}$/);
    expect(tokenId(token)).toBe(claims.jti);
    const foreign = new TokenIssuer(generateSigningKey().privateKey).issue({ kind: 'admin', sub: 'x' });
    expect(tokenId(foreign.token)).toBe(foreign.claims.jti);
    expect(rejection(() => tokenId('garbage'))).toMatch(/^malformed token/);
  });
});

describe('fuzz: verify throws only MeshError(TOKEN_INVALID)', () => {
  const v = verifier();
  const valid = issuer.issue({ kind: 'admin', sub: 'alice', ttlSeconds: 3600 }).token;

  function check(input: string): void {
    try {
      const claims = v.verify(input);
      // Only the untouched token may pass: low-S and canonical base64url leave no second spelling.
      expect(input).toBe(valid);
      expect(claims.sub).toBe('alice');
    } catch (err) {
      expect(isMeshError(err, ErrorCodes.TOKEN_INVALID)).toBe(true);
    }
    try {
      tokenId(input);
    } catch (err) {
      expect(isMeshError(err, ErrorCodes.TOKEN_INVALID)).toBe(true);
    }
  }

  it('on arbitrary strings', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), fc.base64String()),
        (s) => {
          check(s);
          check(`mf1.${s}`);
          check(`mf1.${s}.${s}`);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('on mutations of a valid token', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: valid.length - 1 }),
        fc.string({ maxLength: 3 }),
        fc.nat({ max: 3 }),
        (at, insert, cut) => {
          check(valid.slice(0, at) + insert + valid.slice(at + cut));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('on arbitrary JSON payloads signed with the real key', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (payload) => check(signRaw(payload))),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(
        fc.record(
          {
            v: fc.oneof(fc.constant(1), fc.jsonValue()),
            jti: fc.oneof(fc.constant('AAAAAAAAAAAAAAAAAAAAAA'), fc.jsonValue()),
            kind: fc.oneof(fc.constantFrom('admin', 'zone'), fc.jsonValue()),
            sub: fc.jsonValue(),
            iat: fc.oneof(fc.nat(), fc.jsonValue()),
            exp: fc.jsonValue(),
            ext: fc.jsonValue(),
            kid: fc.jsonValue(),
          },
          { requiredKeys: [] },
        ),
        (payload) => {
          try {
            const claims = v.verify(signRaw(payload));
            expect(claims.v).toBe(1);
            expect(typeof claims.sub).toBe('string');
          } catch (err) {
            expect(isMeshError(err, ErrorCodes.TOKEN_INVALID)).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
