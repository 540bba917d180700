/**
 * Crash durability of the file store: a child process writes as fast as it
 * can and reports each write only once its promise resolved; we SIGKILL it
 * mid-stream and check that every reported write survived.
 */

import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { ErrorCodes } from '../../core/errors.js';
import { setLogSink } from '../../core/log.js';
import { LOCK_FILE } from '../../core/store/store-file-lock.js';
import { MemoryStore } from '../../core/store/store-memory.js';
import { expectMeshError } from './store-contract.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const child = path.join(root, 'test/fixtures/file-store-writer.mjs');
const diskFullChild = path.join(root, 'test/fixtures/file-store-disk-full.mjs');
const compiled = path.join(root, 'dist/core/store/store-memory.js');
const dirs: string[] = [];

function contentOf(i: number): Record<string, unknown> {
  return { hosts: [`k${i}`], i, payload: 'x'.repeat(i % 200) };
}

interface Acked {
  created: Set<number>;
  /** key index → the highest writer index whose update was acknowledged. */
  updated: Map<number, number>;
  lines: number;
}

interface Writer {
  proc: ChildProcess;
  /** Resolves with the exit signal; rejects if the writer exits on its own. */
  exited: Promise<void>;
}

/** Starts the writer from `startIndex`, handing each complete stdout line to `onLine`. */
function startWriter(
  dataDir: string,
  compactAfter: number,
  startIndex: number,
  onLine: (line: string) => void,
): Writer {
  const proc = spawn(process.execPath, [child, dataDir, String(compactAfter), String(startIndex)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let buffered = '';
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  proc.stdout?.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl: number;
    // A partial last line was never fully reported: it is ignored.
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      onLine(line);
    }
  });
  const exited = new Promise<void>((resolve, reject) => {
    proc.on('exit', (_code, signal) => {
      if (signal === 'SIGKILL') resolve();
      else reject(new Error(`writer exited on its own (${String(signal)}): ${stderr}`));
    });
  });
  return { proc, exited };
}

/** Runs the writer from `startIndex` until `ackTarget` acknowledgements, then SIGKILLs it. */
async function runAndKill(
  dataDir: string,
  compactAfter: number,
  startIndex: number,
  ackTarget: number,
): Promise<Acked> {
  const acked: Acked = { created: new Set(), updated: new Map(), lines: 0 };
  const writer = startWriter(dataDir, compactAfter, startIndex, (line) => {
    const [op, a, b] = line.split(' ');
    if (op === 'c') acked.created.add(Number(a));
    else if (op === 'u') {
      const target = Number(a);
      acked.updated.set(target, Math.max(acked.updated.get(target) ?? -1, Number(b)));
    } else return;
    acked.lines++;
    if (acked.lines === ackTarget) writer.proc.kill('SIGKILL');
  });
  await writer.exited;
  return acked;
}

