/**
 * A store in Redis, shared by several global-cp replicas.
 *
 * Layout (all keys share the `{prefix}` hash tag, so a script touching them
 * stays on one cluster slot):
 * - `meshfed:{prefix}:obj:<kind>:<namespace>`: hash, field `<name>` → JSON.
 *   One hash per kind and namespace, so that listing a namespace reads only
 *   that namespace. `<kind>` has `%` and `:` percent-encoded, so the first
 *   `:` after it ends it; the namespace is the rest ('' for cluster-scoped).
 * - `meshfed:{prefix}:ns:<kind>`: set of the namespaces that hold objects of
 *   the kind; the write script adds a namespace with its first object and
 *   removes it with its last, and a list of every namespace walks it.
 * - `meshfed:{prefix}:rev`: the revision counter
 * - `meshfed:{prefix}:events`: the change feed, a stream whose entry IDs are
 *   `<revision>-1`, so XREAD after `<revision>-1` is exactly "every change
 *   after this revision"; trimmed with MAXLEN.
 *
 * Every write is one Lua script (CAS check, revision, HSET/HDEL, SADD/SREM, XADD), so
 * writers on any number of processes are serialised by Redis. Updates read
 * the current object first to keep uid/creationTimestamp and decide
 * `generation` (a deep spec comparison we do not want to write in Lua); the
 * script re-checks that the object is still the one read and otherwise the
 * update is retried.
 *
 * Watches: one blocking XREAD loop on a dedicated connection per store fans
 * out to every watcher in the process. A watcher that starts behind the loop
 * catches up with XRANGE on the command connection and joins the loop's
 * events afterwards (buffered meanwhile, so order is kept).
 */

import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';

