/**
 * The VM agent's config directory (default /etc/meshfed — not /run: the
 * credentials must survive a reboot):
 *
 *   vm-agent.yaml     0644  what join learned (agent-config.ts)
 *   key.pem           0600  the workload key (generated here, never sent)
 *   cert-chain.pem    0644  the current certificate, leaf first
 *   trust-bundle.pem  0644  the mesh roots
 *   status.json       0644  what `run` last saw (for `status`)
 *
 * Writes are atomic (temporary file, fsync, rename). A renewed key and
 * certificate are two files: each is first written as `<name>.next`, then
 * renamed key first; a crash between the renames is repaired on the next
 * read, so a key never pairs with the wrong certificate.
 */

import { X509Certificate, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, readFile, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ErrorCodes, MeshError } from '../core/errors.js';
import { formatConfig, parseConfig, type AgentConfig } from './agent-config.js';

export const CONFIG_FILE = 'vm-agent.yaml';
export const KEY_FILE = 'key.pem';
export const CHAIN_FILE = 'cert-chain.pem';
export const BUNDLE_FILE = 'trust-bundle.pem';
export const STATUS_FILE = 'status.json';
const NEXT = '.next';

export const DEFAULT_CONFIG_DIR = '/etc/meshfed';

export interface Credentials {
  certChainPem: string;
  keyPem: string;
  trustBundlePem: string;
}

/** What `run` reports in status.json. */
export interface AgentStatus {
  pid: number;
  startedAt: string;
  updatedAt: string;
  zoneConnected: boolean;
  zoneConnectedSince?: string;
  lastZoneError?: string;
  lastHeartbeatAt?: string;
  lastHeartbeatError?: string;
  certificate?: { serial: string; notAfter: string; renewedAt: string };
  lastRenewalError?: string;
  probe: { state: 'none' | 'unknown' | 'passing' | 'failing'; message?: string; since?: string };
  configVersion?: string;
  ports?: Record<string, unknown>;
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? '';
}

/** Distinguishes the temporary files of concurrent writes within this process. */
let tmpSequence = 0;

