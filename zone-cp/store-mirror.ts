/**
 * An in-memory mirror of some kinds of a Store: list, then watch from the
 * list's revision; when the watch fails (store restarted, history gone),
 * relist after a backoff and report only what actually changed. The zone
 * CP reads policies, CA material and the catalog from here, so compiling
 * never waits on the store.
 */

import type { Logger } from '../core/log.js';
import type { StoredResource } from '../core/resource/resource.js';
import type { Store, Watch, WatchEvent } from '../core/store/store.js';

export interface MirrorChange {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: StoredResource;
}

export type MirrorListener = (changes: readonly MirrorChange[]) => void;

const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 10_000;

function keyString(kind: string, namespace: string | undefined, name: string): string {
  return `${kind}/${namespace ?? ''}/${name}`;
}

/** Mirrors every object of `kinds`; call `start()` once, `close()` when done. */
export class StoreMirror {
  private readonly objects = new Map<string, Map<string, StoredResource>>();
  private readonly watches = new Map<string, Watch>();
  private readonly retries = new Map<string, NodeJS.Timeout>();
  private readonly failures = new Map<string, number>();
  private readonly listeners = new Set<MirrorListener>();
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly kinds: readonly string[],
    private readonly logger: Logger,
  ) {
    for (const kind of kinds) this.objects.set(kind, new Map());
  }

  /** Loads every kind once; rejects if the store cannot be listed. */
  async start(): Promise<void> {
    await Promise.all(this.kinds.map((kind) => this.sync(kind)));
  }

  get(kind: string, namespace: string, name: string): StoredResource | undefined {
    return this.objects.get(kind)?.get(keyString(kind, namespace, name));
  }

  /** Every mirrored object of `kind` (a live view: do not modify). */
  list(kind: string): Iterable<StoredResource> {
    return this.objects.get(kind)?.values() ?? [];
  }

  /** Called after each batch of changes. Returns an unsubscribe function. */
  onChange(listener: MirrorListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.closed = true;
    for (const watch of this.watches.values()) watch.close();
    for (const timer of this.retries.values()) clearTimeout(timer);
    this.watches.clear();
    this.retries.clear();
  }

  private async sync(kind: string): Promise<void> {
    const listed = await this.store.list({ kind });
    if (this.closed) return;
    const current = this.objects.get(kind) ?? new Map<string, StoredResource>();
    const next = new Map<string, StoredResource>();
    const changes: MirrorChange[] = [];
    for (const object of listed.items) {
      const key = keyString(kind, object.metadata.namespace, object.metadata.name);
      next.set(key, object);
      const before = current.get(key);
      if (before === undefined) changes.push({ type: 'ADDED', object });
      else if (before.metadata.resourceVersion !== object.metadata.resourceVersion) {
        changes.push({ type: 'MODIFIED', object });
      }
    }
    for (const [key, object] of current) {
      if (!next.has(key)) changes.push({ type: 'DELETED', object });
    }
    this.objects.set(kind, next);
    this.failures.set(kind, 0);
    this.follow(kind, listed.revision);
    if (changes.length > 0) this.emit(changes);
  }

  private follow(kind: string, fromRevision: number): void {
    this.watches.get(kind)?.close();
    const watch = this.store.watch(
      { kind, fromRevision },
      {
        onEvent: (event) => this.apply(kind, event),
        onError: (err) => {
          if (this.closed) return;
          this.watches.delete(kind);
          const failures = (this.failures.get(kind) ?? 0) + 1;
          this.failures.set(kind, failures);
          const delay = Math.min(RETRY_MIN_MS * 2 ** (failures - 1), RETRY_MAX_MS);
          this.logger.warn('store watch ended; relisting', { kind, err, retryInMs: delay });
          this.scheduleResync(kind, delay);
        },
      },
    );
    this.watches.set(kind, watch);
  }

  private scheduleResync(kind: string, delay: number): void {
    clearTimeout(this.retries.get(kind));
    const timer = setTimeout(() => {
      this.retries.delete(kind);
      this.sync(kind).catch((err: unknown) => {
        if (this.closed) return;
        const failures = (this.failures.get(kind) ?? 0) + 1;
        this.failures.set(kind, failures);
        this.logger.warn('store relist failed', { kind, err });
        this.scheduleResync(kind, Math.min(RETRY_MIN_MS * 2 ** (failures - 1), RETRY_MAX_MS));
      });
    }, delay);
    timer.unref();
    this.retries.set(kind, timer);
  }

  private apply(kind: string, event: WatchEvent): void {
    const objects = this.objects.get(kind);
    if (objects === undefined) return;
    const key = keyString(kind, event.object.metadata.namespace, event.object.metadata.name);
    if (event.type === 'DELETED') objects.delete(key);
    else objects.set(key, event.object);
    this.emit([{ type: event.type, object: event.object }]);
  }

  private emit(changes: readonly MirrorChange[]): void {
    for (const listener of this.listeners) {
      try {
        listener(changes);
      } catch (err) {
        this.logger.error('store mirror listener failed', { err });
      }
    }
  }
}
