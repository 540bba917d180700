import { randomUUID } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';

import { ErrorCodes, isMeshError } from '../../core/errors.js';
import { setLogSink } from '../../core/log.js';
import { RedisStore } from '../../core/store/store-redis.js';
import { createStore } from '../../core/store/store-registry.js';
import type { Store } from '../../core/store/store.js';
import { startRedisServer } from '../common/redis-server.js';
import type { RedisServer } from '../common/redis-server.js';
import { waitFor } from '../common/wait.js';
import { collect, describeStoreContract, expectMeshError, vs } from './store-contract.js';

let server: RedisServer;

beforeAll(async () => {
  setLogSink(() => {});
  server = await startRedisServer({ persistent: true });
});
afterAll(async () => {
  await server.stop();
});

const prefix = (): string => `t-${randomUUID()}`;

/** Retries `op` while it fails with STORE_UNAVAILABLE (reconnecting); any other error ends it. */
async function retryWhileUnavailable<T>(op: () => Promise<T>): Promise<T> {
  const outcome = await waitFor(
    async () => {
      try {
        return { value: await op() };
      } catch (err) {
        // Thrown: not yet (and reported on timeout). Returned: give up now.
        if (isMeshError(err, ErrorCodes.STORE_UNAVAILABLE)) throw err;
        return { err };
      }
    },
    { intervalMs: 20, what: 'Redis to answer again' },
  );
  if ('err' in outcome) throw outcome.err;
  return outcome.value;
}

/**
 * Runs `body` with a store on a fresh prefix (opened by `open`, RedisStore by
 * default) and a raw connection to the same Redis; closes both after.
 */
async function withStore(
  body: (store: Store, raw: Redis, p: string) => Promise<void>,
  open: (p: string) => Promise<Store> = (p) => RedisStore.open({ url: server.url, prefix: p }),
): Promise<void> {
  const p = prefix();
  const store = await open(p);
  const raw = new Redis(server.url);
  try {
    await body(store, raw, p);
  } finally {
    raw.disconnect();
    await store.close();
  }
}

describeStoreContract('redis', async ({ historySize }) =>
  RedisStore.open({ url: server.url, prefix: prefix(), streamMaxLen: historySize, streamTrim: 'exact' }),
);

