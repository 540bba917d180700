/**
 * The zone's half of KDS trust: it generates its intermediate CA key
 * locally, asks global to sign it (CSR), and writes what global sends into
 * the zone store under the keys core/auth/internal-kinds.ts names:
 * `zone-ca` (intermediate followed by the root, and the key),
 * `trust-bundle` and `global-token-keys`. The private key never leaves the
 * zone; the root key never leaves global.
 */

import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError, isMeshError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { buildCsr } from '../../core/pki/csr.js';
import { generateKeyPair, loadCa } from '../../core/pki/ca.js';
import { pemToDerList } from '../../core/pki/pem.js';
import type { Store } from '../../core/store/store.js';
import { deepEqual } from '../../core/store/store-object.js';
import {
  GLOBAL_TOKEN_KEYS_SECRET,
  GLOBAL_TOKEN_REVOCATIONS_SECRET,
  SECRET_KIND,
  TRUST_BUNDLE_SECRET,
  ZONE_CA_SECRET,
  secretResource,
} from '../../core/auth/internal-kinds.js';
import type { TrustMessage } from '../../core/kds/kds-messages.js';

const MAX_CAS_ATTEMPTS = 10;

export interface TrustApplyResult {
  /** The intermediate global just signed was stored. */
  caStored: boolean;
  /** The zone holds no usable intermediate for the roots it now trusts: ask again. */
  needsCsr: boolean;
}

export class ZoneTrust {
  private pendingKey: KeyObject | undefined;

  constructor(
    private readonly store: Store,
    private readonly zone: string,
    private readonly logger: Logger,
  ) {}

  /**
   * A CSR for a new intermediate, or '' when the zone's current one is
   * signed by global, chains to the roots the zone trusts and has more than
   * half of its life left. `force` asks for a new one regardless.
   */
  async csrIfNeeded(force = false): Promise<string> {
    if (!force && (await this.currentCaUsable())) return '';
    if (this.pendingKey === undefined) {
      const { privateKey } = generateKeyPair();
      this.pendingKey = privateKey;
    }
    const key = this.pendingKey;
    return buildCsr(key, createPublicKey(key), { commonName: `meshfed zone ${this.zone} CA`.slice(0, 64) });
  }

  /** Whether the intermediate has passed half its life (checked periodically while connected). */
  async needsRenewal(): Promise<boolean> {
    return !(await this.currentCaUsable());
  }

  /** Whether the store holds a global-signed zone CA and a trust bundle (a previous sync). */
  async hasTrust(): Promise<boolean> {
    const ca = await this.get(ZONE_CA_SECRET);
    const bundle = await this.get(TRUST_BUNDLE_SECRET);
    return ca?.source === 'global' && typeof ca.certPem === 'string' && Array.isArray(bundle?.roots);
  }

  /** Writes the trust global sent; stores the intermediate if it answers our CSR. */
  async apply(trust: TrustMessage): Promise<TrustApplyResult> {
    const roots = trust.roots_pem.filter((pem) => pem.trim() !== '');
    if (roots.length === 0) throw new MeshError(ErrorCodes.PKI, 'global sent a trust bundle without roots');
    await this.put(TRUST_BUNDLE_SECRET, { trustDomain: trust.trust_domain, roots });
    if (trust.token_public_keys_pem.length > 0) {
      await this.put(GLOBAL_TOKEN_KEYS_SECRET, { publicKeysPem: trust.token_public_keys_pem });
    }
    // Kept in the store so a zone restarted while global is away still refuses them.
    await this.put(GLOBAL_TOKEN_REVOCATIONS_SECRET, {
      tokenIds: [...(trust.revoked_token_ids ?? [])].sort(),
    });
    let caStored = false;
    if (trust.intermediate_chain_pem !== '' && this.pendingKey !== undefined) {
      const keyPem = this.pendingKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      // loadCa checks the key matches, the chain links verify, and it is a CA.
      const ca = loadCa(trust.intermediate_chain_pem, keyPem);
      if (!chainsTo(trust.intermediate_chain_pem, roots)) {
        throw new MeshError(
          ErrorCodes.PKI,
          'global signed an intermediate that does not chain to the roots it sent',
        );
      }
      await this.put(ZONE_CA_SECRET, { certPem: trust.intermediate_chain_pem, keyPem, source: 'global' });
      this.pendingKey = undefined;
      caStored = true;
      this.logger.info('stored the zone intermediate CA signed by global', {
        fingerprint: ca.fingerprint,
        notAfter: ca.notAfter.toISOString(),
      });
    } else if (trust.csr_error !== '') {
      this.logger.error('global refused the zone CA signing request', { reason: trust.csr_error });
    }
    const needsCsr = !caStored && this.pendingKey === undefined && !(await this.currentCaUsable(roots));
    return { caStored, needsCsr };
  }

  private async currentCaUsable(rootsOverride?: string[]): Promise<boolean> {
    const ca = await this.get(ZONE_CA_SECRET);
    if (ca?.source !== 'global' || typeof ca.certPem !== 'string' || typeof ca.keyPem !== 'string')
      return false;
    const roots = rootsOverride ?? (await this.get(TRUST_BUNDLE_SECRET))?.roots;
    if (!Array.isArray(roots) || !roots.every((r): r is string => typeof r === 'string')) return false;
    try {
      loadCa(ca.certPem, ca.keyPem);
      if (!chainsTo(ca.certPem, roots)) return false;
      const [der] = pemToDerList(ca.certPem);
      if (der === undefined) return false;
      const cert = new X509Certificate(der);
      const from = Date.parse(cert.validFrom);
      const to = Date.parse(cert.validTo);
      return Date.now() < from + (to - from) / 2;
    } catch (err) {
      if (!isMeshError(err)) this.logger.warn('stored zone CA is unusable', { err });
      return false;
    }
  }

  private async get(name: string): Promise<Record<string, unknown> | undefined> {
    const found = await this.store.get({ kind: SECRET_KIND, namespace: '', name });
    return found?.spec;
  }

  private async put(name: string, spec: Record<string, unknown>): Promise<void> {
    const key = { kind: SECRET_KIND, namespace: '', name };
    for (let attempt = 1; ; attempt++) {
      const existing = await this.store.get(key);
      if (existing !== undefined && deepEqual(existing.spec, spec)) return;
      try {
        if (existing === undefined) await this.store.create(secretResource(name, spec));
        else {
          await this.store.update(secretResource(name, spec), {
            expectedResourceVersion: existing.metadata.resourceVersion,
          });
        }
        return;
      } catch (err) {
        const raced = isMeshError(err, ErrorCodes.CONFLICT) || isMeshError(err, ErrorCodes.ALREADY_EXISTS);
        if (!raced || attempt >= MAX_CAS_ATTEMPTS) throw err;
      }
    }
  }
}

/** True when the last certificate of `chainPem` is one of `roots`. */
function chainsTo(chainPem: string, roots: readonly string[]): boolean {
  const chain = pemToDerList(chainPem);
  const top = chain[chain.length - 1];
  if (top === undefined) return false;
  return roots.some((root) => {
    try {
      return pemToDerList(root).some((der) => der.equals(top));
    } catch {
      return false;
    }
  });
}