beforeAll(() => {
  if (!existsSync(compiled)) {
    throw new Error(`${compiled} is missing: run npm run build first (npm test does it before jest)`);
  }
  setLogSink(() => {});
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('file store crash durability', () => {
  it.each([
    ['without compaction', 1_000_000],
    ['with compaction every 300 records', 300],
  ])(
    'keeps every acknowledged write after SIGKILL, twice on one directory (%s)',
    async (_label, compactAfter) => {
      const dataDir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-crash-'));
      dirs.push(dataDir);
      // Two lives on the same directory: the second replays a log that already
      // survived one crash and then crashes again itself.
      const lives = [
        await runAndKill(dataDir, compactAfter, 0, 1500),
        await runAndKill(dataDir, compactAfter, 1_000_000, 1500),
      ];

      const store = await MemoryStore.open({ dataDir });
      const rev = await store.currentRevision();
      expect(rev).toBeGreaterThanOrEqual(lives.reduce((n, l) => n + l.lines, 0));
      const missing: number[] = [];
      for (const acked of lives) {
        expect(acked.created.size).toBeGreaterThan(500);
        for (const i of acked.created) {
          const got = await store.get({ kind: 'VirtualService', namespace: 'crash', name: `k${i}` });
          if (!got) {
            missing.push(i);
            continue;
          }
          const { updatedBy, ...spec } = got.spec as Record<string, unknown>;
          expect(spec).toEqual(contentOf(i));
          const newestUpdate = acked.updated.get(i);
          if (newestUpdate !== undefined) {
            // The stored object is at least as new as the newest acknowledged update.
            expect(updatedBy).toBe(newestUpdate);
            expect(got.metadata.generation).toBe(2);
          }
        }
      }
      expect(missing).toEqual([]);
      // Writable after the crash, continuing the revision sequence.
      const after = await store.create({
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'after-crash', namespace: 'crash' },
        spec: {},
      });
      expect(after.metadata.resourceVersion).toBe(String(rev + 1));
      await store.close();
    },
    60_000,
  );

  it('refuses a directory a live process holds and takes it over once that process is SIGKILLed', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-lock-'));
    dirs.push(dataDir);
    let resolveReady: () => void = () => {};
    const ready = new Promise<void>((resolve) => (resolveReady = resolve));
    const writer = startWriter(dataDir, 1_000_000, 0, (line) => {
      if (line === 'ready') resolveReady();
    });
    try {
      await Promise.race([ready, writer.exited]);
      const err = await expectMeshError(MemoryStore.open({ dataDir }), ErrorCodes.CONFIG);
      expect(err.message).toBe(`data directory ${dataDir} is in use by process ${writer.proc.pid}`);
    } finally {
      writer.proc.kill('SIGKILL');
    }
    await writer.exited;
    const lockPath = path.join(dataDir, LOCK_FILE);
    expect(readFileSync(lockPath, 'utf8').trim()).toBe(String(writer.proc.pid));

    const logs: Record<string, unknown>[] = [];
    setLogSink((line) => logs.push(JSON.parse(line) as Record<string, unknown>));
    let store: MemoryStore;
    try {
      store = await MemoryStore.open({ dataDir });
    } finally {
      setLogSink(() => {});
    }
    expect(logs.filter((l) => l.level === 'warn')).toEqual([
      expect.objectContaining({ dataDir, stalePid: writer.proc.pid }),
    ]);
    expect(readFileSync(lockPath, 'utf8').trim()).toBe(String(process.pid));
    await store.close();
    expect(existsSync(lockPath)).toBe(false);
  });

  it('fails writes with STORE_UNAVAILABLE on a full disk, rolls back, and reopens cleanly', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-full-'));
    dirs.push(dataDir);
    // `ulimit -f` makes appends past 64 KiB fail with EFBIG, as a full disk would.
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        'sh',
        ['-c', 'ulimit -f 64 && exec "$0" "$1" "$2"', process.execPath, diskFullChild, dataDir],
        (err, out, errOut) => (err ? reject(new Error(`${err.message}: ${errOut}`)) : resolve(out)),
      );
    });
    const report = JSON.parse(stdout) as {
      acked: number[];
      failed: number[];
      codes: string[];
      afterCode: string;
      failedVisible: number[];
      revision: number;
    };
    expect(report.acked.length).toBeGreaterThan(50);
    expect(report.failed.length).toBeGreaterThan(0);
    expect(report.codes).toEqual(['MESHFED_ERR_STORE_UNAVAILABLE']);
    // Fail-stop: later writes are refused, and the failed writes are gone from memory.
    expect(report.afterCode).toBe('MESHFED_ERR_STORE_UNAVAILABLE');
    expect(report.failedVisible).toEqual([]);
    expect(report.revision).toBe(report.acked.length);

    const store = await MemoryStore.open({ dataDir });
    expect(await store.currentRevision()).toBe(report.acked.length);
    for (const i of report.acked) {
      expect(await store.get({ kind: 'VirtualService', namespace: 'full', name: `k${i}` })).toBeDefined();
    }
    for (const i of report.failed) {
      expect(await store.get({ kind: 'VirtualService', namespace: 'full', name: `k${i}` })).toBeUndefined();
    }
    await store.close();
  });
});
