/**
 * The zone registry: `Zone` objects in global's store and their `status`,
 * which is what `meshfed get zones` and GET /apis/meshfed.io/v1alpha1/zones
 * show. Every replica writes the status of the streams it holds; a session
 * id in the status makes a late write of an old stream (or of another
 * replica) lose against the newer stream. Replica leases let the surviving
 * replicas mark the zones of a dead replica disconnected.
 *
 * Status writes go through the store like any change, so they are
 * throttled: connect and disconnect are written at once, progress (last
 * sync, lag, proxies) at most every `statusIntervalMs` per zone.
 */

import { ErrorCodes, isMeshError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Resource, StoredResource } from '../../core/resource/resource.js';
import type { Store } from '../../core/store/store.js';
import { deepEqual } from '../../core/store/store-object.js';
import { KDS_REPLICA_KIND, internalResource } from '../../core/kds/kds-internal-kinds.js';

export const ZONE_KIND = 'Zone';
export const ZONE_API_VERSION = 'meshfed.io/v1alpha1';

/** What global writes into `Zone.status`. docs/kds.md lists the fields. */
export interface ZoneStatusFields {
  connected?: boolean;
  /** Global replica holding the stream. */
  replica?: string;
  /** Id of the stream the status describes. */
  session?: string;
  /** The zone CP's address as global sees it. */
  address?: string;
  connectedAt?: string;
  disconnectedAt?: string;
  disconnectReason?: string;
  /** Time of the last acknowledged change. */
  lastSync?: string;
  /** Global revision the zone acknowledged last. */
  appliedRevision?: number;
  /** Changes sent to the zone and not acknowledged yet. */
  lag?: number;
  proxies?: number;
  version?: string;
  protocolVersion?: number;
  /** `full` or `delta`: how the current stream started. */
  syncMode?: string;
  errors?: string[];
}

export interface ZoneRegistryOptions {
  store: Store;
  replicaId: string;
  /** Where zones reach this replica (recorded in the lease, for operators). */
  address: string;
  statusIntervalMs: number;
  leaseMs: number;
  logger: Logger;
}

/** The status of a stream this replica holds: written whole, so a status wiped by a user's replace of the Zone is restored. */
interface HeldStatus {
  session: string;
  status: ZoneStatusFields;
  dirty: boolean;
  timer: NodeJS.Timeout | undefined;
  lastWrite: number;
  writing: Promise<void> | undefined;
}

const MAX_CAS_ATTEMPTS = 20;

function zoneKey(zone: string): { kind: string; namespace: string; name: string } {
  return { kind: ZONE_KIND, namespace: '', name: zone };
}

export class ZoneRegistry {
  private readonly held = new Map<string, HeldStatus>();
  private leaseTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** First time a lease was seen missing, per replica id, to date its zones' disconnect. */
  private readonly missingSince = new Map<string, number>();

  constructor(private readonly options: ZoneRegistryOptions) {}

  /** The zone's Zone object, created (enabled) on first contact as Kuma does. */
  async ensureZone(zone: string): Promise<StoredResource> {
    const existing = await this.options.store.get(zoneKey(zone));
    if (existing !== undefined) return existing;
    const resource: Resource = {
      apiVersion: ZONE_API_VERSION,
      kind: ZONE_KIND,
      metadata: { name: zone },
      spec: { enabled: true },
    };
    try {
      const created = await this.options.store.create(resource);
      this.options.logger.info('zone registered', { zone });
      return created;
    } catch (err) {
      if (!isMeshError(err, ErrorCodes.ALREADY_EXISTS)) throw err;
      const raced = await this.options.store.get(zoneKey(zone));
      if (raced === undefined) throw err;
      return raced;
    }
  }

  /** Records a new stream: it owns the zone's status from now on. */
  async connected(zone: string, session: string, fields: ZoneStatusFields): Promise<void> {
    this.release(zone);
    const status: ZoneStatusFields = {
      errors: [],
      ...fields,
      connected: true,
      replica: this.options.replicaId,
      session,
    };
    const entry: HeldStatus = {
      session,
      status,
      dirty: false,
      timer: undefined,
      lastWrite: Date.now(),
      writing: undefined,
    };
    this.held.set(zone, entry);
    // Unconditional: the newest stream wins over whatever an older one wrote.
    await this.patch(zone, () => status);
  }