import { ErrorCodes, MeshError, isMeshError } from '../errors.js';
import { createLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { Resource, ResourceKey, StoredResource } from '../resource/resource.js';
import { formatKey } from '../resource/resource.js';
import { parseLabelSelector } from './label-selector.js';
import {
  alreadyExistsError,
  checkExpectedVersion,
  checkFromRevision,
  checkResource,
  closedError,
  conflictError,
  deliverChange,
  encodeStored,
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
  WatchHandlers,
  WatchOptions,
  WriteOptions,
} from './store.js';

export interface RedisStoreOptions {
  /** `redis://[user:pass@]host:port/db`; `rediss://` for TLS. Ignored when `redis` is given. */
  url?: string;
  /** ioredis connection options (host, port, db, tls, ...), overriding `url`. */
  redis?: RedisOptions;
  /** Namespaces the keys, so that several meshes (or tests) share one Redis. Default 'default'. */
  prefix?: string;
  /** Change-feed length kept for watch-from-revision. Default 10,000. */
  streamMaxLen?: number;
  /** 'approximate' (MAXLEN ~, cheap, the default) or 'exact' (MAXLEN =). */
  streamTrim?: 'approximate' | 'exact';
  /** Per-command timeout; a Redis that does not answer yields STORE_UNAVAILABLE. Default 5,000 ms. */
  commandTimeoutMs?: number;
  /** How long `open` waits for the first connection. Default 5,000 ms. */
  connectTimeoutMs?: number;
  logger?: Logger;
}

// KEYS: object hash of (kind, ns), namespace set of kind, revision counter, stream.
// ARGV: op, name, expected rv ('' = none), base rv (update: the rv the
// caller computed from), head, tail, maxlen, trim ('~' or '='), kind, ns.
// XADD is the first write: if it fails (an ID collision after someone reset
// the counter by hand) nothing has changed, since Redis does not roll back.
const WRITE_SCRIPT = `
local cur = redis.call('HGET', KEYS[1], ARGV[2])
local op = ARGV[1]
if op == 'create' then
  if cur then return {'EXISTS'} end
else
  if not cur then return {'NOTFOUND'} end
  local _, e = string.find(cur, '"metadata":{"resourceVersion":"', 1, true)
  if not e then return {'CORRUPT'} end
  local rv = string.match(cur, '^%d+', e + 1)
  if not rv then return {'CORRUPT'} end
  if ARGV[3] ~= '' and ARGV[3] ~= rv then return {'CONFLICT', rv} end
  if op == 'update' and ARGV[4] ~= rv then return {'RETRY', rv} end
end
local rev = tonumber(redis.call('GET', KEYS[3]) or '0') + 1
local json
local typ
if op == 'delete' then
  json = cur
  typ = 'DELETED'
else
  json = ARGV[5] .. rev .. ARGV[6]
  if op == 'create' then typ = 'ADDED' else typ = 'MODIFIED' end
end
redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[8], ARGV[7], rev .. '-1', 't', typ, 'k', ARGV[9], 'n', ARGV[10], 'o', json)
redis.call('SET', KEYS[3], rev)
if op == 'delete' then
  redis.call('HDEL', KEYS[1], ARGV[2])
  -- The hash is gone with its last field; the namespace goes with it.
  if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[10]) end
else
  redis.call('HSET', KEYS[1], ARGV[2], json)
  if op == 'create' then redis.call('SADD', KEYS[2], ARGV[10]) end
end
return {'OK', rev, json}
`;

// KEYS: revision counter, object hash of (kind, ns). Items and revision from
// one atomic read: {rev, {name, json, ...}}.
const LIST_NAMESPACE_SCRIPT = `
return {redis.call('GET', KEYS[1]) or '0', redis.call('HGETALL', KEYS[2])}
`;

// KEYS: revision counter, namespace set of kind. ARGV: the object-hash key
// without the namespace. Every namespace in one atomic read:
// {rev, {ns, {name, json, ...}, ns, {...}, ...}}. The hashes are named from
// the set rather than passed in KEYS (they are not known beforehand); they
// share the set's hash tag, so they are on the script's cluster slot.
const LIST_ALL_SCRIPT = `
local out = {}
for _, ns in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  out[#out + 1] = ns
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. ns)
end
return {redis.call('GET', KEYS[1]) or '0', out}
`;

interface ScriptCommands {
  meshfedWrite(hash: string, nsSet: string, rev: string, stream: string, ...argv: string[]): Promise<unknown>;
  meshfedListNamespace(rev: string, hash: string): Promise<unknown>;
  meshfedListAll(rev: string, nsSet: string, hashPrefix: string): Promise<unknown>;
}

interface RedisWatcher {
  kind: string | undefined;
  namespace: string | undefined;
  handlers: WatchHandlers;
  lastRevision: number;
  /** False while catching up from history; the loop's events wait in `buffer`. */
  live: boolean;
  buffer: StoredChange[];
  closed: boolean;
}

const DEFAULT_MAX_LEN = 10_000;
const BLOCK_MS = 2_000;
const READ_COUNT = 1_000;
const MAX_UPDATE_ATTEMPTS = 50;

function toStr(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'number') return String(value);
  throw new MeshError(ErrorCodes.STORE_CORRUPT, `unexpected Redis reply element ${JSON.stringify(value)}`);
}

function asArray(value: unknown): unknown[] {
  if (!Array.isArray(value)) {
    throw new MeshError(ErrorCodes.STORE_CORRUPT, `unexpected Redis reply ${JSON.stringify(value)}`);
  }
  return value;
}

/** Parses a stored object; STORE_CORRUPT (naming where it was) if it is not JSON. */
function parseStored(json: string, where: string): StoredResource {
  try {
    return JSON.parse(json) as StoredResource;
  } catch {
    throw new MeshError(ErrorCodes.STORE_CORRUPT, `stored object ${where} is not JSON`, {
      details: { key: where },
    });
  }
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function revisionOfId(id: string): number {
  const dash = id.indexOf('-');
  const rev = Number(dash < 0 ? id : id.slice(0, dash));
  if (!Number.isSafeInteger(rev))
    throw new MeshError(ErrorCodes.STORE_CORRUPT, `bad change-feed entry id ${id}`);
  return rev;
}

/** `[[id, [field, value, ...]], ...]` → events. */
function parseEntries(entries: unknown): StoredChange[] {
  const out: StoredChange[] = [];
  for (const raw of asArray(entries)) {
    const [id, fields] = asArray(raw);
    const f = asArray(fields).map(toStr);
    const get = (name: string): string => {
      for (let i = 0; i + 1 < f.length; i += 2) if (f[i] === name) return f[i + 1] ?? '';
      throw new MeshError(ErrorCodes.STORE_CORRUPT, `change-feed entry ${toStr(id)} has no field ${name}`);
    };
    const type = get('t');
    if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED') {
      throw new MeshError(ErrorCodes.STORE_CORRUPT, `change-feed entry ${toStr(id)} has type ${type}`);
    }
    out.push({
      revision: revisionOfId(toStr(id)),
      type,
      kind: get('k'),
      namespace: get('n'),
      json: get('o'),
    });
  }
  return out;
}

