/**
 * The cross-zone service catalog as one global replica sees it. Inputs come
 * from the store (so every replica agrees whichever one a zone is connected
 * to): the `Zone` objects (enabled, connected, disconnectedAt) and one
 * `MeshfedZoneInventory` per zone. A zone is in the catalog while it is
 * enabled and connected, and for `gracePeriodMs` after it disconnected — a
 * reconnect (another replica, a restart) inside that window never makes
 * other zones drop its services (Kuma #9455). A disabled or deleted zone
 * leaves at once.
 */

import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { ErrorCodes, isMeshError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { RemoteZone, ServiceCatalog, ZoneInventory } from '../../core/mesh/inventory.js';
import type { StoredResource } from '../../core/resource/resource.js';
import type { Store, Watch, WatchEvent } from '../../core/store/store.js';
import { deepEqual } from '../../core/store/store-object.js';
import { ZONE_INVENTORY_KIND, internalResource } from '../../core/kds/kds-internal-kinds.js';
import { readInventory } from '../../core/kds/kds-inventory.js';
import type { PayloadEncoding } from '../../core/kds/kds-messages.js';
import { ZONE_KIND, type ZoneStatusFields } from './kds-zone-registry.js';

const gzipAsync = promisify(gzip);

export interface ZoneCatalogOptions {
  store: Store;
  replicaId: string;
  gracePeriodMs: number;
  /** Least time between two inventory writes of one zone (a flood is coalesced). */
  inventoryWriteIntervalMs: number;
  logger: Logger;
}

interface ZoneState {
  enabled: boolean;
  connected: boolean;
  /** ms since the epoch; undefined while connected or never connected. */
  disconnectedAt: number | undefined;
}

interface InventoryState {
  inventory: ZoneInventory;
  reportedAt: string;
}

interface PendingInventory {
  inventory: ZoneInventory;
  timer: NodeJS.Timeout | undefined;
  lastWrite: number;
  writing: boolean;
}

/** disabled/deleted: end the zone's stream; status-cleared: a user replaced the Zone and wiped its status. */
export type ZoneEventType = 'disabled' | 'deleted' | 'status-cleared';
export type ZoneEventListener = (event: { zone: string; type: ZoneEventType }) => void;

export class ZoneCatalog {
  private readonly zones = new Map<string, ZoneState>();
  private readonly inventories = new Map<string, InventoryState>();
  private readonly pendingWrites = new Map<string, PendingInventory>();
  private readonly listeners = new Set<() => void>();
  private readonly zoneListeners = new Set<ZoneEventListener>();
  /** Zones in the catalog now, as RemoteZone, sorted by name. */
  private included: RemoteZone[] = [];
  /** Bumped on every change of `included`. */
  private generationValue = 0;
  /** The catalog encoded once per generation and shared by every stream. */
  private encodedCache: { generation: number; identity: Buffer; gzip: Promise<Buffer> } | undefined;
  private watch: Watch | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private changeTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: ZoneCatalogOptions) {}

  /** Loads the current zones and inventories and follows their changes. */
  async start(): Promise<void> {
    const { store } = this.options;
    const zones = await store.list({ kind: ZONE_KIND });
    const inventories = await store.list({ kind: ZONE_INVENTORY_KIND });
    this.zones.clear();
    this.inventories.clear();
    for (const zone of zones.items) this.applyZone(zone);
    for (const inv of inventories.items) this.applyInventory(inv);
    this.recompute();
    if (this.closed) return;
    // One watch over both kinds from the older list's revision; the newer
    // list already holds what it replays, and applying an object twice is harmless.
    this.watch = store.watch(
      { fromRevision: Math.min(zones.revision, inventories.revision) },
      {
        onEvent: (event) => this.onEvent(event),
        onError: (err) => {
          if (this.closed) return;
          this.options.logger.warn('catalog watch ended; relisting', { err });
          this.retryTimer = setTimeout(() => {
            this.start().catch((e: unknown) =>
              this.options.logger.error('catalog relist failed', { err: e }),
            );
          }, 500);
          this.retryTimer.unref();
        },
      },
    );
  }

  /** Called (debounced) whenever the catalog of some zone may have changed. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called when a Zone is disabled or deleted, so its streams can be closed. */
  onZoneEvent(listener: ZoneEventListener): () => void {
    this.zoneListeners.add(listener);
    return () => this.zoneListeners.delete(listener);
  }

  /** Bumped whenever the catalog changes; streams compare it to what they sent. */
  get generation(): number {
    return this.generationValue;
  }

  /**
   * The whole catalog (every included zone; each zone ignores its own
   * entry), encoded once per change however many zones receive it — a
   * per-zone copy would cost zones² in memory with 100 zones.
   */
  async encoded(encoding: PayloadEncoding): Promise<{ generation: number; payload: Buffer }> {
    if (this.encodedCache?.generation !== this.generationValue) {
      const catalog: ServiceCatalog = { zones: this.included };
      const identity = Buffer.from(JSON.stringify(catalog), 'utf8');
      this.encodedCache = { generation: this.generationValue, identity, gzip: gzipAsync(identity) };
    }
    const cache = this.encodedCache;
    return { generation: cache.generation, payload: encoding === 'gzip' ? await cache.gzip : cache.identity };
  }

  /**
   * Records a zone's inventory (already checked to be its own). Writes are
   * coalesced per zone and skipped when nothing changed, so a zone that
   * floods updates costs the store one write per interval.
   */
  reportInventory(zone: string, inventory: ZoneInventory): void {
    if (this.closed) return;
    let pending = this.pendingWrites.get(zone);
    if (pending === undefined) {
      pending = { inventory, timer: undefined, lastWrite: 0, writing: false };
      this.pendingWrites.set(zone, pending);
    }
    pending.inventory = inventory;
    this.scheduleWrite(zone, pending);
  }

  close(): void {
    this.closed = true;
    this.watch?.close();
    for (const timer of [this.graceTimer, this.changeTimer, this.retryTimer]) {
      if (timer !== undefined) clearTimeout(timer);
    }
    for (const pending of this.pendingWrites.values()) {
      if (pending.timer !== undefined) clearTimeout(pending.timer);
    }
    this.listeners.clear();
    this.zoneListeners.clear();
  }

  private scheduleWrite(zone: string, pending: PendingInventory): void {
    if (pending.timer !== undefined || pending.writing) return;
    const wait = Math.max(0, pending.lastWrite + this.options.inventoryWriteIntervalMs - Date.now());
    pending.timer = setTimeout(() => {
      pending.timer = undefined;
      pending.writing = true;
      pending.lastWrite = Date.now();
      const inventory = pending.inventory;
      this.writeInventory(zone, inventory)
        .catch((err: unknown) => this.options.logger.warn('inventory write failed', { zone, err }))
        .finally(() => {
          pending.writing = false;
          if (this.closed) return;
          if (pending.inventory !== inventory) this.scheduleWrite(zone, pending);
          else this.pendingWrites.delete(zone);
        });
    }, wait);
    pending.timer.unref();
  }

  private async writeInventory(zone: string, inventory: ZoneInventory): Promise<void> {
    const { store } = this.options;
    const key = { kind: ZONE_INVENTORY_KIND, namespace: '', name: zone };
    for (let attempt = 1; attempt <= 10; attempt++) {
      const current = await store.get(key);
      if (current !== undefined && deepEqual(current.spec.inventory, inventory)) return;
      const resource = internalResource(ZONE_INVENTORY_KIND, zone, {
        inventory,
        reportedAt: new Date().toISOString(),
        replica: this.options.replicaId,
      });
      try {
        if (current === undefined) await store.create(resource);
        else await store.update(resource, { expectedResourceVersion: current.metadata.resourceVersion });
        return;
      } catch (err) {
        if (!isMeshError(err, ErrorCodes.CONFLICT) && !isMeshError(err, ErrorCodes.ALREADY_EXISTS)) throw err;
      }
    }
  }

  private onEvent(event: WatchEvent): void {
    const kind = event.object.kind;
    if (kind === ZONE_KIND) {
      const name = event.object.metadata.name;
      const before = this.zones.get(name);
      if (event.type === 'DELETED') {
        this.zones.delete(name);
        this.emitZoneEvent(name, 'deleted');
        // The zone is gone from the registry: so is what it reported.
        this.options.store
          .delete({ kind: ZONE_INVENTORY_KIND, namespace: '', name })
          .catch((err: unknown) => {
            if (!isMeshError(err, ErrorCodes.NOT_FOUND)) {
              this.options.logger.warn('could not delete a deleted zone’s inventory', { zone: name, err });
            }
          });
      } else {
        this.applyZone(event.object);
        if (before?.enabled !== false && this.zones.get(name)?.enabled === false)
          this.emitZoneEvent(name, 'disabled');
        if (event.type === 'MODIFIED' && event.object.status?.session === undefined) {
          this.emitZoneEvent(name, 'status-cleared');
        }
      }
      this.scheduleChange();
    } else if (kind === ZONE_INVENTORY_KIND) {
      if (event.type === 'DELETED') this.inventories.delete(event.object.metadata.name);
      else this.applyInventory(event.object);
      this.scheduleChange();
    }
  }

  private emitZoneEvent(zone: string, type: ZoneEventType): void {
    for (const listener of this.zoneListeners) {
      try {
        listener({ zone, type });
      } catch (err) {
        this.options.logger.error('zone event listener threw', { err });
      }
    }
  }

  private applyZone(object: StoredResource): void {
    const status = (object.status ?? {}) as ZoneStatusFields;
    const disconnectedAt =
      status.disconnectedAt === undefined ? Number.NaN : Date.parse(status.disconnectedAt);
    this.zones.set(object.metadata.name, {
      enabled: object.spec.enabled !== false,
      connected: status.connected === true,
      disconnectedAt: Number.isNaN(disconnectedAt) ? undefined : disconnectedAt,
    });
  }

  private applyInventory(object: StoredResource): void {
    try {
      this.inventories.set(object.metadata.name, {
        inventory: readInventory(object.spec.inventory),
        reportedAt: typeof object.spec.reportedAt === 'string' ? object.spec.reportedAt : '',
      });
    } catch (err) {
      this.options.logger.warn('ignoring a stored inventory that does not validate', {
        zone: object.metadata.name,
        err,
      });
    }
  }

  private scheduleChange(): void {
    if (this.changeTimer !== undefined || this.closed) return;
    // A burst of store events (a zone reconnecting writes status and inventory) becomes one push.
    this.changeTimer = setTimeout(() => {
      this.changeTimer = undefined;
      this.recompute();
    }, 20);
    this.changeTimer.unref();
  }

  private recompute(): void {
    const now = Date.now();
    let nextExpiry = Number.POSITIVE_INFINITY;
    const included: RemoteZone[] = [];
    for (const [name, inv] of [...this.inventories.entries()].sort(([a], [b]) =>
      a < b ? -1 : a > b ? 1 : 0,
    )) {
      const zone = this.zones.get(name);
      if (zone === undefined || !zone.enabled) continue;
      if (!zone.connected) {
        // Never connected with a known time: treat as gone (nothing to wait for).
        if (zone.disconnectedAt === undefined) continue;
        const expires = zone.disconnectedAt + this.options.gracePeriodMs;
        if (expires <= now) continue;
        nextExpiry = Math.min(nextExpiry, expires);
      }
      included.push({ ...inv.inventory, zone: name, connected: zone.connected, lastSeen: inv.reportedAt });
    }
    const changed = !deepEqual(included, this.included);
    this.included = included;
    if (this.graceTimer !== undefined) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    if (Number.isFinite(nextExpiry) && !this.closed) {
      this.graceTimer = setTimeout(() => this.recompute(), Math.max(0, nextExpiry - now) + 5);
      this.graceTimer.unref();
    }
    if (!changed) return;
    this.generationValue++;
    for (const listener of this.listeners) {
      try {
        listener();
      } catch (err) {
        this.options.logger.error('catalog listener threw', { err });
      }
    }
  }
}
