import { spawnSync } from 'node:child_process';
import {
  appendFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from '@jest/globals';

import { ErrorCodes } from '../../core/errors.js';
import { setLogSink } from '../../core/log.js';
import { LOCK_FILE } from '../../core/store/store-file-lock.js';
import { LOG_FILE, MemoryStore, SNAPSHOT_FILE } from '../../core/store/store-memory.js';
import { createStore } from '../../core/store/store-registry.js';
import { collect, describeStoreContract, expectMeshError, vs } from './store-contract.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-file-store-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describeStoreContract('file', async ({ historySize }) =>
  MemoryStore.open({ dataDir: tempDir(), historySize }),
);

const key = (name: string, namespace = 'ns') => ({ kind: 'VirtualService', namespace, name });

type LogRecord = Record<string, unknown>;

/** Runs `fn` with logs captured; returns its result and the log records. */
async function withLogs<T>(fn: () => Promise<T>): Promise<{ result: T; logs: LogRecord[] }> {
  const logs: LogRecord[] = [];
  setLogSink((line) => logs.push(JSON.parse(line) as LogRecord));
  try {
    return { result: await fn(), logs };
  } finally {
    setLogSink((line) => process.stderr.write(line + '\n'));
  }
}

/** The pid of a process that has exited. */
function deadPid(): number {
  const { pid, status } = spawnSync(process.execPath, ['-e', '']);
  if (status !== 0 || pid === undefined) throw new Error('could not run a child process');
  return pid;
}

