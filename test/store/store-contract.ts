/**
 * The Store contract (core/store/store.ts) as one suite that every backend
 * runs: `describeStoreContract('memory', (opts) => ...)`.
 */

import { afterEach, describe, expect, it as jestIt } from '@jest/globals';

import { ErrorCodes, isMeshError } from '../../core/errors.js';
import type { ErrorCode } from '../../core/errors.js';
import type { Resource, StoredResource } from '../../core/resource/resource.js';
import type { Store, WatchEvent, WatchOptions } from '../../core/store/store.js';
import { waitFor } from '../common/wait.js';

export interface ContractStoreOptions {
  /** The backend must keep at least this many events and forget older ones once far more were written. */
  historySize: number;
}

export type MakeStore = (options: ContractStoreOptions) => Promise<Store>;

export interface ContractOptions {
  /**
   * Cases a backend cannot hold by its nature, by title, each with the
   * reason; they are reported as skipped with the reason in their title.
   */
  unsupported?: Record<string, string>;
}

export function vs(
  name: string,
  namespace: string | undefined,
  labels?: Record<string, string>,
  spec: Record<string, unknown> = { hosts: [name] },
): Resource {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name, ...(namespace === undefined ? {} : { namespace }), ...(labels ? { labels } : {}) },
    spec,
  };
}

/** Polls `cond` every few ms until it holds or the deadline passes. */
export async function waitUntil(what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  await waitFor(cond, { what, timeoutMs, intervalMs: 5 });
}

export async function expectMeshError(promise: Promise<unknown>, code: ErrorCode): Promise<Error> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  if (!isMeshError(caught)) throw new Error(`expected MeshError ${code}, got ${String(caught)}`);
  expect(caught.code).toBe(code);
  return caught;
}

export interface Collector {
  events: WatchEvent[];
  errors: Error[];
  close(): void;
  waitForEvents(n: number): Promise<WatchEvent[]>;
  waitForError(): Promise<Error>;
}

export function collect(store: Store, options: WatchOptions): Collector {
  const events: WatchEvent[] = [];
  const errors: Error[] = [];
  const watch = store.watch(options, {
    onEvent: (ev) => events.push(ev),
    onError: (err) => errors.push(err),
  });
  return {
    events,
    errors,
    close: () => watch.close(),
    async waitForEvents(n) {
      await waitUntil(
        `${n} watch events (have ${events.length}, errors ${errors.map(String).join()})`,
        () => {
          return events.length >= n || errors.length > 0;
        },
      );
      if (errors.length > 0) throw errors[0];
      return events;
    },
    async waitForError() {
      await waitUntil('a watch error', () => errors.length > 0);
      return errors[0] as Error;
    },
  };
}

function summary(ev: WatchEvent): string {
  return `${ev.type} ${ev.object.metadata.namespace ?? ''}/${ev.object.metadata.name}@${ev.revision}`;
}