  /** Merges progress fields of a held stream, written at most every statusIntervalMs. */
  update(zone: string, session: string, fields: ZoneStatusFields): void {
    if (this.closed) return;
    const entry = this.held.get(zone);
    if (entry === undefined || entry.session !== session) return;
    const next = { ...entry.status, ...fields };
    if (deepEqual(next, entry.status)) return;
    entry.status = next;
    entry.dirty = true;
    this.schedule(zone, entry);
  }

  /** Writes a held zone's status again (a user's replace of the Zone cleared it). */
  restore(zone: string): void {
    const entry = this.held.get(zone);
    if (entry === undefined || this.closed) return;
    entry.dirty = true;
    this.schedule(zone, entry);
  }

  /** Records the end of a stream, unless a newer stream already took the zone over. */
  async disconnected(zone: string, session: string, reason: string, at = new Date()): Promise<void> {
    const entry = this.held.get(zone);
    let last: ZoneStatusFields = { connected: true, session, replica: this.options.replicaId };
    if (entry !== undefined && entry.session === session) {
      last = entry.status;
      this.release(zone);
      await entry.writing?.catch(() => undefined);
    }
    const final: ZoneStatusFields = {
      ...last,
      connected: false,
      lag: 0,
      disconnectedAt: at.toISOString(),
      disconnectReason: reason,
    };
    await this.patch(zone, (status) => (ownedBy(status, session) ? final : undefined));
  }

  /** Starts this replica's lease and the check of other replicas' leases. */
  async startLease(): Promise<void> {
    await this.renewLease();
    const tick = (): void => {
      this.leaseTimer = setTimeout(
        () => {
          void this.renewLease()
            .then(() => this.reapDeadReplicas())
            .catch((err: unknown) => this.options.logger.warn('KDS replica lease renewal failed', { err }))
            .finally(() => {
              if (!this.closed) tick();
            });
        },
        Math.max(50, Math.floor(this.options.leaseMs / 3)),
      );
      this.leaseTimer.unref();
    };
    tick();
  }

  /** Stops timers, waits for status writes, drops this replica's lease. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.leaseTimer !== undefined) clearTimeout(this.leaseTimer);
    const writes: Promise<void>[] = [];
    for (const entry of this.held.values()) {
      if (entry.timer !== undefined) clearTimeout(entry.timer);
      if (entry.writing !== undefined) writes.push(entry.writing.catch(() => undefined));
    }
    await Promise.all(writes);
    this.held.clear();
    await this.options.store
      .delete({ kind: KDS_REPLICA_KIND, namespace: '', name: this.options.replicaId })
      .catch(() => undefined);
  }

  private release(zone: string): void {
    const entry = this.held.get(zone);
    if (entry?.timer !== undefined) clearTimeout(entry.timer);
    this.held.delete(zone);
  }

  private schedule(zone: string, entry: HeldStatus): void {
    if (entry.timer !== undefined || entry.writing !== undefined) return;
    const wait = Math.max(0, entry.lastWrite + this.options.statusIntervalMs - Date.now());
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (this.held.get(zone) !== entry || !entry.dirty) return;
      entry.dirty = false;
      entry.lastWrite = Date.now();
      const status = entry.status;
      entry.writing = this.patch(zone, (stored) => {
        if (!ownedBy(stored, entry.session)) return undefined;
        return deepEqual(stored, status) ? undefined : status;
      })
        .catch((err: unknown) => this.options.logger.warn('zone status write failed', { zone, err }))
        .finally(() => {
          entry.writing = undefined;
          if (entry.dirty && this.held.get(zone) === entry) this.schedule(zone, entry);
        });
    }, wait);
    entry.timer.unref();
  }

  /**
   * Read-modify-write of a Zone's status with compare-and-set, retried on
   * conflict. `mutate` returns undefined to leave the status as it is.
   */
  private async patch(
    zone: string,
    mutate: (status: ZoneStatusFields) => ZoneStatusFields | undefined,
  ): Promise<void> {
    const { store } = this.options;
    for (let attempt = 1; ; attempt++) {
      const current = await store.get(zoneKey(zone));
      if (current === undefined) return;
      const next = mutate((current.status ?? {}) as ZoneStatusFields);
      if (next === undefined) return;
      try {
        await store.update(
          { ...current, status: stripUndefined(next) },
          { expectedResourceVersion: current.metadata.resourceVersion },
        );
        return;
      } catch (err) {
        if (isMeshError(err, ErrorCodes.NOT_FOUND)) return;
        if (!isMeshError(err, ErrorCodes.CONFLICT) || attempt >= MAX_CAS_ATTEMPTS) throw err;
      }
    }
  }