describe('file store durability', () => {
  it('keeps objects, revision and watch history across a reopen', async () => {
    const dataDir = tempDir();
    const first = await MemoryStore.open({ dataDir });
    expect(first.backend).toBe('file');
    const a = await first.create(vs('a', 'ns', { app: 'a' }));
    await first.update({ ...a, spec: { hosts: ['a2'] } });
    await first.create(vs('b', 'ns'));
    await first.delete(key('b'));
    await first.create(vs('m', undefined));
    const rev = await first.currentRevision();
    await first.close();

    const second = await MemoryStore.open({ dataDir });
    expect(await second.currentRevision()).toBe(rev);
    const got = await second.get(key('a'));
    expect(got?.spec).toEqual({ hosts: ['a2'] });
    expect(got?.metadata.generation).toBe(2);
    expect(got?.metadata.uid).toBe(a.metadata.uid);
    expect(await second.get(key('b'))).toBeUndefined();
    expect((await second.list({ kind: 'VirtualService', namespace: '' })).items).toHaveLength(1);
    // New writes continue the revision sequence.
    const c = await second.create(vs('c', 'ns'));
    expect(c.metadata.resourceVersion).toBe(String(rev + 1));
    // Replayed records feed the watch history.
    const w = collect(second, { fromRevision: 1 });
    const events = await w.waitForEvents(5);
    expect(events.map((e) => `${e.type}:${e.object.metadata.name}`)).toEqual([
      'MODIFIED:a',
      'ADDED:b',
      'DELETED:b',
      'ADDED:m',
      'ADDED:c',
    ]);
    w.close();
    await second.close();
  });

  it('shares one fdatasync between concurrent writes (group commit)', async () => {
    const store = await MemoryStore.open({ dataDir: tempDir() });
    await Promise.all(Array.from({ length: 200 }, (_, i) => store.create(vs(`n${i}`, 'ns'))));
    const stats = store.stats();
    expect(stats.logRecords).toBe(200);
    expect(stats.durableRevision).toBe(200);
    expect(stats.syncs).toBeGreaterThan(0);
    expect(stats.syncs).toBeLessThan(20);
    await store.close();
  });

  it('compacts into a snapshot, keeps the revision, and replays snapshot + log', async () => {
    const dataDir = tempDir();
    const store = await MemoryStore.open({ dataDir, compactAfterRecords: 20 });
    for (let i = 0; i < 30; i++) await store.create(vs(`n${i}`, 'ns', { i: String(i) }));
    for (let i = 0; i < 10; i++) await store.delete(key(`n${i}`));
    const last = await store.update(vs('n29', 'ns', undefined, { hosts: ['changed'] }));
    const stats = store.stats();
    expect(stats.snapshots).toBeGreaterThanOrEqual(1);
    expect(stats.logRecords).toBeLessThanOrEqual(30);
    expect(existsSync(path.join(dataDir, SNAPSHOT_FILE))).toBe(true);
    await store.close();

    const reopened = await MemoryStore.open({ dataDir, compactAfterRecords: 20 });
    expect(await reopened.currentRevision()).toBe(41);
    const items = (await reopened.list({ kind: 'VirtualService' })).items;
    expect(items.map((i) => i.metadata.name).sort()).toEqual(
      Array.from({ length: 20 }, (_, i) => `n${i + 10}`).sort(),
    );
    expect(await reopened.get(key('n29'))).toEqual(last);
    const next = await reopened.create(vs('after', 'ns'));
    expect(next.metadata.resourceVersion).toBe('42');
    await reopened.close();
  });

  it('keeps its directory, log and snapshot private to the owner (they hold the CA and token keys)', async () => {
    const dataDir = path.join(tempDir(), 'data');
    const store = await MemoryStore.open({ dataDir, compactAfterRecords: 20 });
    // Compaction starts once the log outgrows the live objects: rewrite one object.
    let current = await store.create(vs('p', 'ns'));
    for (let i = 0; i < 30; i++) current = await store.update(vs('p', 'ns', { i: String(i) }));
    expect(current.metadata.labels).toEqual({ i: '29' });
    expect(store.stats().snapshots).toBeGreaterThanOrEqual(1);
    await store.close();
    const mode = (file: string): number => statSync(file).mode & 0o777;
    expect(mode(dataDir)).toBe(0o700);
    expect(mode(path.join(dataDir, LOG_FILE))).toBe(0o600);
    expect(mode(path.join(dataDir, SNAPSHOT_FILE))).toBe(0o600);
  });

  it('tightens a world-readable log left by an older version when it opens it', async () => {
    const dataDir = tempDir();
    writeFileSync(path.join(dataDir, LOG_FILE), '', { mode: 0o644 });
    const store = await MemoryStore.open({ dataDir });
    await store.close();
    expect(statSync(path.join(dataDir, LOG_FILE)).mode & 0o777).toBe(0o600);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
  });

  it('repairs a torn last line: earlier writes kept, file truncated, new writes work', async () => {
    const dataDir = tempDir();
    const store = await MemoryStore.open({ dataDir });
    await store.create(vs('a', 'ns'));
    await store.create(vs('b', 'ns'));
    await store.close();
    const logPath = path.join(dataDir, LOG_FILE);
    const goodSize = statSync(logPath).size;
    appendFileSync(logPath, '{"op":"put","rev":3,"obj":{"apiVersion":"x","kind":"VirtualSer');

    const { result: reopened, logs } = await withLogs(() => MemoryStore.open({ dataDir }));
    expect(logs.some((l) => l.level === 'warn' && String(l.msg).includes('torn'))).toBe(true);
    expect(statSync(logPath).size).toBe(goodSize);
    expect(await reopened.currentRevision()).toBe(2);
    expect(await reopened.get(key('a'))).toBeDefined();
    expect(await reopened.get(key('b'))).toBeDefined();
    const c = await reopened.create(vs('c', 'ns'));
    expect(c.metadata.resourceVersion).toBe('3');
    await reopened.close();

    const third = await MemoryStore.open({ dataDir });
    expect((await third.list({ kind: 'VirtualService' })).items.map((i) => i.metadata.name)).toEqual([
      'a',
      'b',
      'c',
    ]);
    await third.close();
  });

  it('refuses a log with garbage in the middle with STORE_CORRUPT naming the line', async () => {
    const dataDir = tempDir();
    const store = await MemoryStore.open({ dataDir });
    for (const n of ['a', 'b', 'c']) await store.create(vs(n, 'ns'));
    await store.close();
    const logPath = path.join(dataDir, LOG_FILE);
    const lines = readFileSync(logPath, 'utf8').split('\n');
    lines[1] = '{"op":"put","rev":2,"obj":{broken';
    writeFileSync(logPath, lines.join('\n'));
    const err = await expectMeshError(MemoryStore.open({ dataDir }), ErrorCodes.STORE_CORRUPT);
    expect(err.message).toContain('line 2');
    expect(err.message).toContain(LOG_FILE);
    // A failed open does not leave the directory locked.
    expect(existsSync(path.join(dataDir, LOCK_FILE))).toBe(false);
  });

  it('refuses revisions that go backwards as STORE_CORRUPT', async () => {
    const dataDir = tempDir();
    const store = await MemoryStore.open({ dataDir });
    for (const n of ['a', 'b']) await store.create(vs(n, 'ns'));
    await store.close();
    const logPath = path.join(dataDir, LOG_FILE);
    const [l1, l2] = readFileSync(logPath, 'utf8').split('\n');
    writeFileSync(logPath, `${l2}\n${l1}\n`);
    const err = await expectMeshError(MemoryStore.open({ dataDir }), ErrorCodes.STORE_CORRUPT);
    expect(err.message).toContain('line 2');
  });

  it('is what file:///dir opens; bad URLs fail with CONFIG naming the URL and schemes', async () => {
    const dataDir = tempDir();
    const store = await createStore(`file://${dataDir}`);
    expect(store.backend).toBe('file');
    await store.create(vs('a', 'ns'));
    await store.close();
    expect(existsSync(path.join(dataDir, LOG_FILE))).toBe(true);

    for (const bad of ['file://host/dir', 'ftp://x', 'not a url', 'redis://h:1/notanumber']) {
      const err = await expectMeshError(createStore(bad), ErrorCodes.CONFIG);
      expect(err.message).toContain(bad);
      expect(err.message).toContain('memory://');
      expect(err.message).toContain('redis://');
    }
  });
});

