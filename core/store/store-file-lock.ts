/**
 * The exclusive lock of a file-store data directory: a `LOCK` file, created
 * exclusively (O_EXCL semantics), that holds the owner's pid. Two processes appending to one log
 * would interleave records and break the revision sequence, so the second
 * open fails with CONFIG instead.
 *
 * A process that dies without closing (SIGKILL, OOM, power loss) leaves the
 * file behind; the next open sees that its pid is no longer alive and takes
 * the lock over with a warning. Taking over moves the stale file aside with
 * one rename and checks that what it moved is the stale lock it read, so two
 * processes taking over at once cannot both win (the exclusive create decides).
 *
 * Limits: a pid is only meaningful on this host, so the directory must not
 * be shared between hosts; and a pid reused by an unrelated process after a
 * reboot reads as alive (the message names it, so an operator can remove the
 * file). Our own pid in the file with no lock held by this process is a
 * previous life of a container whose processes restart with the same pid.
 */

import { link, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';

import { ErrorCodes, MeshError } from '../errors.js';
import type { Logger } from '../log.js';

export const LOCK_FILE = 'LOCK';

/** Lock files this process holds, so that a second store in one process is refused too. */
const heldHere = new Set<string>();

const MAX_TAKEOVER_ATTEMPTS = 5;

export interface DataDirLock {
  /** Removes the lock file. Idempotent. */
  release(): Promise<void>;
}

function isAlive(pid: number): boolean {
  // kill(0) and kill(-n) would probe process groups, not a process.
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid in a lock file, or undefined if the file is gone. Unparsable content reads as pid 0 (stale). */
async function readOwner(file: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(file, 'utf8')).trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw unavailable(file, err);
  }
}

function unavailable(file: string, err: unknown): MeshError {
  return new MeshError(ErrorCodes.STORE_UNAVAILABLE, `cannot lock ${file}: ${(err as Error).message}`, {
    cause: err,
  });
}

/**
 * Creates the lock file with our pid, atomically: the content goes to a
 * private file first, and link() publishes it under LOCK exclusively (like
 * O_EXCL, it fails if LOCK exists), so nobody ever reads a LOCK that has no
 * pid in it yet. False if the lock file already exists.
 */
async function tryCreate(file: string): Promise<boolean> {
  const tmp = `${file}.new-${process.pid}`;
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(`${process.pid}\n`, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await link(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw unavailable(file, err);
  } finally {
    await rm(tmp, { force: true });
  }
}

/**
 * Removes a lock file that holds `stalePid`, and nothing else: it is renamed
 * to a name only we use, and put back if it turns out to be someone's fresh lock.
 */
async function removeStale(file: string, stalePid: number): Promise<void> {
  const aside = `${file}.stale-${process.pid}`;
  try {
    await rename(file, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw unavailable(file, err);
  }
  try {
    if ((await readOwner(aside)) !== stalePid) {
      // Another process took the stale lock over between our read and our
      // rename: give its lock back (link fails if yet another one appeared).
      await link(aside, file).catch(() => {});
    }
  } finally {
    await rm(aside, { force: true });
  }
}

/**
 * Takes the lock of `dir` (which must exist). CONFIG if a live process holds
 * it; a lock left by a dead process is taken over with a warning.
 */
export async function lockDataDir(dir: string, logger: Logger): Promise<DataDirLock> {
  const file = path.join(dir, LOCK_FILE);
  // Reserved synchronously, so that of two opens in this process the second
  // fails here and never mistakes the first one's fresh lock for a stale one.
  if (heldHere.has(file)) throw inUse(dir, process.pid);
  heldHere.add(file);
  try {
    for (let attempt = 0; attempt < MAX_TAKEOVER_ATTEMPTS; attempt++) {
      if (await tryCreate(file)) return lockHandle(file);
      const owner = await readOwner(file);
      if (owner === undefined) continue;
      // Our own pid without the lock held here is a previous life of this pid.
      if (owner !== process.pid && isAlive(owner)) throw inUse(dir, owner);
      logger.warn('taking over the lock of a data directory whose owner is gone', {
        dataDir: dir,
        stalePid: owner,
      });
      await removeStale(file, owner);
    }
    throw new MeshError(
      ErrorCodes.STORE_UNAVAILABLE,
      `cannot lock data directory ${dir}: its ${LOCK_FILE} file keeps changing`,
    );
  } catch (err) {
    heldHere.delete(file);
    throw err;
  }
}

function inUse(dir: string, pid: number): MeshError {
  return new MeshError(ErrorCodes.CONFIG, `data directory ${dir} is in use by process ${pid}`, {
    details: { dataDir: dir, pid },
  });
}

function lockHandle(file: string): DataDirLock {
  let released: Promise<void> | undefined;
  return {
    release() {
      released ??= (async () => {
        // Only ever our own file: while we hold it, nobody else removes it
        // (our pid is alive), so an unconditional remove is safe. Forgotten
        // here only afterwards, so that a reopen in this process cannot take
        // our still-present file for a stale one.
        await rm(file, { force: true });
        heldHere.delete(file);
      })();
      return released;
    },
  };
}
