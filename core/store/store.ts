/**
 * The one storage contract every backend implements (memory + append-only
 * file, Redis, Kubernetes). Semantics follow etcd/Kubernetes: one revision
 * counter per store, every write gets the next revision, `resourceVersion`
 * is that revision, and watchers resume from a revision.
 */

import type { Resource, ResourceKey, StoredResource } from '../resource/resource.js';

export interface ListOptions {
  kind: string;
  /** Omit (or undefined) for every namespace. '' selects cluster-scoped objects. */
  namespace?: string;
  /** Equality-based Kubernetes label selector: `app=web,tier!=db,env`. */
  labelSelector?: string;
}

export interface ListResult {
  items: StoredResource[];
  /** Store revision the list is consistent with: watch from here to follow it. */
  revision: number;
}

export interface WriteOptions {
  /**
   * Compare-and-set: the write succeeds only if the stored object's
   * resourceVersion equals this. For create, ignored. When omitted on update,
   * `resource.metadata.resourceVersion` is used if set; otherwise the write is
   * unconditional.
   */
  expectedResourceVersion?: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchEvent {
  type: WatchEventType;
  /** The object after the change; for DELETED, the last state before it. */
  object: StoredResource;
  /** Revision of this change. */
  revision: number;
}

export interface WatchOptions {
  /** Only events of this kind; omit for all kinds. */
  kind?: string;
  namespace?: string;
  /**
   * Deliver every event with revision > fromRevision. If the store no longer
   * holds history that old, the watch fails with MESHFED_ERR_REVISION_TOO_OLD
   * and the caller must relist.
   */
  fromRevision: number;
}

export interface WatchHandlers {
  /** Called in revision order, never concurrently for one watch. */
  onEvent(event: WatchEvent): void;
  /**
   * Called once when the watch ends for a reason other than `close()`: the
   * revision is too old, the store closed, or the backend failed.
   */
  onError(err: Error): void;
}

export interface Watch {
  /** Stop delivering events. Idempotent. */
  close(): void;
}

export interface Store {
  /** A short name for logs and metrics: 'memory', 'redis', 'kubernetes'. */
  readonly backend: string;

  get(key: ResourceKey): Promise<StoredResource | undefined>;

  list(options: ListOptions): Promise<ListResult>;

  /** Fails with MESHFED_ERR_ALREADY_EXISTS if the key exists. */
  create(resource: Resource): Promise<StoredResource>;

  /**
   * Replaces an existing object. Fails with MESHFED_ERR_NOT_FOUND if absent and
   * MESHFED_ERR_CONFLICT if a compare-and-set does not match. `generation`
   * increases only when `spec` changed; uid and creationTimestamp are kept.
   */
  update(resource: Resource, options?: WriteOptions): Promise<StoredResource>;

  /** Returns the deleted object. MESHFED_ERR_NOT_FOUND if absent; CAS as for update. */
  delete(key: ResourceKey, options?: WriteOptions): Promise<StoredResource>;

  watch(options: WatchOptions, handlers: WatchHandlers): Watch;

  /** The revision of the latest acknowledged write. */
  currentRevision(): Promise<number>;

  /** Flush, stop watchers (they get no error), release resources. Idempotent. */
  close(): Promise<void>;
}
