/**
 * The store as the zone's REST API sees it. When the zone is managed by
 * global over KDS, objects labelled `meshfed.io/origin=global` belong to
 * global: a local create, replace or delete of one is refused with
 * FORBIDDEN naming the owner, and nobody may label a local object as if it
 * came from global. The KDS client writes to the underlying store directly.
 */

import { ErrorCodes, MeshError } from '../../core/errors.js';
import { ORIGIN_LABEL } from '../../core/auth/internal-kinds.js';
import type { Resource, ResourceKey, StoredResource } from '../../core/resource/resource.js';
import { formatKey, keyOf } from '../../core/resource/resource.js';
import type {
  ListOptions,
  ListResult,
  Store,
  Watch,
  WatchHandlers,
  WatchOptions,
  WriteOptions,
} from '../../core/store/store.js';

const GLOBAL_ORIGIN = 'global';

export class OriginGuardStore implements Store {
  constructor(
    private readonly inner: Store,
    private readonly zone: string,
  ) {}

  get backend(): string {
    return this.inner.backend;
  }

  get(key: ResourceKey): Promise<StoredResource | undefined> {
    return this.inner.get(key);
  }

  list(options: ListOptions): Promise<ListResult> {
    return this.inner.list(options);
  }

  async create(resource: Resource): Promise<StoredResource> {
    this.refuseGlobalLabel(resource);
    return this.inner.create(resource);
  }

  async update(resource: Resource, options?: WriteOptions): Promise<StoredResource> {
    await this.refuseIfGlobal(keyOf(resource));
    this.refuseGlobalLabel(resource);
    return this.inner.update(resource, options);
  }

  async delete(key: ResourceKey, options?: WriteOptions): Promise<StoredResource> {
    await this.refuseIfGlobal(key);
    return this.inner.delete(key, options);
  }

  watch(options: WatchOptions, handlers: WatchHandlers): Watch {
    return this.inner.watch(options, handlers);
  }

  currentRevision(): Promise<number> {
    return this.inner.currentRevision();
  }

  /** The API does not own the store: closing is the zone CP's job. */
  async close(): Promise<void> {}

  private async refuseIfGlobal(key: ResourceKey): Promise<void> {
    const existing = await this.inner.get(key);
    if (existing?.metadata.labels?.[ORIGIN_LABEL] === GLOBAL_ORIGIN) {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `${formatKey(key)} is owned by the global control plane (label ${ORIGIN_LABEL}=${GLOBAL_ORIGIN}): change it on global, which syncs it to zone ${this.zone}`,
        { details: { owner: 'global' } },
      );
    }
  }

  private refuseGlobalLabel(resource: Resource): void {
    if (resource.metadata.labels?.[ORIGIN_LABEL] === GLOBAL_ORIGIN) {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `label ${ORIGIN_LABEL}=${GLOBAL_ORIGIN} is reserved for objects the global control plane syncs; remove it`,
        { field: `metadata.labels.${ORIGIN_LABEL}`, details: { owner: 'global' } },
      );
    }
  }
}