  private async renewLease(): Promise<void> {
    if (this.closed) return;
    const { store, replicaId, leaseMs, address } = this.options;
    const now = Date.now();
    const spec = {
      address,
      renewedAt: new Date(now).toISOString(),
      expiresAt: new Date(now + leaseMs).toISOString(),
    };
    const key = { kind: KDS_REPLICA_KIND, namespace: '', name: replicaId };
    const existing = await store.get(key);
    if (existing === undefined) await store.create(internalResource(KDS_REPLICA_KIND, replicaId, spec));
    else await store.update(internalResource(KDS_REPLICA_KIND, replicaId, spec));
  }

  /**
   * Zones whose status names a replica whose lease expired (it crashed or
   * lost the store) are marked disconnected as of the lease's expiry, so
   * their grace period runs from when their replica stopped vouching.
   */
  private async reapDeadReplicas(): Promise<void> {
    const { store } = this.options;
    const now = Date.now();
    const leases = await store.list({ kind: KDS_REPLICA_KIND });
    const expiry = new Map<string, number>();
    for (const lease of leases.items) {
      expiry.set(lease.metadata.name, Date.parse(String(lease.spec.expiresAt)));
    }
    const zones = await store.list({ kind: ZONE_KIND });
    const referenced = new Set<string>();
    for (const zone of zones.items) {
      const status = (zone.status ?? {}) as ZoneStatusFields;
      if (status.connected !== true || status.replica === undefined) continue;
      if (status.replica === this.options.replicaId) continue;
      referenced.add(status.replica);
      let expiredAt = expiry.get(status.replica);
      if (expiredAt === undefined) {
        expiredAt = this.missingSince.get(status.replica) ?? now;
        this.missingSince.set(status.replica, expiredAt);
      }
      if (!(expiredAt <= now)) continue;
      const session = status.session;
      const replica = status.replica;
      this.options.logger.warn(
        'zone was connected to a replica whose lease expired; marking it disconnected',
        {
          zone: zone.metadata.name,
          replica,
        },
      );
      await this.patch(zone.metadata.name, (s) =>
        s.session !== session || s.connected !== true
          ? undefined
          : {
              ...s,
              connected: false,
              lag: 0,
              disconnectedAt: new Date(expiredAt).toISOString(),
              disconnectReason: `global replica ${replica} stopped renewing its lease`,
            },
      ).catch((err: unknown) => this.options.logger.warn('zone status write failed', { err }));
    }
    // Leases of replicas long gone and no longer named by any zone are garbage.
    for (const lease of leases.items) {
      const name = lease.metadata.name;
      const at = expiry.get(name) ?? 0;
      if (name !== this.options.replicaId && !referenced.has(name) && at + 10 * this.options.leaseMs < now) {
        await store.delete({ kind: KDS_REPLICA_KIND, namespace: '', name }).catch(() => undefined);
      }
    }
    for (const replica of [...this.missingSince.keys()])
      if (!referenced.has(replica)) this.missingSince.delete(replica);
  }
}

/** The stored status belongs to `session`, or to no stream at all (a user's replace cleared it). */
function ownedBy(status: ZoneStatusFields, session: string): boolean {
  return status.session === undefined || status.session === session;
}

function stripUndefined(fields: ZoneStatusFields): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out[k] = v;
  return out;
}
