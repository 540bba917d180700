/**
 * Revocations another issuer (global) sends a zone: refused here, and
 * forgotten once they leave the issuer's list (their tokens have expired),
 * so a long-lived zone does not keep every revocation ever made.
 */

import { afterEach, describe, expect, test } from '@jest/globals';
import { createLogger } from '../log.js';
import { MemoryStore } from '../store/store-memory.js';
import { TokenService } from './token-service.js';

const logger = createLogger('test');
const services: TokenService[] = [];

afterEach(() => {
  for (const s of services.splice(0)) s.close();
});

async function open(): Promise<TokenService> {
  const service = await TokenService.open(new MemoryStore(), logger);
  services.push(service);
  return service;
}

describe('tokens revoked elsewhere', () => {
  test('are refused, and forgotten once the issuer’s list no longer has them', async () => {
    const global = await open();
    const zone = await open();
    zone.addVerificationKey(global.publicKeyPem);
    const shortLived = await global.issue('admin', 'ops', { ttlSeconds: 1 });
    const longLived = await global.issue('admin', 'ci', { ttlSeconds: 3600 });
    const told: string[] = [];
    zone.onRevoked((jti) => told.push(jti));
    await global.revoke(shortLived.claims.jti);
    await global.revoke(longLived.claims.jti);

    zone.setRevokedElsewhere(global.revokedTokenIds());
    expect(() => zone.verify(shortLived.token, ['admin'])).toThrow(/revoked/);
    expect(() => zone.verify(longLived.token, ['admin'])).toThrow(/revoked/);
    expect(told.sort()).toEqual([shortLived.claims.jti, longLived.claims.jti].sort());

    // The short-lived token expires; global stops listing it and the zone lets the id go.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(global.revokedTokenIds()).toEqual([longLived.claims.jti]);
    zone.setRevokedElsewhere(global.revokedTokenIds());
    expect(() => zone.verify(shortLived.token, ['admin'])).toThrow(/expired/);
    expect(() => zone.verify(longLived.token, ['admin'])).toThrow(/revoked/);
    // Listeners hear of each revocation once, not again on every resend.
    expect(told).toHaveLength(2);
  });
});
