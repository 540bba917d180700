/**
 * Workload certificates revoked before their expiry: a VM that left, or
 * one replaced by a newer join at the same address. One store record per
 * serial (so every replica sharing the store refuses it), followed with a
 * watch into an in-memory set the CA, MDS and the VM routes consult on
 * each call. A record is dropped once its certificate has expired: TLS
 * refuses it then anyway.
 */

import { ErrorCodes, isMeshError } from '../../core/errors.js';
import { INTERNAL_API_VERSION } from '../../core/auth/internal-kinds.js';
import type { Logger } from '../../core/log.js';
import type { Store, Watch } from '../../core/store/store.js';
import { REVOKED_CERT_KIND, normalizeSerial } from './vm-model.js';

export interface Revocation {
  serial: string;
  /** When the certificate expires: the record is kept until then. */
  notAfter: Date;
  reason: string;
  workloadEntry?: string;
}

const RELIST_DELAY_MS = 1000;

function recordName(serial: string): string {
  return `serial-${normalizeSerial(serial).toLowerCase()}`;
}

export class RevokedCertificates {
  private readonly serials = new Set<string>();
  private watch: Watch | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  /** Loads the stored revocations and follows new ones. */
  async start(): Promise<void> {
    const { items, revision } = await this.store.list({ kind: REVOKED_CERT_KIND, namespace: '' });
    this.serials.clear();
    for (const item of items) this.serials.add(normalizeSerial(String(item.spec.serial ?? '')));
    if (this.closed) return;
    this.watch = this.store.watch(
      { kind: REVOKED_CERT_KIND, fromRevision: revision },
      {
        onEvent: (event) => {
          const serial = normalizeSerial(String(event.object.spec.serial ?? ''));
          // Records are deleted only once their certificate expired: its dates refuse it from then on.
          if (event.type === 'DELETED') this.serials.delete(serial);
          else this.serials.add(serial);
        },
        onError: (err) => {
          if (this.closed) return;
          this.logger.warn('revocation watch ended; relisting', { err });
          this.retry = setTimeout(() => {
            this.start().catch((e: unknown) => this.logger.error('revocation relist failed', { err: e }));
          }, RELIST_DELAY_MS);
          this.retry.unref();
        },
      },
    );
  }

  /** True when `serial` (hex, any case) was revoked. */
  has(serial: string): boolean {
    return this.serials.size > 0 && this.serials.has(normalizeSerial(serial));
  }

  /** Records a revocation; effective on this replica at once, on others through their watch. Idempotent. */
  async revoke(revocation: Revocation): Promise<void> {
    const serial = normalizeSerial(revocation.serial);
    this.serials.add(serial);
    try {
      await this.store.create({
        apiVersion: INTERNAL_API_VERSION,
        kind: REVOKED_CERT_KIND,
        metadata: { name: recordName(serial) },
        spec: {
          serial,
          notAfter: revocation.notAfter.toISOString(),
          reason: revocation.reason,
          revokedAt: new Date().toISOString(),
          ...(revocation.workloadEntry === undefined ? {} : { workloadEntry: revocation.workloadEntry }),
        },
      });
    } catch (err) {
      if (!isMeshError(err, ErrorCodes.ALREADY_EXISTS)) throw err;
    }
  }

  /** Deletes records of certificates that expired before `now`. */
  async prune(now: Date): Promise<number> {
    const { items } = await this.store.list({ kind: REVOKED_CERT_KIND, namespace: '' });
    let removed = 0;
    for (const item of items) {
      const notAfter = Date.parse(String(item.spec.notAfter ?? ''));
      if (!(notAfter < now.getTime())) continue;
      try {
        await this.store.delete({ kind: REVOKED_CERT_KIND, namespace: '', name: item.metadata.name });
        removed++;
      } catch (err) {
        if (!isMeshError(err, ErrorCodes.NOT_FOUND)) throw err;
      }
    }
    return removed;
  }

  close(): void {
    this.closed = true;
    if (this.retry !== undefined) clearTimeout(this.retry);
    this.watch?.close();
  }
}