describe('RedisStore', () => {
  it('is what redis://host:port/db?prefix= opens, with the documented key layout', async () => {
    const open = (p: string): Promise<Store> => createStore(`${server.url}/0?prefix=${p}`);
    await withStore(async (store, raw, p) => {
      expect(store.backend).toBe('redis');
      const created = await store.create(vs('a', 'ns'));
      await store.create({ ...vs('c', undefined), kind: 'Odd:Kind%' });
      const json = await raw.hget(`meshfed:{${p}}:obj:VirtualService:ns`, 'a');
      expect(JSON.parse(json ?? 'null')).toEqual(created);
      expect(await raw.smembers(`meshfed:{${p}}:ns:VirtualService`)).toEqual(['ns']);
      expect(await raw.hkeys(`meshfed:{${p}}:obj:Odd%3AKind%25:`)).toEqual(['c']);
      expect(await raw.smembers(`meshfed:{${p}}:ns:Odd:Kind%`)).toEqual(['']);
      expect(await raw.get(`meshfed:{${p}}:rev`)).toBe('2');
      const entries = await raw.xrange(`meshfed:{${p}}:events`, '-', '+');
      expect(entries.map(([id]) => id)).toEqual(['1-1', '2-1']);

      // The namespace leaves the set with its last object, and its hash is gone.
      await store.delete({ kind: 'VirtualService', namespace: 'ns', name: 'a' });
      expect(await raw.smembers(`meshfed:{${p}}:ns:VirtualService`)).toEqual([]);
      expect(await raw.exists(`meshfed:{${p}}:obj:VirtualService:ns`)).toBe(0);
    }, open);
  });

  it('lists a namespace from its own hash, without reading other namespaces', async () => {
    await withStore(async (store, raw, p) => {
      await store.create(vs('a', 'ns'));
      await store.create(vs('b', 'ns'));
      await store.create(vs('m', undefined));
      await store.create(vs('x', 'other'));
      // Damage another namespace: a list that read it would fail.
      await raw.hset(`meshfed:{${p}}:obj:VirtualService:other`, 'x', '{not json');
      const names = async (namespace: string): Promise<string[]> =>
        (await store.list({ kind: 'VirtualService', namespace })).items.map((i) => i.metadata.name);
      expect(await names('ns')).toEqual(['a', 'b']);
      expect(await names('')).toEqual(['m']);
      const err = await expectMeshError(store.list({ kind: 'VirtualService' }), ErrorCodes.STORE_CORRUPT);
      expect(err.message).toContain('VirtualService/other/x');
    });
  });

  it('lets two stores on one Redis and prefix see each other through watch and CAS', async () => {
    const p = prefix();
    const a = await RedisStore.open({ url: server.url, prefix: p });
    const b = await RedisStore.open({ url: server.url, prefix: p });
    const other = await RedisStore.open({ url: server.url, prefix: prefix() });
    try {
      const wa = collect(a, { fromRevision: 0 });
      const wb = collect(b, { fromRevision: 0 });
      const wOther = collect(other, { fromRevision: 0 });
      const x = await a.create(vs('x', 'ns'));
      await b.update({ ...x, spec: { hosts: ['from-b'] } });
      await expectMeshError(a.update({ ...x, spec: { hosts: ['stale'] } }), ErrorCodes.CONFLICT);
      await b.create(vs('y', 'ns'));
      for (const w of [wa, wb]) {
        const events = await w.waitForEvents(3);
        expect(events.map((e) => `${e.type}:${e.object.metadata.name}@${e.revision}`)).toEqual([
          'ADDED:x@1',
          'MODIFIED:x@2',
          'ADDED:y@3',
        ]);
      }
      expect((await a.get({ kind: 'VirtualService', namespace: 'ns', name: 'x' }))?.spec).toEqual({
        hosts: ['from-b'],
      });
      expect(await other.currentRevision()).toBe(0);
      expect(wOther.events).toEqual([]);
      // A late watcher behind the loop catches up from history, then goes live.
      const late = collect(a, { fromRevision: 1 });
      await late.waitForEvents(2);
      await b.delete({ kind: 'VirtualService', namespace: 'ns', name: 'y' });
      await late.waitForEvents(3);
      expect(late.events.map((e) => e.revision)).toEqual([2, 3, 4]);
    } finally {
      await Promise.all([a.close(), b.close(), other.close()]);
    }
  });

  it('resumes watches after the watch connection is killed', async () => {
    await withStore(async (store, admin) => {
      const w = collect(store, { fromRevision: 0 });
      await store.create(vs('before', 'ns'));
      await w.waitForEvents(1);
      const killed = await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      expect(Number(killed)).toBeGreaterThanOrEqual(2);
      // Writes while the store reconnects fail with STORE_UNAVAILABLE; retry until one lands.
      await retryWhileUnavailable(() => store.create(vs('after', 'ns')));
      const events = await w.waitForEvents(2);
      expect(events.map((e) => e.object.metadata.name)).toEqual(['before', 'after']);
      expect(w.errors).toEqual([]);
    });
  });

  it('fails calls with STORE_UNAVAILABLE while Redis is down and resumes watches after a restart', async () => {
    const p = prefix();
    const store = await RedisStore.open({ url: server.url, prefix: p });
    try {
      const w = collect(store, { fromRevision: 0 });
      await store.create(vs('one', 'ns'));
      await w.waitForEvents(1);
      await server.kill();
      await expectMeshError(
        store.get({ kind: 'VirtualService', namespace: 'ns', name: 'one' }),
        ErrorCodes.STORE_UNAVAILABLE,
      );
      await expectMeshError(store.create(vs('two', 'ns')), ErrorCodes.STORE_UNAVAILABLE);
      await server.restart();
      await retryWhileUnavailable(() => store.create(vs('three', 'ns')));
      const events = await w.waitForEvents(2);
      expect(events.map((e) => `${e.object.metadata.name}@${e.revision}`)).toEqual(['one@1', 'three@2']);
    } finally {
      await store.close();
    }
  });

  it('fails watches with REVISION_TOO_OLD when Redis comes back without the history', async () => {
    await withStore(async (store, admin, p) => {
      await store.create(vs('a', 'ns'));
      await store.create(vs('b', 'ns'));
      const w = collect(store, { fromRevision: 2 });
      // Simulate a Redis that lost this prefix's data, then drop the connection.
      await admin.del(
        `meshfed:{${p}}:rev`,
        `meshfed:{${p}}:events`,
        `meshfed:{${p}}:ns:VirtualService`,
        `meshfed:{${p}}:obj:VirtualService:ns`,
      );
      await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      const err = await w.waitForError();
      expect(isMeshError(err, ErrorCodes.REVISION_TOO_OLD)).toBe(true);
    });
  });

  it('fails open with STORE_UNAVAILABLE when nothing listens', async () => {
    await expectMeshError(
      RedisStore.open({ url: 'redis://127.0.0.1:1', connectTimeoutMs: 500 }),
      ErrorCodes.STORE_UNAVAILABLE,
    );
  });
});