async function atomicWrite(
  path: string,
  text: string,
  mode: number,
  tmp = `${path}.tmp-${process.pid}-${++tmpSequence}`,
): Promise<void> {
  const handle = await open(tmp, 'w', mode);
  try {
    await handle.writeFile(text);
    await handle.chmod(mode);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
}

/** mkdir -p (0700) one level at a time, so a failure names the real reason (EROFS, EACCES), not ENOENT. */
async function makeDirs(path: string): Promise<void> {
  const missing: string[] = [];
  let current = path;
  for (;;) {
    try {
      await stat(current);
      break;
    } catch {
      missing.push(current);
      const parent = dirname(current);
      if (parent === current) break;
      current = parent;
    }
  }
  for (const dir of missing.reverse()) await mkdir(dir, { mode: 0o700 });
}

/** True when `keyPem`'s public key is the first certificate's of `chainPem`. */
export function keyMatches(keyPem: string, chainPem: string): boolean {
  try {
    const cert = new X509Certificate(chainPem);
    const fromKey = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
    return cert.publicKey.export({ type: 'spki', format: 'der' }).equals(fromKey);
  } catch {
    return false;
  }
}

export class ConfigDir {
  private statusWrites: Promise<void> = Promise.resolve();

  constructor(readonly dir: string) {}

  path(name: string): string {
    return join(this.dir, name);
  }

  /**
   * Creates the directory (0700) if needed and proves it writable, or
   * throws one CONFIG line saying what to do.
   */
  async ensureWritable(): Promise<void> {
    try {
      await makeDirs(this.dir);
      const probe = this.path(`.write-test-${process.pid}`);
      await atomicWrite(probe, 'ok\n', 0o600);
      await unlink(probe);
    } catch (err) {
      const code = errnoOf(err);
      throw new MeshError(
        ErrorCodes.CONFIG,
        `the config dir ${this.dir} is not writable (${code || (err as Error).message}): run as root, make it writable, or choose another --config-dir`,
        { cause: err },
      );
    }
  }

  /** True when join has written a config here. */
  async enrolled(): Promise<boolean> {
    try {
      await access(this.path(CONFIG_FILE), constants.R_OK);
      return true;
    } catch {
      return false;
    }
  }

  async readConfig(): Promise<AgentConfig> {
    const file = this.path(CONFIG_FILE);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') {
        throw new MeshError(
          ErrorCodes.CONFIG,
          `this VM is not enrolled (${file} does not exist): run meshfed vm-agent join first, or pass the --config-dir join used`,
        );
      }
      throw new MeshError(ErrorCodes.CONFIG, `cannot read ${file}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return parseConfig(text, file);
  }

  async writeConfig(config: AgentConfig): Promise<void> {
    await atomicWrite(this.path(CONFIG_FILE), formatConfig(config), 0o644);
  }

  /** The key join generated earlier (re-used by a repeated join), if any. */
  async readKey(): Promise<KeyObject | undefined> {
    try {
      return createPrivateKey(await readFile(this.path(KEY_FILE), 'utf8'));
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw new MeshError(ErrorCodes.CONFIG, `cannot use ${this.path(KEY_FILE)}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  async writeKey(keyPem: string): Promise<void> {
    await atomicWrite(this.path(KEY_FILE), keyPem, 0o600);
  }

  /** The current key, certificate and bundle; repairs a renewal interrupted between its renames. */
  async readCredentials(): Promise<Credentials> {
    const read = async (name: string): Promise<string | undefined> =>
      readFile(this.path(name), 'utf8').catch((err: unknown) => {
        if (errnoOf(err) === 'ENOENT') return undefined;
        throw new MeshError(ErrorCodes.CONFIG, `cannot read ${this.path(name)}: ${(err as Error).message}`);
      });
    const [keyPem, certChainPem, trustBundlePem] = await Promise.all([
      read(KEY_FILE),
      read(CHAIN_FILE),
      read(BUNDLE_FILE),
    ]);
    if (keyPem === undefined || certChainPem === undefined || trustBundlePem === undefined) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `the credentials in ${this.dir} are incomplete (${KEY_FILE}, ${CHAIN_FILE}, ${BUNDLE_FILE}): run meshfed vm-agent join again`,
      );
    }
    if (keyMatches(keyPem, certChainPem)) return { keyPem, certChainPem, trustBundlePem };
    const pending = await read(CHAIN_FILE + NEXT);
    if (pending !== undefined && keyMatches(keyPem, pending)) {
      await rename(this.path(CHAIN_FILE + NEXT), this.path(CHAIN_FILE));
      return { keyPem, certChainPem: pending, trustBundlePem };
    }
    throw new MeshError(
      ErrorCodes.CONFIG,
      `${this.path(KEY_FILE)} does not belong to ${this.path(CHAIN_FILE)}: run meshfed vm-agent join again`,
    );
  }

  /** Saves renewed credentials (see the file comment for the crash-safe order). */
  async writeCredentials(credentials: Credentials): Promise<void> {
    await atomicWrite(this.path(KEY_FILE + NEXT), credentials.keyPem, 0o600);
    await atomicWrite(this.path(CHAIN_FILE + NEXT), credentials.certChainPem, 0o644);
    await atomicWrite(this.path(BUNDLE_FILE), credentials.trustBundlePem, 0o644);
    await rename(this.path(KEY_FILE + NEXT), this.path(KEY_FILE));
    await rename(this.path(CHAIN_FILE + NEXT), this.path(CHAIN_FILE));
  }

  /**
   * Status writes come from the probe, the heartbeat and renewal at their own
   * pace: one at a time, in call order, so a slower older write can neither
   * clobber a newer status nor race it for the temporary file.
   */
  writeStatus(status: AgentStatus): Promise<void> {
    const text = JSON.stringify(status, null, 2) + '\n';
    const write = this.statusWrites.then(() => atomicWrite(this.path(STATUS_FILE), text, 0o644));
    this.statusWrites = write.catch(() => undefined);
    return write;
  }

  async readStatus(): Promise<AgentStatus | undefined> {
    try {
      return JSON.parse(await readFile(this.path(STATUS_FILE), 'utf8')) as AgentStatus;
    } catch {
      return undefined;
    }
  }

  /** Removes everything join and run wrote, and the directory if that leaves it empty. */
  async removeAll(): Promise<string[]> {
    const removed: string[] = [];
    for (const name of [
      CONFIG_FILE,
      KEY_FILE,
      CHAIN_FILE,
      BUNDLE_FILE,
      STATUS_FILE,
      KEY_FILE + NEXT,
      CHAIN_FILE + NEXT,
    ]) {
      try {
        await stat(this.path(name));
        await rm(this.path(name), { force: true });
        removed.push(this.path(name));
      } catch {
        // not there
      }
    }
    await rmdir(this.dir).catch(() => undefined);
    return removed;
  }
}
