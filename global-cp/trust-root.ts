/**
 * The mesh's trust root: created at first start (or taken from the
 * operator's PEM files) and persisted in the store, so every replica of the
 * global CP signs under the same root. The key is read only here.
 */

import { readFile } from 'node:fs/promises';
import { ErrorCodes, MeshError, isMeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { createRootCa, loadCa, type CertificateAuthority } from '../core/pki/ca.js';
import type { Store } from '../core/store/store.js';
import { ROOT_CA_SECRET, SECRET_KIND, secretResource } from '../core/auth/internal-kinds.js';

export interface TrustRootOptions {
  trustDomain: string;
  caCertFile?: string;
  caKeyFile?: string;
}

interface CaSecretSpec {
  certPem: string;
  keyPem: string;
  [key: string]: unknown;
}

export async function ensureTrustRoot(
  store: Store,
  options: TrustRootOptions,
  logger: Logger,
): Promise<CertificateAuthority> {
  if ((options.caCertFile === undefined) !== (options.caKeyFile === undefined)) {
    throw new MeshError(ErrorCodes.CONFIG, 'give both --ca-cert and --ca-key, or neither');
  }
  const key = { kind: SECRET_KIND, namespace: '', name: ROOT_CA_SECRET };
  if (options.caCertFile !== undefined && options.caKeyFile !== undefined) {
    const certPem = await readPem(options.caCertFile, '--ca-cert');
    const keyPem = await readPem(options.caKeyFile, '--ca-key');
    const ca = loadCa(certPem, keyPem, { trustDomain: options.trustDomain });
    await putSecret(store, key, { certPem, keyPem });
    logger.info('using the operator-provided root CA', { fingerprint: ca.fingerprint });
    return ca;
  }
  const existing = await store.get(key);
  if (existing !== undefined) {
    const spec = existing.spec as CaSecretSpec;
    return loadCa(spec.certPem, spec.keyPem);
  }
  const material = createRootCa({ trustDomain: options.trustDomain });
  try {
    await store.create(
      secretResource(ROOT_CA_SECRET, { certPem: material.certPem, keyPem: material.keyPem }),
    );
    logger.info('created the mesh root CA', {
      fingerprint: material.fingerprint,
      trustDomain: options.trustDomain,
    });
    return loadCa(material.certPem, material.keyPem);
  } catch (err) {
    // Another replica created it first: use theirs, so there is one root.
    if (!isMeshError(err, ErrorCodes.ALREADY_EXISTS)) throw err;
    const winner = await store.get(key);
    if (winner === undefined) throw err;
    const spec = winner.spec as CaSecretSpec;
    return loadCa(spec.certPem, spec.keyPem);
  }
}

async function readPem(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new MeshError(ErrorCodes.CONFIG, `cannot read ${flag} file ${path}: ${(err as Error).message}`);
  }
}

async function putSecret(
  store: Store,
  key: { kind: string; namespace: string; name: string },
  spec: CaSecretSpec,
): Promise<void> {
  const existing = await store.get(key);
  if (existing === undefined) {
    await store.create(secretResource(key.name, spec));
  } else {
    await store.update(secretResource(key.name, spec), {
      expectedResourceVersion: existing.metadata.resourceVersion,
    });
  }
}