export function describeStoreContract(
  name: string,
  makeStore: MakeStore,
  contract: ContractOptions = {},
): void {
  const unsupported = new Map(Object.entries(contract.unsupported ?? {}));
  const it = (title: string, fn: () => Promise<void>): void => {
    const reason = unsupported.get(title);
    unsupported.delete(title);
    if (reason === undefined) jestIt(title, fn);
    else jestIt.skip(`${title} (unsupported: ${reason})`, fn);
  };
  describe(`Store contract: ${name}`, () => {
    const open: Store[] = [];
    const make = async (options: Partial<ContractStoreOptions> = {}): Promise<Store> => {
      const store = await makeStore({ historySize: options.historySize ?? 1000 });
      open.push(store);
      return store;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((s) => s.close()));
    });

    it('creates and gets with server metadata filled in', async () => {
      const store = await make();
      const rev0 = await store.currentRevision();
      const created = await store.create(vs('reviews', 'default', { app: 'reviews' }));
      expect(created.metadata.resourceVersion).toBe(String(rev0 + 1));
      expect(created.metadata.generation).toBe(1);
      expect(created.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
      expect(Number.isNaN(Date.parse(created.metadata.creationTimestamp))).toBe(false);
      expect(await store.currentRevision()).toBe(rev0 + 1);

      const got = await store.get({ kind: 'VirtualService', namespace: 'default', name: 'reviews' });
      expect(got).toEqual(created);
      expect(got?.spec).toEqual({ hosts: ['reviews'] });
      expect(got?.metadata.labels).toEqual({ app: 'reviews' });
      expect(
        await store.get({ kind: 'VirtualService', namespace: 'other', name: 'reviews' }),
      ).toBeUndefined();
      expect(
        await store.get({ kind: 'DestinationRule', namespace: 'default', name: 'reviews' }),
      ).toBeUndefined();
    });

    it('ignores caller-supplied server metadata on create', async () => {
      const store = await make();
      const input = vs('a', 'ns');
      input.metadata.uid = 'forged';
      input.metadata.generation = 7;
      input.metadata.resourceVersion = '999';
      input.metadata.creationTimestamp = '2001-01-01T00:00:00.000Z';
      const created = await store.create(input);
      expect(created.metadata.uid).not.toBe('forged');
      expect(created.metadata.generation).toBe(1);
      expect(created.metadata.resourceVersion).toBe(String(await store.currentRevision()));
      expect(created.metadata.creationTimestamp).not.toBe('2001-01-01T00:00:00.000Z');
    });

    it('refuses a second create with ALREADY_EXISTS and does not consume a revision', async () => {
      const store = await make();
      await store.create(vs('a', 'ns'));
      const rev = await store.currentRevision();
      const err = await expectMeshError(
        store.create(vs('a', 'ns', undefined, { hosts: ['x'] })),
        ErrorCodes.ALREADY_EXISTS,
      );
      expect(err.message).toContain('VirtualService/ns/a');
      expect(await store.currentRevision()).toBe(rev);
      expect((await store.get({ kind: 'VirtualService', namespace: 'ns', name: 'a' }))?.spec).toEqual({
        hosts: ['a'],
      });
    });

    it('stores any kind, including internal ones and cluster-scoped objects', async () => {
      const store = await make();
      await store.create({
        apiVersion: 'meshfed.io/internal',
        kind: 'ZoneInsight',
        metadata: { name: 'zone-a' },
        spec: {},
      });
      const got = await store.get({ kind: 'ZoneInsight', namespace: '', name: 'zone-a' });
      expect(got?.kind).toBe('ZoneInsight');
    });

    it('lists by namespace, across namespaces, cluster-scoped, and by label selector', async () => {
      const store = await make();
      await store.create(vs('b', 'ns1', { app: 'web', tier: 'front' }));
      await store.create(vs('a', 'ns1', { app: 'api', tier: 'back' }));
      await store.create(vs('c', 'ns2', { app: 'web' }));
      await store.create(vs('m', undefined, { scope: 'cluster' }));
      await store.create({ ...vs('x', 'ns1'), kind: 'DestinationRule' });

      const names = (items: StoredResource[]): string[] =>
        items.map((i) => `${i.metadata.namespace ?? ''}/${i.metadata.name}`);
      const all = await store.list({ kind: 'VirtualService' });
      expect(names(all.items)).toEqual(['/m', 'ns1/a', 'ns1/b', 'ns2/c']);
      expect(all.revision).toBe(await store.currentRevision());

      expect(names((await store.list({ kind: 'VirtualService', namespace: 'ns1' })).items)).toEqual([
        'ns1/a',
        'ns1/b',
      ]);
      expect(names((await store.list({ kind: 'VirtualService', namespace: '' })).items)).toEqual(['/m']);
      expect((await store.list({ kind: 'VirtualService', namespace: 'none' })).items).toEqual([]);
      expect((await store.list({ kind: 'Gateway' })).items).toEqual([]);
      expect(names((await store.list({ kind: 'DestinationRule' })).items)).toEqual(['ns1/x']);

      const sel = async (labelSelector: string, namespace?: string): Promise<string[]> =>
        names((await store.list({ kind: 'VirtualService', labelSelector, namespace })).items);
      expect(await sel('app=web')).toEqual(['ns1/b', 'ns2/c']);
      expect(await sel('app==web,tier=front')).toEqual(['ns1/b']);
      expect(await sel('app!=web')).toEqual(['/m', 'ns1/a']);
      expect(await sel('tier')).toEqual(['ns1/a', 'ns1/b']);
      expect(await sel('!tier')).toEqual(['/m', 'ns2/c']);
      expect(await sel('app in (api, web)', 'ns1')).toEqual(['ns1/a', 'ns1/b']);
      expect(await sel('app notin (web)')).toEqual(['/m', 'ns1/a']);
      await expectMeshError(
        store.list({ kind: 'VirtualService', labelSelector: 'app in (web' }),
        ErrorCodes.INVALID_ARGUMENT,
      );
    });

    it('keeps namespace lists exact across deletes and recreates, cluster-scoped included', async () => {
      const store = await make();
      const names = async (namespace?: string, labelSelector?: string): Promise<string[]> =>
        (await store.list({ kind: 'VirtualService', namespace, labelSelector })).items.map(
          (i) => `${i.metadata.namespace ?? ''}/${i.metadata.name}`,
        );
      const key = (namespace: string, name: string) => ({ kind: 'VirtualService', namespace, name });
      await store.create(vs('a', 'ns1'));
      await store.create(vs('b', 'ns1'));
      await store.create(vs('a', 'ns'));
      await store.create(vs('a', 'ns2'));
      await store.create(vs('a', undefined));
      await store.create({ ...vs('a', 'ns3'), kind: 'DestinationRule' });

      // Empty a namespace: it lists nothing, and the others are untouched.
      await store.delete(key('ns1', 'a'));
      await store.delete(key('ns1', 'b'));
      expect(await names('ns1')).toEqual([]);
      expect(await names('ns')).toEqual(['ns/a']);
      expect(await names('ns2')).toEqual(['ns2/a']);
      expect(await names('')).toEqual(['/a']);
      expect(await names('ns3')).toEqual([]);
      expect(await names()).toEqual(['/a', 'ns/a', 'ns2/a']);

      // Recreate in the emptied namespace; empty and refill the cluster scope.
      await store.create(vs('b', 'ns1', { v: '2' }));
      await store.delete(key('', 'a'));
      expect(await names('')).toEqual([]);
      await store.create(vs('z', undefined, { v: '2' }));
      await store.delete(key('ns2', 'a'));
      expect(await names('ns1')).toEqual(['ns1/b']);
      expect(await names('')).toEqual(['/z']);
      expect(await names('ns2')).toEqual([]);
      expect(await names('ns1', 'v=2')).toEqual(['ns1/b']);
      expect(await names(undefined, 'v=2')).toEqual(['/z', 'ns1/b']);
      const all = await store.list({ kind: 'VirtualService' });
      expect(all.items.map((i) => i.metadata.name)).toEqual(['z', 'a', 'b']);
      expect(all.revision).toBe(await store.currentRevision());
      expect((await store.list({ kind: 'VirtualService', namespace: 'ns1' })).revision).toBe(all.revision);
    });

    it('updates with compare-and-set and refuses a stale resourceVersion with CONFLICT', async () => {
      const store = await make();
      const v1 = await store.create(vs('a', 'ns'));
      const v2 = await store.update({ ...v1, spec: { hosts: ['a', 'b'] } });
      expect(Number(v2.metadata.resourceVersion)).toBe(Number(v1.metadata.resourceVersion) + 1);

      // v1 carries its own (now stale) resourceVersion.
      const err = await expectMeshError(
        store.update({ ...v1, spec: { hosts: ['lost'] } }),
        ErrorCodes.CONFLICT,
      );
      expect(err.message).toContain('VirtualService/ns/a');
      expect(err.message).toContain(v1.metadata.resourceVersion);
      expect(err.message).toContain(v2.metadata.resourceVersion);
      // The explicit option wins over the object's own version.
      await expectMeshError(
        store.update(vs('a', 'ns', undefined, { hosts: ['lost'] }), {
          expectedResourceVersion: v1.metadata.resourceVersion,
        }),
        ErrorCodes.CONFLICT,
      );
      expect((await store.get({ kind: 'VirtualService', namespace: 'ns', name: 'a' }))?.spec).toEqual({
        hosts: ['a', 'b'],
      });

      // Without any version the update is unconditional.
      const v3 = await store.update(vs('a', 'ns', undefined, { hosts: ['c'] }));
      expect(v3.spec).toEqual({ hosts: ['c'] });
      expect(v3.metadata.resourceVersion).toBe(String(await store.currentRevision()));

      await expectMeshError(store.update(vs('missing', 'ns')), ErrorCodes.NOT_FOUND);
    });

    it('lets exactly one of 20 concurrent updates with the same expected version win', async () => {
      const store = await make();
      const v1 = await store.create(vs('a', 'ns'));
      const rev = await store.currentRevision();
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          store.update(vs('a', 'ns', { writer: String(i) }, { hosts: [`h${i}`] }), {
            expectedResourceVersion: v1.metadata.resourceVersion,
          }),
        ),
      );
      const ok = results.filter((r): r is PromiseFulfilledResult<StoredResource> => r.status === 'fulfilled');
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(ok).toHaveLength(1);
      expect(failed).toHaveLength(19);
      for (const f of failed) expect(isMeshError(f.reason, ErrorCodes.CONFLICT)).toBe(true);
      const winner = ok[0]?.value;
      const stored = await store.get({ kind: 'VirtualService', namespace: 'ns', name: 'a' });
      expect(stored).toEqual(winner);
      // Labels and spec come from the same writer: nothing half-written.
      const writer = stored?.metadata.labels?.writer;
      expect(stored?.spec).toEqual({ hosts: [`h${writer}`] });
      expect(await store.currentRevision()).toBe(rev + 1);
    });

    it('bumps generation only when spec changes and keeps uid and creationTimestamp', async () => {
      const store = await make();
      const v1 = await store.create(
        vs('a', 'ns', undefined, { hosts: ['a'], http: [{ route: [{ weight: 1 }] }] }),
      );
      const relabelled = await store.update({
        ...v1,
        metadata: { ...v1.metadata, labels: { new: 'label' } },
      });
      expect(relabelled.metadata.generation).toBe(1);
      // Same spec with keys in another order is not a change.
      const reordered = await store.update({
        ...relabelled,
        spec: { http: [{ route: [{ weight: 1 }] }], hosts: ['a'] },
      });
      expect(reordered.metadata.generation).toBe(1);
      const changed = await store.update({
        ...reordered,
        spec: { hosts: ['a'], http: [{ route: [{ weight: 2 }] }] },
      });
      expect(changed.metadata.generation).toBe(2);
      const forged = await store.update({
        ...changed,
        metadata: {
          ...changed.metadata,
          uid: 'forged',
          creationTimestamp: '2001-01-01T00:00:00.000Z',
          generation: 40,
        },
        spec: { hosts: ['z'] },
      });
      expect(forged.metadata.generation).toBe(3);
      expect(forged.metadata.uid).toBe(v1.metadata.uid);
      expect(forged.metadata.creationTimestamp).toBe(v1.metadata.creationTimestamp);
    });

    it('deletes, with and without compare-and-set', async () => {
      const store = await make();
      const a = await store.create(vs('a', 'ns'));
      const b = await store.create(vs('b', 'ns'));
      await store.update({ ...b, spec: { hosts: ['b2'] } });
      await expectMeshError(
        store.delete(
          { kind: 'VirtualService', namespace: 'ns', name: 'b' },
          { expectedResourceVersion: b.metadata.resourceVersion },
        ),
        ErrorCodes.CONFLICT,
      );
      expect(await store.get({ kind: 'VirtualService', namespace: 'ns', name: 'b' })).toBeDefined();

      const deleted = await store.delete(
        { kind: 'VirtualService', namespace: 'ns', name: 'a' },
        { expectedResourceVersion: a.metadata.resourceVersion },
      );
      expect(deleted).toEqual(a);
      const deletedB = await store.delete({ kind: 'VirtualService', namespace: 'ns', name: 'b' });
      expect(deletedB.spec).toEqual({ hosts: ['b2'] });
      expect(await store.get({ kind: 'VirtualService', namespace: 'ns', name: 'a' })).toBeUndefined();
      expect((await store.list({ kind: 'VirtualService' })).items).toEqual([]);
      await expectMeshError(
        store.delete({ kind: 'VirtualService', namespace: 'ns', name: 'a' }),
        ErrorCodes.NOT_FOUND,
      );
      // Create after delete is a new object.
      const again = await store.create(vs('a', 'ns'));
      expect(again.metadata.uid).not.toBe(a.metadata.uid);
    });

    it('watches from a revision: history then live events, in order, filtered', async () => {
      const store = await make();
      const start = await store.currentRevision();
      const a = await store.create(vs('a', 'ns1'));
      await store.create({ ...vs('other-kind', 'ns1'), kind: 'DestinationRule' });
      const all = collect(store, { fromRevision: start });
      const vsOnly = collect(store, { fromRevision: start, kind: 'VirtualService' });
      const ns2 = collect(store, { fromRevision: start, kind: 'VirtualService', namespace: 'ns2' });
      const fromNow = collect(store, { fromRevision: await store.currentRevision(), kind: 'VirtualService' });

      await store.update({ ...a, spec: { hosts: ['a2'] } });
      await store.create(vs('b', 'ns2'));
      await store.delete({ kind: 'VirtualService', namespace: 'ns1', name: 'a' });

      const events = await all.waitForEvents(5);
      expect(events.map(summary)).toEqual([
        `ADDED ns1/a@${start + 1}`,
        `ADDED ns1/other-kind@${start + 2}`,
        `MODIFIED ns1/a@${start + 3}`,
        `ADDED ns2/b@${start + 4}`,
        `DELETED ns1/a@${start + 5}`,
      ]);
      expect(events[0]?.object.metadata.resourceVersion).toBe(String(start + 1));
      expect(events[2]?.object.spec).toEqual({ hosts: ['a2'] });
      expect(events[4]?.object.spec).toEqual({ hosts: ['a2'] });

      await vsOnly.waitForEvents(4);
      expect(vsOnly.events.map(summary)).toEqual([
        `ADDED ns1/a@${start + 1}`,
        `MODIFIED ns1/a@${start + 3}`,
        `ADDED ns2/b@${start + 4}`,
        `DELETED ns1/a@${start + 5}`,
      ]);
      await fromNow.waitForEvents(3);
      expect(fromNow.events.map(summary)).toEqual([
        `MODIFIED ns1/a@${start + 3}`,
        `ADDED ns2/b@${start + 4}`,
        `DELETED ns1/a@${start + 5}`,
      ]);
      await ns2.waitForEvents(1);
      // One more write proves nothing else was going to arrive for ns2.
      await store.create(vs('c', 'ns2'));
      await ns2.waitForEvents(2);
      expect(ns2.events.map(summary)).toEqual([`ADDED ns2/b@${start + 4}`, `ADDED ns2/c@${start + 6}`]);
      for (const c of [all, vsOnly, ns2, fromNow]) {
        expect(c.errors).toEqual([]);
        c.close();
      }
    });

    it('keeps a busy watch in revision order with no gaps', async () => {
      const store = await make();
      const start = await store.currentRevision();
      const w = collect(store, { fromRevision: start });
      await Promise.all(Array.from({ length: 100 }, (_, i) => store.create(vs(`n${i}`, 'ns'))));
      const events = await w.waitForEvents(100);
      expect(events.map((e) => e.revision)).toEqual(Array.from({ length: 100 }, (_, i) => start + i + 1));
      w.close();
    });

    it('stops delivering after watch.close()', async () => {
      const store = await make();
      const w = collect(store, { fromRevision: await store.currentRevision() });
      const probe = collect(store, { fromRevision: await store.currentRevision() });
      w.close();
      w.close();
      await store.create(vs('a', 'ns'));
      await probe.waitForEvents(1);
      expect(w.events).toEqual([]);
      expect(w.errors).toEqual([]);
      probe.close();
    });

    it('fails a watch from a revision older than the history with REVISION_TOO_OLD', async () => {
      const store = await make({ historySize: 10 });
      const start = await store.currentRevision();
      for (let i = 0; i < 40; i++) await store.create(vs(`n${i}`, 'ns'));
      const old = collect(store, { fromRevision: start });
      const err = await old.waitForError();
      expect(isMeshError(err, ErrorCodes.REVISION_TOO_OLD)).toBe(true);
      expect(old.errors).toHaveLength(1);
      expect(old.events).toEqual([]);
      // A recent revision still works.
      const recent = collect(store, { fromRevision: start + 38 });
      await recent.waitForEvents(2);
      expect(recent.events.map((e) => e.revision)).toEqual([start + 39, start + 40]);
      recent.close();
    });

    it('hands out copies: mutating results or inputs does not change the store', async () => {
      const store = await make();
      const input = vs('a', 'ns', { app: 'x' });
      const created = await store.create(input);
      (input.spec as { hosts: string[] }).hosts.push('mutated-input');
      created.spec.hosts = ['mutated-result'];
      const got = await store.get({ kind: 'VirtualService', namespace: 'ns', name: 'a' });
      expect(got?.spec).toEqual({ hosts: ['a'] });
      if (got) got.metadata.labels = { app: 'mutated' };
      const listed = await store.list({ kind: 'VirtualService', labelSelector: 'app=x' });
      expect(listed.items).toHaveLength(1);
      const first = listed.items[0];
      if (first) first.spec.hosts = ['mutated-list'];
      const w = collect(store, { fromRevision: 0 });
      const [ev] = await w.waitForEvents(1);
      if (ev) ev.object.spec.hosts = ['mutated-event'];
      const again = await store.get({ kind: 'VirtualService', namespace: 'ns', name: 'a' });
      expect(again?.spec).toEqual({ hosts: ['a'] });
      expect(again?.metadata.labels).toEqual({ app: 'x' });
      w.close();
    });

    it('closes idempotently; calls after close fail with CLOSED; watchers get no error', async () => {
      const store = await make();
      await store.create(vs('a', 'ns'));
      const w = collect(store, { fromRevision: await store.currentRevision() });
      await Promise.all([store.close(), store.close()]);
      await store.close();
      await expectMeshError(
        store.get({ kind: 'VirtualService', namespace: 'ns', name: 'a' }),
        ErrorCodes.CLOSED,
      );
      await expectMeshError(store.create(vs('b', 'ns')), ErrorCodes.CLOSED);
      const late = collect(store, { fromRevision: 0 });
      const err = await late.waitForError();
      expect(isMeshError(err, ErrorCodes.CLOSED)).toBe(true);
      expect(w.errors).toEqual([]);
    });
  });
  // A misspelt title would silently run the case: refuse it.
  if (unsupported.size > 0) {
    throw new Error(`unknown contract cases marked unsupported: ${[...unsupported.keys()].join('; ')}`);
  }
}
