/**
 * The embedded store: objects in memory, a bounded ring of recent events for
 * watch-from-revision, and optionally an append-only JSON-lines log plus a
 * snapshot file for durability.
 *
 * Durability model (file mode):
 * - A write is applied to memory at once, so compare-and-set sees every
 *   earlier write, but its promise resolves and its watch event is delivered
 *   only after the log record is on disk (fdatasync).
 * - Group commit: records written while an fdatasync is in flight are
 *   appended together and share the next fdatasync.
 * - Restart replays the snapshot and the log; a torn last line (crash in the
 *   middle of an append) is cut off, damage anywhere else is STORE_CORRUPT.
 * - Compaction writes a snapshot (tmp, fsync, rename, fsync dir) and empties
 *   the log. Replay skips log records at or below the snapshot's revision, so
 *   a crash between the two steps is harmless.
 * - A failed append or fdatasync (disk full, I/O error) fails the writes of
 *   that batch and of every batch queued behind it with STORE_UNAVAILABLE,
 *   rolls memory back to the last durable revision, and stops the store
 *   accepting writes (fail-stop: reads keep working; restart to recover).
 *   We do not try to carry on because the log's tail is then unknown and a
 *   later append could land behind a half-written record.
 */

import { chmod, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { ErrorCodes, MeshError } from '../errors.js';
import { createLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { Resource, ResourceKey, StoredResource } from '../resource/resource.js';
import { formatKey } from '../resource/resource.js';
import { parseLabelSelector } from './label-selector.js';
import { lockDataDir } from './store-file-lock.js';
import type { DataDirLock } from './store-file-lock.js';
import {
  alreadyExistsError,
  checkExpectedVersion,
  checkFromRevision,
  checkResource,
  closedError,
  deliverChange,
  encodeStoredWithRevision,
  expectedVersionOf,
  newServerMeta,
  nextServerMeta,
  notFoundError,
  watchHandle,
  watchSelects,
} from './store-object.js';
import type { StoredChange } from './store-object.js';
import type {
  ListOptions,
  ListResult,
  Store,
  Watch,
  WatchEventType,
  WatchHandlers,
  WatchOptions,
  WriteOptions,
} from './store.js';

export interface MemoryStoreOptions {
  /** Events kept for watch-from-revision. Default 10,000. */
  historySize?: number;
  logger?: Logger;
}

export interface FileStoreOptions extends MemoryStoreOptions {
  /** Directory holding `store.log` and `snapshot.json`; created if missing. */
  dataDir: string;
  /** Compact once the log holds more records than this (or than live objects). Default 50,000. */
  compactAfterRecords?: number;
  /** Compact once the log is larger than this many bytes. Default 64 MiB. */
  compactAfterBytes?: number;
}

export interface MemoryStoreStats {
  /** Revision of the newest write applied in memory (possibly not yet durable). */
  revision: number;
  /** Revision of the newest acknowledged write. */
  durableRevision: number;
  objects: number;
  /** Records in the current log file (0 for a volatile store). */
  logRecords: number;
  logBytes: number;
  /** fdatasync calls made for appends: fewer than writes means group commit works. */
  syncs: number;
  snapshots: number;
}

export const LOG_FILE = 'store.log';
export const SNAPSHOT_FILE = 'snapshot.json';
const SNAPSHOT_TMP = 'snapshot.json.tmp';

const DEFAULT_HISTORY = 10_000;
const DEFAULT_COMPACT_RECORDS = 50_000;
const DEFAULT_COMPACT_BYTES = 64 * 1024 * 1024;

interface Entry {
  /** The stored form; every copy handed out is parsed from it. */
  json: string;
  /** Parsed once for label matching and spec comparison; never handed out. */
  obj: StoredResource;
}

interface PendingOp {
  event: StoredChange;
  key: ResourceKey;
  /** State before the write, for rollback and for snapshots taken while it is pending. */
  prev: Entry | undefined;
  line: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface MemoryWatcher {
  kind: string | undefined;
  namespace: string | undefined;
  handlers: WatchHandlers;
  lastRevision: number;
  queue: StoredChange[];
  draining: boolean;
  closed: boolean;
}

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new MeshError(ErrorCodes.CONFIG, `${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/** Fixed-capacity ring of the newest events, oldest first. */
class EventRing {
  private readonly buf: (StoredChange | undefined)[];
  private start = 0;
  private size = 0;

  constructor(private readonly capacity: number) {
    this.buf = new Array<StoredChange | undefined>(capacity);
  }

  push(event: StoredChange): void {
    if (this.size < this.capacity) {
      this.buf[(this.start + this.size) % this.capacity] = event;
      this.size++;
    } else {
      this.buf[this.start] = event;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  private at(i: number): StoredChange | undefined {
    return this.buf[(this.start + i) % this.capacity];
  }

  oldestRevision(): number | undefined {
    return this.size === 0 ? undefined : this.at(0)?.revision;
  }

  /** Events with revision > `revision`, oldest first. */
  since(revision: number): StoredChange[] {
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const ev = this.at(mid);
      if (ev !== undefined && ev.revision <= revision) lo = mid + 1;
      else hi = mid;
    }
    const out: StoredChange[] = [];
    for (let i = lo; i < this.size; i++) {
      const ev = this.at(i);
      if (ev) out.push(ev);
    }
    return out;
  }
}

interface LogRecord {
  op: 'put' | 'del';
  rev: number;
  obj: StoredResource;
  json: string;
}

interface LoadedState {
  snapshotRevision: number;
  snapshotObjects: { obj: StoredResource; json: string }[];
  records: LogRecord[];
}

function corrupt(file: string, line: number, why: string): MeshError {
  return new MeshError(ErrorCodes.STORE_CORRUPT, `${file} line ${line}: ${why}`, { details: { file, line } });
}

function isStoredShape(value: unknown): value is StoredResource {
  if (value === null || typeof value !== 'object') return false;
  const v = value as { kind?: unknown; metadata?: { name?: unknown } | null };
  return typeof v.kind === 'string' && typeof v.metadata === 'object' && v.metadata !== null
    ? typeof v.metadata.name === 'string'
    : false;
}

/** The append-only log and snapshot files of one data directory. */
class DurableLog {
  records = 0;
  bytes = 0;
  syncs = 0;
  snapshots = 0;
  lastSnapshotBytes = 0;

  private constructor(
    private readonly dir: string,
    private readonly fh: FileHandle,
    private readonly lock: DataDirLock,
  ) {}

  /**
   * Locks the directory against other processes, reads snapshot and log,
   * repairs a torn tail, and opens the log for appending.
   */
  static async open(dir: string, logger: Logger): Promise<{ log: DurableLog; state: LoadedState }> {
    // The store holds the root CA key and the token signing key in clear:
    // only the owner may list or read it.
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    const lock = await lockDataDir(dir, logger);
    try {
      return await DurableLog.openLocked(dir, lock, logger);
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  private static async openLocked(
    dir: string,
    lock: DataDirLock,
    logger: Logger,
  ): Promise<{ log: DurableLog; state: LoadedState }> {
    await rm(path.join(dir, SNAPSHOT_TMP), { force: true });
    const snapshotPath = path.join(dir, SNAPSHOT_FILE);
    const logPath = path.join(dir, LOG_FILE);

    let snapshotRevision = 0;
    const snapshotObjects: { obj: StoredResource; json: string }[] = [];
    let snapshotBytes = 0;
    const snapText = await readFile(snapshotPath, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw new MeshError(ErrorCodes.STORE_UNAVAILABLE, `cannot read ${snapshotPath}: ${err.message}`, {
        cause: err,
      });
    });
    if (snapText !== undefined) {
      snapshotBytes = Buffer.byteLength(snapText);
      const lines = snapText.split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      let header: { snapshot?: unknown; revision?: unknown; objects?: unknown };
      try {
        header = JSON.parse(lines[0] ?? '') as typeof header;
      } catch {
        throw corrupt(snapshotPath, 1, 'bad snapshot header');
      }
      if (
        header.snapshot !== 1 ||
        !Number.isSafeInteger(header.revision) ||
        header.objects !== lines.length - 1
      ) {
        throw corrupt(snapshotPath, 1, 'snapshot header does not match its content');
      }
      snapshotRevision = header.revision as number;
      for (let i = 1; i < lines.length; i++) {
        const json = lines[i] ?? '';
        let obj: unknown;
        try {
          obj = JSON.parse(json);
        } catch {
          throw corrupt(snapshotPath, i + 1, 'not JSON');
        }
        if (!isStoredShape(obj)) throw corrupt(snapshotPath, i + 1, 'not a stored resource');
        snapshotObjects.push({ obj, json });
      }
    }

    const records: LogRecord[] = [];
    let logText = '';
    try {
      logText = await readFile(logPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new MeshError(
          ErrorCodes.STORE_UNAVAILABLE,
          `cannot read ${logPath}: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    }
    const lastNewline = logText.lastIndexOf('\n');
    const goodText = logText.slice(0, lastNewline + 1);
    const tornBytes = Buffer.byteLength(logText) - Buffer.byteLength(goodText);
    const lines = goodText === '' ? [] : goodText.slice(0, -1).split('\n');
    let lastRev = 0;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] ?? '';
      let rec: { op?: unknown; rev?: unknown; obj?: unknown };
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch {
        throw corrupt(logPath, i + 1, 'not JSON');
      }
      if (
        (rec.op !== 'put' && rec.op !== 'del') ||
        !Number.isSafeInteger(rec.rev) ||
        !isStoredShape(rec.obj)
      ) {
        throw corrupt(logPath, i + 1, 'not a log record');
      }
      const rev = rec.rev as number;
      if (rev <= lastRev) throw corrupt(logPath, i + 1, `revision ${rev} does not follow ${lastRev}`);
      lastRev = rev;
      if (rev <= snapshotRevision) continue;
      // Re-encode once so that the stored form is byte-identical to what a
      // live write produces; records are small.
      records.push({ op: rec.op, rev, obj: rec.obj, json: JSON.stringify(rec.obj) });
    }

    const fh = await open(logPath, 'a', 0o600);
    // A log created by an older version may be world-readable.
    await fh.chmod(0o600);
    const log = new DurableLog(dir, fh, lock);
    if (tornBytes > 0) {
      logger.warn('store log has a torn last record; truncating it', {
        file: logPath,
        tornBytes,
        keptRecords: lines.length,
      });
      try {
        await fh.truncate(Buffer.byteLength(goodText));
        await fh.sync();
      } catch (err) {
        await fh.close();
        throw err;
      }
    }
    log.records = lines.length;
    log.bytes = Buffer.byteLength(goodText);
    log.lastSnapshotBytes = snapshotBytes;
    return { log, state: { snapshotRevision, snapshotObjects, records } };
  }

  /** Appends and fdatasyncs; resolves only once the bytes are durable. */
  async append(data: string, count: number): Promise<void> {
    const buf = Buffer.from(data, 'utf8');
    let offset = 0;
    while (offset < buf.length) {
      const { bytesWritten } = await this.fh.write(buf, offset, buf.length - offset);
      offset += bytesWritten;
    }
    await this.fh.datasync();
    this.syncs++;
    this.bytes += buf.length;
    this.records += count;
  }

  /** Best effort after a failed append: cut the log back to its durable length. */
  async truncateToDurable(): Promise<void> {
    await this.fh.truncate(this.bytes);
    await this.fh.datasync();
  }

  needsCompaction(maxRecords: number, maxBytes: number, objects: number): boolean {
    return (
      this.records > Math.max(maxRecords, objects) ||
      this.bytes > Math.max(maxBytes, 2 * this.lastSnapshotBytes)
    );
  }

  /** Writes a snapshot at `revision` atomically, then empties the log. */
  async compact(revision: number, objects: string[]): Promise<void> {
    const tmp = path.join(this.dir, SNAPSHOT_TMP);
    const header = JSON.stringify({ snapshot: 1, revision, objects: objects.length });
    const body = objects.length === 0 ? `${header}\n` : `${header}\n${objects.join('\n')}\n`;
    const snap = await open(tmp, 'w', 0o600);
    try {
      await snap.writeFile(body, 'utf8');
      await snap.sync();
    } finally {
      await snap.close();
    }
    await rename(tmp, path.join(this.dir, SNAPSHOT_FILE));
    const dirHandle = await open(this.dir, 'r');
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
    // The snapshot is durable: the log's records are all at or below its
    // revision now, so emptying it loses nothing even if we crash half-way.
    await this.fh.truncate(0);
    await this.fh.datasync();
    this.records = 0;
    this.bytes = 0;
    this.snapshots++;
    this.lastSnapshotBytes = Buffer.byteLength(body);
  }

  /** Closes the log and releases the directory lock. */
  async close(): Promise<void> {
    try {
      await this.fh.close();
    } finally {
      await this.lock.release();
    }
  }
}

