/**
 * Applies what global sends to the zone's store. Synced objects are stored
 * as ordinary objects of their kinds, labelled `meshfed.io/origin=global`,
 * so the zone's compiler reads them like local ones; an object without
 * that label (a locally registered WorkloadEntry, …) is never modified or
 * deleted — a clash is reported back to global as a NACK. The revision
 * global vouches for is recorded after the objects, so a crash in between
 * only replays changes (every write here is idempotent).
 */

import { ErrorCodes, isMeshError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { ORIGIN_LABEL } from '../../core/auth/internal-kinds.js';
import { KDS_STATE_KIND, KDS_STATE_NAME, internalResource } from '../../core/kds/kds-internal-kinds.js';
import type {
  ChangesPayload,
  DeletionEntry,
  ResourceErrorMessage,
  UpsertEntry,
} from '../../core/kds/kds-messages.js';
import { GLOBAL_REVISION_ANNOTATION } from '../../core/kds/kds-protocol.js';
import { allKinds } from '../../core/resource/kinds.js';
import type { Resource, StoredResource } from '../../core/resource/resource.js';
import { formatKey, keyOf } from '../../core/resource/resource.js';
import { validateResource } from '../../core/resource/validate.js';
import type { Store } from '../../core/store/store.js';
import { deepEqual } from '../../core/store/store-object.js';

export const ORIGIN_GLOBAL = 'global';

/** What the zone remembers of global across restarts. */
export interface KdsSyncState {
  storeId: string;
  revision: number;
}

/** Writes in flight at once: enough for the file store's group commit to batch them. */
const WRITE_CONCURRENCY = 64;
const MAX_CAS_ATTEMPTS = 10;

export class ZoneApplier {
  /** Names seen so far in the running full resync; undefined outside one. */
  private fullKeys: Set<string> | undefined;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  /** The state saved by the last applied message, if any. */
  async loadState(): Promise<KdsSyncState | undefined> {
    const found = await this.store.get({ kind: KDS_STATE_KIND, namespace: '', name: KDS_STATE_NAME });
    if (found === undefined) return undefined;
    const { storeId, revision } = found.spec;
    if (typeof storeId !== 'string' || typeof revision !== 'number') return undefined;
    return { storeId, revision };
  }

  /** A new stream: a full resync half-received on the old one is void. */
  resetStream(): void {
    this.fullKeys = undefined;
  }

  /**
   * Applies one Changes message; returns the resources it could not apply
   * (they stay as they were). Throws only when the store fails, which ends
   * the stream so the zone resumes from its last recorded revision.
   */
  async apply(
    header: { full: boolean; synced: boolean; revision: number; storeId: string },
    payload: ChangesPayload,
  ): Promise<ResourceErrorMessage[]> {
    if (header.full && this.fullKeys === undefined) this.fullKeys = new Set();
    const errors: ResourceErrorMessage[] = [];
    const tasks: (() => Promise<void>)[] = [];
    for (const upsert of payload.upserts) {
      tasks.push(async () => {
        const error = await this.upsert(upsert);
        if (error !== undefined) errors.push(error);
      });
    }
    for (const deletion of payload.deletions) tasks.push(() => this.remove(deletion));
    await runLimited(tasks, WRITE_CONCURRENCY);
    if (header.full && header.synced) {
      const kept = this.fullKeys ?? new Set<string>();
      this.fullKeys = undefined;
      const removed = await this.sweep(kept);
      this.logger.info('full resync applied', { objects: kept.size, removed, revision: header.revision });
    }
    if (header.revision > 0) await this.saveState({ storeId: header.storeId, revision: header.revision });
    return errors;
  }

  private async upsert(entry: UpsertEntry): Promise<ResourceErrorMessage | undefined> {
    const raw = entry.object;
    const rawKey = {
      kind: typeof raw.kind === 'string' ? raw.kind : '',
      namespace: typeof raw.metadata?.namespace === 'string' ? raw.metadata.namespace : '',
      name: typeof raw.metadata?.name === 'string' ? raw.metadata.name : '',
    };
    // Named even if it fails below: a full resync must not sweep the zone's previous state of it.
    this.fullKeys?.add(formatKey(rawKey));
    let resource: Resource;
    try {
      // The same checks as a local apply: a newer global's unknown kind or
      // field is refused here, not half-understood by the compiler.
      resource = validateResource(raw).resource;
    } catch (err) {
      return failure(rawKey, isMeshError(err) ? `${err.code}: ${err.message}` : String(err));
    }
    const key = keyOf(resource);
    this.fullKeys?.add(formatKey(key));
    const desired: Resource = {
      ...resource,
      metadata: {
        ...resource.metadata,
        labels: { ...resource.metadata.labels, [ORIGIN_LABEL]: ORIGIN_GLOBAL },
        annotations: {
          ...resource.metadata.annotations,
          [GLOBAL_REVISION_ANNOTATION]: String(entry.revision),
        },
      },
    };
    for (let attempt = 1; ; attempt++) {
      const existing = await this.store.get(key);
      if (existing !== undefined && existing.metadata.labels?.[ORIGIN_LABEL] !== ORIGIN_GLOBAL) {
        return failure(
          key,
          `${ErrorCodes.CONFLICT}: the zone has a local ${key.kind} with this name; it keeps its own and ignores global's`,
        );
      }
      if (existing !== undefined && sameObject(existing, desired)) return undefined;
      try {
        if (existing === undefined) await this.store.create(desired);
        else await this.store.update(desired, { expectedResourceVersion: existing.metadata.resourceVersion });
        return undefined;
      } catch (err) {
        const raced = isMeshError(err, ErrorCodes.CONFLICT) || isMeshError(err, ErrorCodes.ALREADY_EXISTS);
        if (!raced || attempt >= MAX_CAS_ATTEMPTS) throw err;
      }
    }
  }

  private async remove(entry: DeletionEntry): Promise<void> {
    const key = { kind: entry.kind, namespace: entry.namespace, name: entry.name };
    const existing = await this.store.get(key);
    if (existing === undefined || existing.metadata.labels?.[ORIGIN_LABEL] !== ORIGIN_GLOBAL) return;
    await this.deleteIfGlobal(existing);
  }

  private async deleteIfGlobal(existing: StoredResource): Promise<void> {
    try {
      await this.store.delete(keyOf(existing), {
        expectedResourceVersion: existing.metadata.resourceVersion,
      });
    } catch (err) {
      // Gone already, or replaced meanwhile (by a local write, which we must not touch).
      if (!isMeshError(err, ErrorCodes.NOT_FOUND) && !isMeshError(err, ErrorCodes.CONFLICT)) throw err;
    }
  }

  /** After a full resync: every global object the resync did not name is gone at global. */
  private async sweep(kept: Set<string>): Promise<number> {
    let removed = 0;
    for (const kind of allKinds()) {
      const listed = await this.store.list({
        kind: kind.kind,
        labelSelector: `${ORIGIN_LABEL}=${ORIGIN_GLOBAL}`,
      });
      const stale = listed.items.filter((item) => !kept.has(formatKey(keyOf(item))));
      await runLimited(
        stale.map((item) => () => this.deleteIfGlobal(item)),
        WRITE_CONCURRENCY,
      );
      removed += stale.length;
    }
    return removed;
  }

  private async saveState(state: KdsSyncState): Promise<void> {
    const key = { kind: KDS_STATE_KIND, namespace: '', name: KDS_STATE_NAME };
    const spec = { storeId: state.storeId, revision: state.revision, syncedAt: new Date().toISOString() };
    for (let attempt = 1; ; attempt++) {
      const existing = await this.store.get(key);
      try {
        if (existing === undefined)
          await this.store.create(internalResource(KDS_STATE_KIND, KDS_STATE_NAME, spec));
        else {
          await this.store.update(internalResource(KDS_STATE_KIND, KDS_STATE_NAME, spec), {
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

function failure(
  key: { kind: string; namespace: string; name: string },
  error: string,
): ResourceErrorMessage {
  return { kind: key.kind, namespace: key.namespace, name: key.name, error };
}

function sameObject(existing: StoredResource, desired: Resource): boolean {
  return (
    existing.apiVersion === desired.apiVersion &&
    deepEqual(existing.spec, desired.spec) &&
    deepEqual(existing.metadata.labels ?? {}, desired.metadata.labels ?? {}) &&
    deepEqual(existing.metadata.annotations ?? {}, desired.metadata.annotations ?? {})
  );
}

/** Runs tasks with at most `limit` in flight; the first failure rejects (after the others settle). */
async function runLimited(tasks: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (next < tasks.length && failed === undefined) {
      const task = tasks[next++];
      if (task === undefined) return;
      try {
        await task();
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, () => worker()));
  if (failed !== undefined) throw failed;
}