describe('file store data directory lock', () => {
  it('holds LOCK with its pid while open, refuses a second open, and releases on close', async () => {
    const dataDir = tempDir();
    const lockPath = path.join(dataDir, LOCK_FILE);
    const store = await MemoryStore.open({ dataDir });
    expect(readFileSync(lockPath, 'utf8').trim()).toBe(String(process.pid));
    const [err] = await Promise.all([
      expectMeshError(MemoryStore.open({ dataDir }), ErrorCodes.CONFIG),
      expectMeshError(createStore(`file://${dataDir}/`), ErrorCodes.CONFIG),
    ]);
    expect(err?.message).toBe(`data directory ${dataDir} is in use by process ${process.pid}`);
    // The refused opens changed nothing: the store still writes, and its lock is intact.
    await store.create(vs('a', 'ns'));
    expect(readFileSync(lockPath, 'utf8').trim()).toBe(String(process.pid));
    await Promise.all([store.close(), store.close()]);
    expect(existsSync(lockPath)).toBe(false);

    const { result: reopened, logs } = await withLogs(() => MemoryStore.open({ dataDir }));
    expect(logs.filter((l) => l.level === 'warn')).toEqual([]);
    expect(await reopened.get(key('a'))).toBeDefined();
    await reopened.close();
  });

  it.each([
    ['a dead process', deadPid],
    ['this pid in an earlier life (a restarted container)', () => process.pid],
    ['no readable pid', () => 'garbage'],
  ])('takes over a stale lock left by %s, with a warning', async (_label, owner) => {
    const dataDir = tempDir();
    const first = await MemoryStore.open({ dataDir });
    await first.create(vs('a', 'ns'));
    await first.close();
    const stale = String(owner());
    writeFileSync(path.join(dataDir, LOCK_FILE), `${stale}\n`);

    const { result: store, logs } = await withLogs(() => MemoryStore.open({ dataDir }));
    const warnings = logs.filter((l) => l.level === 'warn');
    expect(warnings).toEqual([
      expect.objectContaining({
        msg: expect.stringContaining('taking over the lock'),
        dataDir,
        stalePid: Number(stale) || 0,
      }),
    ]);
    expect(readFileSync(path.join(dataDir, LOCK_FILE), 'utf8').trim()).toBe(String(process.pid));
    expect(await store.get(key('a'))).toBeDefined();
    await store.create(vs('b', 'ns'));
    await store.close();
    expect(existsSync(path.join(dataDir, LOCK_FILE))).toBe(false);
  });
});
