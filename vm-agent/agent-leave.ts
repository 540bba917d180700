/**
 * `meshfed vm-agent leave`: take this VM out of the mesh.
 *
 * 1. Stop the agent first (systemd unit disabled and stopped, or the `run`
 *    process named in status.json sent SIGTERM), so no heartbeat writes the
 *    WorkloadEntry again.
 * 2. Deregister at the zone, signed with the current certificate: the
 *    WorkloadEntry is deleted and the certificate's serial revoked (the CA
 *    and MDS refuse it from then on).
 * 3. Remove the unit and the credentials.
 *
 * If the zone cannot be reached nothing is removed (the VM would stay
 * registered with no way to prove itself later) unless `force` is set.
 */

import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ErrorCodes, MeshError, isMeshError } from '../core/errors.js';
import { ConfigDir } from './agent-files.js';
import { DEFAULT_UNIT_DIR, removeUnit } from './agent-systemd.js';
import { parseZoneCpUrl, zoneRequest } from './zone-client.js';

export interface LeaveOptions {
  configDir: string;
  /** Where join put the unit. Default /etc/systemd/system. */
  systemdDir?: string;
  /** Leave systemd alone. */
  noSystemd?: boolean;
  /** Remove the local credentials even when the zone cannot be told. */
  force?: boolean;
  /** How long to wait for a running agent to stop. Default 20 s. */
  stopTimeoutMs?: number;
}

export interface LeaveResult {
  workloadEntry: string;
  namespace: string;
  /** The zone deleted the entry (false: it was already gone). */
  deleted: boolean;
  revokedSerials: string[];
  /** The zone could not be told (only with force). */
  zoneError?: string;
  stoppedAgent: string;
  systemd: string;
  removedFiles: string[];
}

async function alive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // An exited child not yet reaped by its parent still answers signal 0.
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return !/^\d+ \(.*\) Z/.test(stat);
}

async function isVmAgent(pid: number): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('vm-agent');
  } catch {
    // No /proc: trust status.json.
    return true;
  }
}

/** SIGTERM to the `run` process status.json names, then wait for it to exit. */
async function stopRunningAgent(dir: ConfigDir, timeoutMs: number): Promise<string> {
  const status = await dir.readStatus();
  const pid = status?.pid ?? 0;
  if (!(pid > 0) || pid === process.pid || !(await alive(pid)) || !(await isVmAgent(pid)))
    return 'no agent was running';
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (await alive(pid)) {
    if (Date.now() > deadline) {
      throw new MeshError(
        ErrorCodes.UNAVAILABLE,
        `the VM agent (pid ${pid}) did not stop within ${Math.round(timeoutMs / 1000)} s: stop it, then run leave again`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return `stopped the agent (pid ${pid})`;
}

export async function leaveMesh(options: LeaveOptions): Promise<LeaveResult> {
  const dir = new ConfigDir(resolve(options.configDir));
  const config = await dir.readConfig();
  const credentials = await dir.readCredentials();
  const unitDir = options.systemdDir ?? DEFAULT_UNIT_DIR;
  let systemd = 'left alone (--no-systemd)';
  if (options.noSystemd !== true) systemd = await removeUnit(unitDir);
  const stoppedAgent = await stopRunningAgent(dir, options.stopTimeoutMs ?? 20_000);

  let deleted = false;
  let revokedSerials: string[] = [];
  let zoneError: string | undefined;
  try {
    const answer = await zoneRequest(
      {
        url: parseZoneCpUrl(config.zoneCp),
        ...(config.caFingerprint === undefined ? { insecure: true } : { pin: config.caFingerprint }),
      },
      'POST',
      '/api/v1/vm/leave',
      {
        json: { workloadEntry: config.workloadEntry, namespace: config.namespace },
        proof: { certChainPem: credentials.certChainPem, keyPem: credentials.keyPem },
      },
    );
    const body = (answer.body ?? {}) as { deleted?: unknown; revokedSerials?: unknown };
    deleted = body.deleted === true;
    revokedSerials = Array.isArray(body.revokedSerials) ? body.revokedSerials.map(String) : [];
  } catch (err) {
    if (options.force !== true) {
      throw new MeshError(
        isMeshError(err) ? err.code : ErrorCodes.UNAVAILABLE,
        `the zone was not told (${(err as Error).message}); the VM is still registered and its agent is stopped: run leave again once the zone answers, or pass --force to remove the local credentials anyway`,
        { cause: err },
      );
    }
    zoneError = (err as Error).message;
  }
  const removedFiles = await dir.removeAll();
  return {
    workloadEntry: config.workloadEntry,
    namespace: config.namespace,
    deleted,
    revokedSerials,
    ...(zoneError === undefined ? {} : { zoneError }),
    stoppedAgent,
    systemd,
    removedFiles,
  };
}

export function leaveSummary(result: LeaveResult): string {
  const zone =
    result.zoneError !== undefined
      ? `NOT told (--force): ${result.zoneError}; delete WorkloadEntry ${result.namespace}/${result.workloadEntry} on the zone by hand`
      : `${result.deleted ? 'deleted' : 'had already removed'} WorkloadEntry ${result.namespace}/${result.workloadEntry}; revoked certificate serial ${result.revokedSerials.join(', ') || '(none)'}`;
  return [
    'left the mesh',
    `  zone:     ${zone}`,
    `  agent:    ${result.stoppedAgent}`,
    `  systemd:  ${result.systemd}`,
    `  files:    removed ${result.removedFiles.length === 0 ? 'nothing' : result.removedFiles.join(', ')}`,
  ].join('\n');
}