/**
 * In-memory store, volatile (`new MemoryStore()`) or backed by an
 * append-only log (`await MemoryStore.open({ dataDir })`).
 */
export class MemoryStore implements Store {
  /** 'file' when backed by a data directory, else 'memory'. */
  get backend(): string {
    return this.durable ? 'file' : 'memory';
  }

  private durable = false;

  private readonly logger: Logger;
  private readonly history: EventRing;
  /** kind → namespace → name → entry. */
  private readonly objects = new Map<string, Map<string, Map<string, Entry>>>();
  private objectCount = 0;
  private revision = 0;
  private durableRevision = 0;
  private readonly watchers = new Set<MemoryWatcher>();

  private log: DurableLog | undefined;
  private compactAfterRecords = DEFAULT_COMPACT_RECORDS;
  private compactAfterBytes = DEFAULT_COMPACT_BYTES;

  private pending: PendingOp[] = [];
  private inFlight: PendingOp[] = [];
  private flushing = false;
  private flushScheduled = false;
  private idleWaiters: (() => void)[] = [];
  private failure: Error | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  /** A volatile store. For a durable one use `MemoryStore.open({ dataDir })`. */
  constructor(options: MemoryStoreOptions = {}) {
    this.history = new EventRing(positiveInt('historySize', options.historySize, DEFAULT_HISTORY));
    this.logger = options.logger ?? createLogger('store');
  }

