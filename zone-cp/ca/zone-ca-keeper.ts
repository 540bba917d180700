/**
 * The zone's signing CA and trust bundle, read from the store
 * (`MeshfedSecret/zone-ca`, `MeshfedSecret/trust-bundle`): written by the
 * KDS client when the zone is connected to global (an intermediate under
 * the mesh root), or created here for a standalone zone (its own root).
 * Follows the secrets, so an intermediate rotation takes effect without a
 * restart; the previous CA is kept so certificates it issued still count
 * for renewal until they expire.
 */

import { X509Certificate } from 'node:crypto';
import { ErrorCodes, MeshError, isMeshError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { createRootCa, loadCa, type CertificateAuthority } from '../../core/pki/ca.js';
import { pemToDerList } from '../../core/pki/pem.js';
import type { Store } from '../../core/store/store.js';
import {
  SECRET_KIND,
  TRUST_BUNDLE_SECRET,
  ZONE_CA_SECRET,
  secretResource,
} from '../../core/auth/internal-kinds.js';
import type { StoreMirror } from '../store-mirror.js';
import type { CaSigningMaterial } from './ca-sign-pool.js';

export interface TrustBundle {
  trustDomain: string;
  /** PEM roots, one per entry. */
  roots: string[];
}

export interface ZoneCaKeeperOptions {
  zone: string;
  /** Create a self-signed zone root when none is stored (no global CP). */
  standalone: boolean;
  /** Trust domain of a standalone root. Default cluster.local. */
  trustDomain?: string;
  logger: Logger;
}

export type CaSource = 'global' | 'standalone';

/** Holds the current CA; `onChange` fires when it or the bundle is replaced. */
export class ZoneCaKeeper {
  private currentCa: CertificateAuthority | undefined;
  private currentMaterial: CaSigningMaterial | undefined;
  private currentSource: CaSource | undefined;
  private previousCas: CertificateAuthority[] = [];
  private currentBundle: TrustBundle | undefined;
  private bundleRootsDer: Buffer[] = [];
  private chainBelowRoot: string[] = [];
  private loadedCaVersion = '';
  private loadedBundleVersion = '';
  private readonly listeners = new Set<() => void>();
  private readonly waiters: Array<() => void> = [];
  /** Why the stored material could not be used, for /inspect/errors. */
  private problem: string | undefined;

  constructor(
    private readonly store: Store,
    private readonly mirror: StoreMirror,
    private readonly options: ZoneCaKeeperOptions,
  ) {
    mirror.onChange((changes) => {
      if (changes.some((c) => c.object.kind === SECRET_KIND)) this.reload();
    });
  }

  /** Loads what is stored; a standalone zone creates its root if none is. */
  async start(): Promise<void> {
    if (this.options.standalone) await this.ensureStandalone();
    this.reload();
  }

  /** The signing CA, or undefined until global sent one. */
  get ca(): CertificateAuthority | undefined {
    return this.currentCa;
  }

  /**
   * The signing CA with the PEMs it was loaded from, for the CA sign pool's
   * worker threads (same process: see ca-sign-pool.ts for why that is fine).
   */
  get signingMaterial(): CaSigningMaterial | undefined {
    return this.currentMaterial;
  }

  get source(): CaSource | undefined {
    return this.currentSource;
  }

  get bundle(): TrustBundle | undefined {
    return this.currentBundle;
  }

  /** Trust bundle roots as one PEM text ('' until known). */
  get bundlePem(): string {
    return this.currentBundle?.roots.join('') ?? '';
  }

  /** The CA now and the one before a rotation: issuers whose certificates count for renewal. */
  get issuers(): readonly CertificateAuthority[] {
    return this.currentCa === undefined ? this.previousCas : [this.currentCa, ...this.previousCas];
  }

  /** The CA's certificate and its parents, without the bundle's roots: what a workload sends after its leaf. */
  get issuingChain(): readonly string[] {
    return this.chainBelowRoot;
  }

  get error(): string | undefined {
    return this.problem;
  }

  /** True for a DER certificate that is one of the trust bundle's roots. */
  isRoot(der: Buffer): boolean {
    return this.bundleRootsDer.some((root) => root.equals(der));
  }

  /** Resolves once a CA and a trust bundle are loaded. */
  ready(): Promise<void> {
    if (this.currentCa !== undefined && this.currentBundle !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async ensureStandalone(): Promise<void> {
    const trustDomain = this.options.trustDomain ?? 'cluster.local';
    const caKey = { kind: SECRET_KIND, namespace: '', name: ZONE_CA_SECRET };
    let caSecret = await this.store.get(caKey);
    if (caSecret === undefined) {
      const material = createRootCa({ trustDomain, commonName: `meshfed zone ${this.options.zone} CA` });
      caSecret = await this.createOrRead(
        secretResource(ZONE_CA_SECRET, {
          certPem: material.certPem,
          keyPem: material.keyPem,
          source: 'standalone',
        }),
      );
      this.options.logger.info('created a standalone zone root CA', {
        fingerprint: material.fingerprint,
        trustDomain,
      });
    }
    const bundleKey = { kind: SECRET_KIND, namespace: '', name: TRUST_BUNDLE_SECRET };
    if ((await this.store.get(bundleKey)) === undefined) {
      const certPem = String(caSecret.spec.certPem ?? '');
      const [rootDer] = pemToDerList(certPem).slice(-1);
      if (rootDer === undefined)
        throw new MeshError(ErrorCodes.PKI, 'the stored zone CA holds no certificate');
      const ca = loadCa(certPem, String(caSecret.spec.keyPem ?? ''));
      await this.createOrRead(
        secretResource(TRUST_BUNDLE_SECRET, {
          trustDomain: ca.trustDomain,
          roots: [new X509Certificate(rootDer).toString()],
        }),
      );
    }
  }

  private async createOrRead(resource: ReturnType<typeof secretResource>) {
    try {
      return await this.store.create(resource);
    } catch (err) {
      // Another replica of this zone CP won the race: use what it stored.
      if (!isMeshError(err, ErrorCodes.ALREADY_EXISTS)) throw err;
      const winner = await this.store.get({ kind: SECRET_KIND, namespace: '', name: resource.metadata.name });
      if (winner === undefined) throw err;
      return winner;
    }
  }

  private reload(): void {
    let changed = false;
    const caSecret = this.mirror.get(SECRET_KIND, '', ZONE_CA_SECRET);
    const bundleSecret = this.mirror.get(SECRET_KIND, '', TRUST_BUNDLE_SECRET);
    const caVersion = caSecret?.metadata.resourceVersion ?? '';
    if (caVersion !== this.loadedCaVersion) {
      this.loadedCaVersion = caVersion;
      changed = this.loadCa(caSecret?.spec) || changed;
    }
    const bundleVersion = bundleSecret?.metadata.resourceVersion ?? '';
    if (bundleVersion !== this.loadedBundleVersion) {
      this.loadedBundleVersion = bundleVersion;
      changed = this.loadBundle(bundleSecret?.spec) || changed;
    }
    if (!changed) return;
    this.chainBelowRoot =
      this.currentCa === undefined
        ? []
        : pemToDerList(this.currentCa.chainPem)
            .filter((der) => !this.isRoot(der))
            .map((der) => new X509Certificate(der).toString());
    if (this.currentCa !== undefined && this.currentBundle !== undefined) {
      for (const resolve of this.waiters.splice(0)) resolve();
    }
    for (const listener of this.listeners) listener();
  }

  private loadCa(spec: Record<string, unknown> | undefined): boolean {
    if (spec === undefined) return false;
    const source: CaSource = spec.source === 'standalone' ? 'standalone' : 'global';
    if (source === 'standalone' && !this.options.standalone) {
      // A root left from a standalone run would issue identities no other zone trusts.
      this.problem = 'the stored zone CA is a standalone root; waiting for the intermediate from global';
      this.options.logger.warn(this.problem);
      return false;
    }
    try {
      const certPem = String(spec.certPem ?? '');
      const keyPem = String(spec.keyPem ?? '');
      const ca = loadCa(certPem, keyPem);
      if (this.currentCa !== undefined && this.currentCa.fingerprint !== ca.fingerprint) {
        this.previousCas = [this.currentCa, ...this.previousCas]
          .filter((old) => old.notAfter.getTime() > Date.now())
          .slice(0, 2);
        this.options.logger.info('zone CA rotated', { fingerprint: ca.fingerprint, source });
      }
      this.currentCa = ca;
      this.currentMaterial = { ca, certPem, keyPem };
      this.currentSource = source;
      this.problem = undefined;
      return true;
    } catch (err) {
      this.problem = `the stored zone CA cannot be used: ${(err as Error).message}`;
      this.options.logger.error('zone CA secret unusable; keeping the previous CA', { err });
      return false;
    }
  }

  private loadBundle(spec: Record<string, unknown> | undefined): boolean {
    if (spec === undefined) return false;
    const roots = Array.isArray(spec.roots)
      ? spec.roots.filter((r): r is string => typeof r === 'string')
      : [];
    try {
      const ders = roots.flatMap((pem) => pemToDerList(pem));
      if (ders.length === 0) throw new MeshError(ErrorCodes.PKI, 'no roots');
      this.currentBundle = {
        trustDomain: typeof spec.trustDomain === 'string' ? spec.trustDomain : 'cluster.local',
        roots: ders.map((der) => new X509Certificate(der).toString()),
      };
      this.bundleRootsDer = ders;
      return true;
    } catch (err) {
      this.problem = `the stored trust bundle cannot be used: ${(err as Error).message}`;
      this.options.logger.error('trust bundle secret unusable; keeping the previous bundle', { err });
      return false;
    }
  }
}
