/**
 * ECDSA P-256 key generation that is safe to use with JWK export.
 *
 * On Node 20, a KeyObject from `generateKeyPairSync` shares its key data (and
 * that data's mutex) with the generation job. `export({ format: 'jwk' })`
 * holds the mutex while it allocates strings; if that allocation runs a GC
 * that finalises the job, the job's destructor takes the same mutex and the
 * thread deadlocks for good (seen as the whole process idling forever: a
 * jest run, and it could be any proxy or control plane renewing keys).
 * Re-importing the key gives it key data of its own, which nothing else
 * locks. Costs about 0.1 ms per key; keys are generated rarely.
 */

import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';

export interface P256KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** A fresh ECDSA P-256 key pair, detached from its generation job. */
export function generateP256KeyPair(): P256KeyPair {
  const generated = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const privateKey = createPrivateKey({
    key: generated.privateKey.export({ type: 'pkcs8', format: 'der' }),
    format: 'der',
    type: 'pkcs8',
  });
  return { privateKey, publicKey: createPublicKey(privateKey) };
}