  /**
   * Opens a store. With `dataDir`, replays the snapshot and log found there
   * (repairing a torn tail) and makes every later write durable before it is
   * acknowledged. Fails with STORE_CORRUPT when the files are damaged.
   */
  static async open(
    options: Omit<FileStoreOptions, 'dataDir'> & { dataDir?: string } = {},
  ): Promise<MemoryStore> {
    const store = new MemoryStore(options);
    if (options.dataDir === undefined) return store;
    if (!path.isAbsolute(options.dataDir)) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `store dataDir must be an absolute path, got "${options.dataDir}"`,
      );
    }
    store.compactAfterRecords = positiveInt(
      'compactAfterRecords',
      options.compactAfterRecords,
      DEFAULT_COMPACT_RECORDS,
    );
    store.compactAfterBytes = positiveInt(
      'compactAfterBytes',
      options.compactAfterBytes,
      DEFAULT_COMPACT_BYTES,
    );
    const { log, state } = await DurableLog.open(options.dataDir, store.logger);
    store.load(state);
    store.log = log;
    store.durable = true;
    store.logger.info('store opened', {
      dataDir: options.dataDir,
      revision: store.revision,
      objects: store.objectCount,
      replayedRecords: state.records.length,
    });
    return store;
  }

  private load(state: LoadedState): void {
    for (const { obj, json } of state.snapshotObjects) {
      this.setEntry(this.keyOfStored(obj), { json, obj });
    }
    this.revision = state.snapshotRevision;
    for (const rec of state.records) {
      const key = this.keyOfStored(rec.obj);
      const existed = this.lookup(key) !== undefined;
      if (rec.op === 'put') this.setEntry(key, { json: rec.json, obj: rec.obj });
      else this.removeEntry(key);
      this.revision = rec.rev;
      this.history.push({
        type: rec.op === 'del' ? 'DELETED' : existed ? 'MODIFIED' : 'ADDED',
        revision: rec.rev,
        kind: key.kind,
        namespace: key.namespace,
        json: rec.json,
      });
    }
    this.durableRevision = this.revision;
  }

  private keyOfStored(obj: StoredResource): ResourceKey {
    return { kind: obj.kind, namespace: obj.metadata.namespace ?? '', name: obj.metadata.name };
  }

  /** Figures for tests and metrics. */
  stats(): MemoryStoreStats {
    return {
      revision: this.revision,
      durableRevision: this.durableRevision,
      objects: this.objectCount,
      logRecords: this.log?.records ?? 0,
      logBytes: this.log?.bytes ?? 0,
      syncs: this.log?.syncs ?? 0,
      snapshots: this.log?.snapshots ?? 0,
    };
  }

  // ---- reads -------------------------------------------------------------

  /** Returns a copy of the object, or undefined. */
  async get(key: ResourceKey): Promise<StoredResource | undefined> {
    this.checkOpen();
    const entry = this.lookup(key);
    return entry === undefined ? undefined : (JSON.parse(entry.json) as StoredResource);
  }

  /** Lists one kind, optionally one namespace and a label selector, sorted by namespace/name. */
  async list(options: ListOptions): Promise<ListResult> {
    this.checkOpen();
    const selector = options.labelSelector ? parseLabelSelector(options.labelSelector) : undefined;
    const byNs = this.objects.get(options.kind);
    const items: StoredResource[] = [];
    if (byNs) {
      const namespaces =
        options.namespace === undefined
          ? [...byNs.keys()].sort()
          : byNs.has(options.namespace)
            ? [options.namespace]
            : [];
      for (const ns of namespaces) {
        const byName = byNs.get(ns);
        if (!byName) continue;
        for (const name of [...byName.keys()].sort()) {
          const entry = byName.get(name);
          if (entry === undefined) continue;
          if (selector && !selector.matches(entry.obj.metadata.labels)) continue;
          items.push(JSON.parse(entry.json) as StoredResource);
        }
      }
    }
    return { items, revision: this.revision };
  }

  /** The revision of the newest acknowledged (durable) write. */
  async currentRevision(): Promise<number> {
    this.checkOpen();
    return this.durableRevision;
  }

  // ---- writes ------------------------------------------------------------

  /** Creates; ALREADY_EXISTS if the key is taken. Resolves once durable. */
  async create(resource: Resource): Promise<StoredResource> {
    this.checkWritable();
    const key = checkResource(resource);
    if (this.lookup(key) !== undefined) throw alreadyExistsError(key);
    return this.write(
      'ADDED',
      key,
      undefined,
      encodeStoredWithRevision(resource, newServerMeta(), this.revision + 1),
    );
  }

  /** Replaces with compare-and-set; NOT_FOUND / CONFLICT as in the Store contract. */
  async update(resource: Resource, options: WriteOptions = {}): Promise<StoredResource> {
    this.checkWritable();
    const key = checkResource(resource);
    const prev = this.lookup(key);
    if (prev === undefined) throw notFoundError(key);
    const expected = expectedVersionOf(resource, options.expectedResourceVersion);
    checkExpectedVersion(key, expected, prev.obj.metadata.resourceVersion);
    const json = encodeStoredWithRevision(resource, nextServerMeta(prev.obj, resource), this.revision + 1);
    return this.write('MODIFIED', key, prev, json);
  }

  /** Deletes with optional compare-and-set; returns the last state. */
  async delete(key: ResourceKey, options: WriteOptions = {}): Promise<StoredResource> {
    this.checkWritable();
    const prev = this.lookup(key);
    if (prev === undefined) throw notFoundError(key);
    checkExpectedVersion(
      key,
      expectedVersionOf(undefined, options.expectedResourceVersion),
      prev.obj.metadata.resourceVersion,
    );
    return this.write('DELETED', key, prev, prev.json);
  }

  /**
   * Applies a write to memory synchronously (callers above did their checks
   * in the same tick, which is what makes compare-and-set atomic) and
   * returns once it is durable.
   */
  private async write(
    type: WatchEventType,
    key: ResourceKey,
    prev: Entry | undefined,
    json: string,
  ): Promise<StoredResource> {
    const revision = ++this.revision;
    if (type === 'DELETED') this.removeEntry(key);
    else this.setEntry(key, { json, obj: JSON.parse(json) as StoredResource });
    const op = type === 'DELETED' ? 'del' : 'put';
    const event: StoredChange = { type, revision, kind: key.kind, namespace: key.namespace, json };
    await new Promise<void>((resolve, reject) => {
      this.pending.push({
        event,
        key,
        prev,
        line: `{"op":"${op}","rev":${revision},"obj":${json}}\n`,
        resolve,
        reject,
      });
      this.scheduleFlush();
    });
    return JSON.parse(json) as StoredResource;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.flushing) return;
    this.flushScheduled = true;
    // A microtask, so that every write issued in the current tick joins the
    // first batch.
    queueMicrotask(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pending.length > 0 && this.failure === undefined) {
        const batch = this.pending;
        this.pending = [];
        this.inFlight = batch;
        if (this.log) {
          try {
            await this.log.append(batch.map((op) => op.line).join(''), batch.length);
          } catch (err) {
            await this.failWrites(err);
            break;
          }
        }
        this.inFlight = [];
        const last = batch[batch.length - 1];
        if (last) this.durableRevision = last.event.revision;
        for (const op of batch) {
          this.history.push(op.event);
          this.dispatch(op.event);
          op.resolve();
        }
        if (this.log?.needsCompaction(this.compactAfterRecords, this.compactAfterBytes, this.objectCount)) {
          await this.compact(this.log);
        }
      }
    } finally {
      this.flushing = false;
      if (this.pending.length > 0 && this.failure === undefined) this.scheduleFlush();
      else {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  private async compact(log: DurableLog): Promise<void> {
    // Writes queued behind the flush are already in memory but not in the
    // log: the snapshot must show the state before them.
    const before = new Map<string, Entry | undefined>();
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const op = this.pending[i];
      if (op) before.set(formatKey(op.key), op.prev);
    }
    const lines: string[] = [];
    for (const byNs of this.objects.values()) {
      for (const byName of byNs.values()) {
        for (const entry of byName.values()) {
          if (!before.has(formatKey(this.keyOfStored(entry.obj)))) lines.push(entry.json);
        }
      }
    }
    for (const entry of before.values()) if (entry) lines.push(entry.json);
    const started = Date.now();
    try {
      await log.compact(this.durableRevision, lines);
      this.logger.info('store compacted', {
        revision: this.durableRevision,
        objects: lines.length,
        ms: Date.now() - started,
      });
    } catch (err) {
      // Not fatal: the log still holds everything the snapshot would have.
      this.logger.error('store compaction failed', { err });
    }
  }

  private async failWrites(err: unknown): Promise<void> {
    const victims = [...this.inFlight, ...this.pending];
    this.inFlight = [];
    this.pending = [];
    for (let i = victims.length - 1; i >= 0; i--) {
      const op = victims[i];
      if (!op) continue;
      if (op.prev === undefined) this.removeEntry(op.key);
      else this.setEntry(op.key, op.prev);
    }
    this.revision = this.durableRevision;
    const message = `store log write failed; the store refuses writes until restarted: ${(err as Error).message}`;
    this.failure = new MeshError(ErrorCodes.STORE_UNAVAILABLE, message, { cause: err });
    this.logger.error('store log write failed; rolled back unacknowledged writes', {
      err,
      rolledBack: victims.length,
      revision: this.durableRevision,
    });
    for (const op of victims) {
      op.reject(new MeshError(ErrorCodes.STORE_UNAVAILABLE, message, { cause: err }));
    }
    await this.log?.truncateToDurable().catch((truncErr: unknown) => {
      this.logger.error('could not truncate the store log after a failed write', { err: truncErr });
    });
  }

  // ---- watch -------------------------------------------------------------

  /**
   * Delivers every matching event with revision > fromRevision, first from
   * history, then live. A revision older than the history fails the watch
   * with REVISION_TOO_OLD.
   */
  watch(options: WatchOptions, handlers: WatchHandlers): Watch {
    const from = options.fromRevision;
    checkFromRevision(from);
    const watcher: MemoryWatcher = {
      kind: options.kind,
      namespace: options.namespace,
      handlers,
      lastRevision: Math.max(from, this.durableRevision),
      queue: [],
      draining: false,
      closed: false,
    };
    const { handle, fail } = watchHandle(watcher, this.watchers);
    if (this.closed) return fail(closedError(this.backend));
    if (from < this.durableRevision) {
      const oldest = this.history.oldestRevision();
      if (oldest === undefined || oldest > from + 1) {
        return fail(
          new MeshError(
            ErrorCodes.REVISION_TOO_OLD,
            `revision ${from} is older than the store's history (oldest ${oldest ?? this.durableRevision + 1}); relist`,
            { details: { fromRevision: from, oldestRevision: oldest ?? this.durableRevision + 1 } },
          ),
        );
      }
      for (const ev of this.history.since(from)) this.enqueue(watcher, ev);
    }
    this.watchers.add(watcher);
    return handle;
  }

  private dispatch(event: StoredChange): void {
    for (const w of this.watchers) {
      if (event.revision <= w.lastRevision) continue;
      w.lastRevision = event.revision;
      this.enqueue(w, event);
    }
  }

  private enqueue(w: MemoryWatcher, event: StoredChange): void {
    if (!watchSelects(w, event.kind, event.namespace)) return;
    w.queue.push(event);
    if (w.draining) return;
    w.draining = true;
    // Deliver outside the writer's call stack so a handler cannot re-enter
    // a half-finished write, and in order because the queue is FIFO.
    queueMicrotask(() => {
      while (w.queue.length > 0 && !w.closed) {
        const ev = w.queue.shift();
        if (!ev) break;
        deliverChange(w.handlers, ev, this.logger);
      }
      w.queue.length = 0;
      w.draining = false;
    });
  }

  // ---- lifecycle ---------------------------------------------------------

  /** Waits for pending writes to become durable, stops watchers, closes the log. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.closing = (async () => {
      if (this.flushing || this.flushScheduled || this.pending.length > 0) {
        await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      }
      for (const w of this.watchers) w.closed = true;
      this.watchers.clear();
      const log = this.log;
      this.log = undefined;
      await log?.close();
    })();
    return this.closing;
  }

  // ---- helpers -----------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw closedError(this.backend);
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.failure)
      throw new MeshError(ErrorCodes.STORE_UNAVAILABLE, this.failure.message, { cause: this.failure });
  }

  private lookup(key: ResourceKey): Entry | undefined {
    return this.objects.get(key.kind)?.get(key.namespace)?.get(key.name);
  }

  private setEntry(key: ResourceKey, entry: Entry): void {
    let byNs = this.objects.get(key.kind);
    if (!byNs) {
      byNs = new Map();
      this.objects.set(key.kind, byNs);
    }
    let byName = byNs.get(key.namespace);
    if (!byName) {
      byName = new Map();
      byNs.set(key.namespace, byName);
    }
    if (!byName.has(key.name)) this.objectCount++;
    byName.set(key.name, entry);
  }

  private removeEntry(key: ResourceKey): void {
    const byNs = this.objects.get(key.kind);
    const byName = byNs?.get(key.namespace);
    if (!byNs || !byName || !byName.delete(key.name)) return;
    this.objectCount--;
    if (byName.size === 0) byNs.delete(key.namespace);
    if (byNs.size === 0) this.objects.delete(key.kind);
  }
}