function tooOld(from: number, why: string): MeshError {
  return new MeshError(ErrorCodes.REVISION_TOO_OLD, `revision ${from} is too old: ${why}; relist`, {
    details: { fromRevision: from },
  });
}

/** Store contract over Redis; see the file comment for the layout. */
export class RedisStore implements Store {
  readonly backend = 'redis';

  private readonly keyBase: string;
  private readonly revKey: string;
  private readonly streamKey: string;
  private readonly maxLen: string;
  private readonly trim: '~' | '=';
  private readonly logger: Logger;
  private readonly scripts: ScriptCommands;

  private readonly watchers = new Set<RedisWatcher>();
  /** Last revision the XREAD loop has read; undefined while no loop runs. */
  private loopCursor: number | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly client: Redis,
    private readonly blocker: Redis,
    options: RedisStoreOptions,
  ) {
    const prefix = options.prefix ?? 'default';
    this.keyBase = `meshfed:{${prefix}}:`;
    this.revKey = `${this.keyBase}rev`;
    this.streamKey = `${this.keyBase}events`;
    const maxLen = options.streamMaxLen ?? DEFAULT_MAX_LEN;
    if (!Number.isSafeInteger(maxLen) || maxLen < 1) {
      throw new MeshError(ErrorCodes.CONFIG, `streamMaxLen must be a positive integer, got ${maxLen}`);
    }
    this.maxLen = String(maxLen);
    this.trim = options.streamTrim === 'exact' ? '=' : '~';
    this.logger = options.logger ?? createLogger('store');
    client.defineCommand('meshfedWrite', { numberOfKeys: 4, lua: WRITE_SCRIPT });
    client.defineCommand('meshfedListNamespace', { numberOfKeys: 2, lua: LIST_NAMESPACE_SCRIPT });
    client.defineCommand('meshfedListAll', { numberOfKeys: 2, lua: LIST_ALL_SCRIPT });
    this.scripts = client as unknown as ScriptCommands;
  }

  /**
   * Connects (a command connection and a watch connection) and resolves once
   * both are ready; STORE_UNAVAILABLE if Redis cannot be reached in time.
   */
  static async open(options: RedisStoreOptions = {}): Promise<RedisStore> {
    const logger = options.logger ?? createLogger('store');
    let opened = false;
    const base: RedisOptions = {
      ...(options.redis ?? {}),
      protocol: 2,
      lazyConnect: true,
      // Fail calls fast while disconnected instead of queueing them, and never
      // resend a write whose reply was lost: the caller gets
      // STORE_UNAVAILABLE and decides (a CAS retry is safe, a blind one is not).
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      connectTimeout: options.connectTimeoutMs ?? 5_000,
      // No retries until the first connection worked, so that `open` fails
      // fast on a wrong address; after that, reconnect for ever.
      retryStrategy: (times: number) => (opened ? Math.min(50 * times, 1_000) : null),
      // ioredis arms this timer even for a socket that is already closed;
      // keep it short so that closing a store never holds the process.
      disconnectTimeout: 200,
    };
    const make = (extra: RedisOptions): Redis =>
      options.redis === undefined && options.url !== undefined
        ? new Redis(options.url, { ...base, ...extra })
        : new Redis({ ...base, ...extra });
    const client = make({
      commandTimeout: options.commandTimeoutMs ?? 5_000,
      connectionName: 'meshfed-store',
    });
    const blocker = make({ connectionName: 'meshfed-store-watch' });
    for (const conn of [client, blocker]) {
      conn.on('error', (err: Error) => logger.debug('redis connection error', { err }));
    }
    try {
      await Promise.all([client.connect(), blocker.connect()]);
      opened = true;
    } catch (err) {
      for (const conn of [client, blocker]) if (conn.status !== 'end') conn.disconnect();
      throw new MeshError(
        ErrorCodes.STORE_UNAVAILABLE,
        `cannot connect to Redis: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    return new RedisStore(client, blocker, options);
  }

  /** The object hash of (kind, namespace) is this plus the namespace. */
  private hashPrefix(kind: string): string {
    return `${this.keyBase}obj:${kind.replace(/%/g, '%25').replace(/:/g, '%3A')}:`;
  }

  private hashKey(kind: string, namespace: string): string {
    return this.hashPrefix(kind) + namespace;
  }

  private namespaceSetKey(kind: string): string {
    return `${this.keyBase}ns:${kind}`;
  }

  /** Runs a Redis call, mapping transport failures to STORE_UNAVAILABLE. */
  private async run<T>(what: string, call: () => Promise<T>): Promise<T> {
    if (this.closed) throw closedError(this.backend);
    try {
      return await call();
    } catch (err) {
      if (isMeshError(err)) throw err;
      if (this.closed) throw closedError(this.backend);
      throw new MeshError(ErrorCodes.STORE_UNAVAILABLE, `redis ${what} failed: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  // ---- reads -------------------------------------------------------------

  /** Returns the object (a fresh copy), or undefined. */
  async get(key: ResourceKey): Promise<StoredResource | undefined> {
    const json = await this.run('HGET', () =>
      this.client.hget(this.hashKey(key.kind, key.namespace), key.name),
    );
    return json === null ? undefined : parseStored(json, formatKey(key));
  }

  /**
   * Lists one kind atomically with the revision it reflects, sorted by
   * namespace/name. A namespace list reads only that namespace's hash.
   */
  async list(options: ListOptions): Promise<ListResult> {
    const selector = options.labelSelector ? parseLabelSelector(options.labelSelector) : undefined;
    const { kind, namespace } = options;
    const reply = asArray(
      await this.run('list', () =>
        namespace === undefined
          ? this.scripts.meshfedListAll(this.revKey, this.namespaceSetKey(kind), this.hashPrefix(kind))
          : this.scripts.meshfedListNamespace(this.revKey, this.hashKey(kind, namespace)),
      ),
    );
    const revision = Number(toStr(reply[0]));
    const groups: { namespace: string; fields: unknown[] }[] = [];
    if (namespace === undefined) {
      const flat = asArray(reply[1]);
      for (let i = 0; i + 1 < flat.length; i += 2) {
        groups.push({ namespace: toStr(flat[i]), fields: asArray(flat[i + 1]) });
      }
      groups.sort((a, b) => compareStrings(a.namespace, b.namespace));
    } else {
      groups.push({ namespace, fields: asArray(reply[1]) });
    }
    const items: StoredResource[] = [];
    for (const group of groups) {
      const byName: { name: string; json: string }[] = [];
      for (let i = 0; i + 1 < group.fields.length; i += 2) {
        byName.push({ name: toStr(group.fields[i]), json: toStr(group.fields[i + 1]) });
      }
      byName.sort((a, b) => compareStrings(a.name, b.name));
      for (const { name, json } of byName) {
        const obj = parseStored(json, formatKey({ kind, namespace: group.namespace, name }));
        if (!selector || selector.matches(obj.metadata.labels)) items.push(obj);
      }
    }
    return { items, revision };
  }

  /** The revision of the newest write (every write is acknowledged once Redis ran it). */
  async currentRevision(): Promise<number> {
    const value = await this.run('GET', () => this.client.get(this.revKey));
    return value === null ? 0 : Number(value);
  }

  // ---- writes ------------------------------------------------------------

  private async runWrite(
    op: 'create' | 'update' | 'delete',
    key: ResourceKey,
    expected: string,
    base: string,
    head: string,
    tail: string,
  ): Promise<{ status: string; rv: string; json: string }> {
    const reply = asArray(
      await this.run('write', () =>
        this.scripts.meshfedWrite(
          this.hashKey(key.kind, key.namespace),
          this.namespaceSetKey(key.kind),
          this.revKey,
          this.streamKey,
          op,
          key.name,
          expected,
          base,
          head,
          tail,
          this.maxLen,
          this.trim,
          key.kind,
          key.namespace,
        ),
      ),
    );
    const status = toStr(reply[0]);
    switch (status) {
      case 'OK':
        return { status, rv: toStr(reply[1]), json: toStr(reply[2]) };
      case 'EXISTS':
        throw alreadyExistsError(key);
      case 'NOTFOUND':
        throw notFoundError(key);
      case 'CONFLICT':
        throw conflictError(key, expected, toStr(reply[1]));
      case 'RETRY':
        return { status, rv: toStr(reply[1]), json: '' };
      default:
        throw new MeshError(
          ErrorCodes.STORE_CORRUPT,
          `stored ${key.kind} ${key.namespace}/${key.name} is unreadable`,
        );
    }
  }

  /** Creates; ALREADY_EXISTS if the key is taken. */
  async create(resource: Resource): Promise<StoredResource> {
    const key = checkResource(resource);
    const { head, tail } = encodeStored(resource, newServerMeta());
    const result = await this.runWrite('create', key, '', '', head, tail);
    return JSON.parse(result.json) as StoredResource;
  }

  /** Replaces with compare-and-set; NOT_FOUND / CONFLICT as in the Store contract. */
  async update(resource: Resource, options: WriteOptions = {}): Promise<StoredResource> {
    const key = checkResource(resource);
    const expected = expectedVersionOf(resource, options.expectedResourceVersion);
    for (let attempt = 0; attempt < MAX_UPDATE_ATTEMPTS; attempt++) {
      const current = await this.get(key);
      if (current === undefined) throw notFoundError(key);
      checkExpectedVersion(key, expected, current.metadata.resourceVersion);
      const { head, tail } = encodeStored(resource, nextServerMeta(current, resource));
      const result = await this.runWrite(
        'update',
        key,
        expected ?? '',
        current.metadata.resourceVersion,
        head,
        tail,
      );
      if (result.status === 'OK') return JSON.parse(result.json) as StoredResource;
      // Someone wrote in between and the caller did not pin a version: the
      // object we derived generation/uid from is stale, so derive again.
    }
    throw new MeshError(
      ErrorCodes.CONFLICT,
      `${key.kind}/${key.namespace}/${key.name}: gave up after ${MAX_UPDATE_ATTEMPTS} concurrent modifications`,
    );
  }

  /** Deletes with optional compare-and-set; returns the last state. */
  async delete(key: ResourceKey, options: WriteOptions = {}): Promise<StoredResource> {
    const expected = expectedVersionOf(undefined, options.expectedResourceVersion);
    const result = await this.runWrite('delete', key, expected ?? '', '', '', '');
    return JSON.parse(result.json) as StoredResource;
  }

  // ---- watch -------------------------------------------------------------

  /**
   * Delivers every matching event with revision > fromRevision, in order.
   * REVISION_TOO_OLD when the change feed was trimmed past it (also after a
   * reconnect), STORE_UNAVAILABLE when Redis answers with an error.
   */
  watch(options: WatchOptions, handlers: WatchHandlers): Watch {
    const from = options.fromRevision;
    checkFromRevision(from);
    const watcher: RedisWatcher = {
      kind: options.kind,
      namespace: options.namespace,
      handlers,
      lastRevision: from,
      live: true,
      buffer: [],
      closed: false,
    };
    const { handle, fail } = watchHandle(watcher, this.watchers);
    if (this.closed) return fail(closedError(this.backend));
    this.watchers.add(watcher);
    if (this.loopCursor === undefined) {
      this.loopCursor = from;
      void this.runLoop();
    } else if (from < this.loopCursor) {
      watcher.live = false;
      void this.catchUp(watcher, this.loopCursor);
    }
    return handle;
  }

  private failWatcher(w: RedisWatcher, err: Error): void {
    if (w.closed) return;
    w.closed = true;
    this.watchers.delete(w);
    try {
      w.handlers.onError(err);
    } catch (handlerErr) {
      this.logger.error('watch error handler threw', { err: handlerErr });
    }
  }

  private deliver(w: RedisWatcher, ev: StoredChange): void {
    if (w.closed || ev.revision <= w.lastRevision) return;
    if (ev.revision > w.lastRevision + 1) {
      this.failWatcher(w, tooOld(w.lastRevision, `the change feed now starts at ${ev.revision}`));
      return;
    }
    w.lastRevision = ev.revision;
    if (watchSelects(w, ev.kind, ev.namespace)) deliverChange(w.handlers, ev, this.logger);
  }

  /** Replays (lastRevision, target] from the stream, then releases the buffered live events. */
  private async catchUp(w: RedisWatcher, target: number): Promise<void> {
    try {
      while (!w.closed && w.lastRevision < target) {
        const from = w.lastRevision;
        const reply = await this.client.call(
          'XRANGE',
          this.streamKey,
          `(${from}-1`,
          `${target}-1`,
          'COUNT',
          String(READ_COUNT),
        );
        const events = parseEntries(reply);
        if (events.length === 0) {
          this.failWatcher(w, tooOld(from, 'the change feed no longer holds it'));
          return;
        }
        for (const ev of events) this.deliver(w, ev);
      }
      for (const ev of w.buffer) this.deliver(w, ev);
      w.buffer = [];
      w.live = true;
    } catch (err) {
      if (this.closed) return;
      this.failWatcher(
        w,
        isMeshError(err)
          ? err
          : new MeshError(ErrorCodes.STORE_UNAVAILABLE, `watch catch-up failed: ${(err as Error).message}`, {
              cause: err,
            }),
      );
    }
  }

  private async runLoop(): Promise<void> {
    while (!this.closed && this.watchers.size > 0 && this.loopCursor !== undefined) {
      let reply: unknown;
      try {
        reply = await this.blocker.call(
          'XREAD',
          'COUNT',
          String(READ_COUNT),
          'BLOCK',
          String(BLOCK_MS),
          'STREAMS',
          this.streamKey,
          `${this.loopCursor}-1`,
        );
      } catch (err) {
        if (this.closed) break;
        if (this.blocker.status === 'ready') {
          // Redis answered with an error: not something waiting fixes.
          this.failAll(
            new MeshError(ErrorCodes.STORE_UNAVAILABLE, `watch read failed: ${(err as Error).message}`, {
              cause: err,
            }),
          );
          break;
        }
        this.logger.warn('watch connection lost; resuming when Redis is back', {
          err,
          revision: this.loopCursor,
        });
        await this.resumeAfterReconnect();
        continue;
      }
      if (reply === null) continue;
      try {
        for (const stream of asArray(reply)) {
          for (const ev of parseEntries(asArray(stream)[1])) {
            this.loopCursor = ev.revision;
            for (const w of this.watchers) {
              if (w.live) this.deliver(w, ev);
              else w.buffer.push(ev);
            }
          }
        }
      } catch (err) {
        this.failAll(err as Error);
        break;
      }
    }
    // Synchronously with the check above: a watch() arriving later starts a
    // new loop instead of relying on this one.
    this.loopCursor = undefined;
  }

  /** Waits for the watch connection to come back and checks history survived. */
  private async resumeAfterReconnect(): Promise<void> {
    while (!this.closed && this.watchers.size > 0) {
      if (this.blocker.status === 'ready') {
        try {
          const rev = Number((await this.blocker.get(this.revKey)) ?? '0');
          const cursor = this.loopCursor ?? 0;
          if (rev < cursor) {
            // Redis came back without our data (restarted without
            // persistence): the revisions we hold mean nothing any more.
            this.failAll(tooOld(cursor, `the store's revision went back to ${rev}`));
          }
          return;
        } catch {
          // Lost again: keep waiting.
        }
      }
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.blocker.off('ready', done);
          resolve();
        };
        const timer = setTimeout(done, 250);
        this.blocker.once('ready', done);
      });
    }
  }

  private failAll(err: Error): void {
    for (const w of [...this.watchers]) this.failWatcher(w, err);
  }

  // ---- lifecycle ---------------------------------------------------------

  /** Stops watchers (without errors) and closes both connections. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    for (const w of this.watchers) w.closed = true;
    this.watchers.clear();
    this.closing = (async () => {
      // The watch connection is usually blocked in XREAD: drop it rather
      // than wait for QUIT to be served after the block times out.
      this.blocker.disconnect();
      try {
        await this.client.quit();
      } catch {
        this.client.disconnect();
      }
    })();
    return this.closing;
  }
}
