/**
 * The systemd unit `join` installs: the text of
 * deploy/systemd/meshfed-vm-agent.service (the one shipped and checked with
 * systemd-analyze) with its paths substituted: the command that starts the
 * agent, the config directory, the user. Enabled and started with
 * `systemctl enable --now` when systemd runs (`/run/systemd/system` exists).
 */

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, MeshError } from '../core/errors.js';

export const UNIT_NAME = 'meshfed-vm-agent.service';
export const DEFAULT_UNIT_DIR = '/etc/systemd/system';
const TEMPLATE = join('deploy', 'systemd', UNIT_NAME);
const TEMPLATE_CONFIG_DIR = '/etc/meshfed';

export interface UnitSettings {
  /** The command that runs meshfed (`/usr/local/bin/meshfed`, or node and the CLI's main.js). */
  command: string[];
  configDir: string;
  /** User and group the agent runs as. Default meshfed. */
  user?: string;
}

/** True when systemd is the running init system. */
export function systemdRunning(): boolean {
  return existsSync('/run/systemd/system');
}

/** The shipped unit: deploy/systemd/ above this file (source tree, or dist/ next to it). */
export async function unitTemplate(): Promise<string> {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, TEMPLATE);
    if (existsSync(candidate)) return readFile(candidate, 'utf8');
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new MeshError(
    ErrorCodes.CONFIG,
    `cannot find ${TEMPLATE} in this meshfed installation: install the unit by hand (docs/vm.md) and join with --no-systemd`,
  );
}

function quote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `"${arg.replace(/(["\\])/g, '\\$1')}"`;
}

/** The template with this machine's command, config directory and user. */
export function renderUnit(template: string, settings: UnitSettings): string {
  const configDir = resolve(settings.configDir);
  const user = settings.user ?? 'meshfed';
  const exec = [...settings.command, 'vm-agent', 'run', '--config-dir', configDir].map(quote).join(' ');
  return template
    .split('\n')
    .map((line) => {
      if (line.startsWith('#')) return line;
      if (line.startsWith('ExecStart=')) return `ExecStart=${exec}`;
      if (line.startsWith('User=')) return `User=${user}`;
      if (line.startsWith('Group=')) return `Group=${user}`;
      return line.split(TEMPLATE_CONFIG_DIR).join(configDir);
    })
    .join('\n');
}

function run(file: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  return new Promise((done) => {
    execFile(file, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      done({ ok: err === null, output: `${String(stderr)}${String(stdout)}`.trim() });
    });
  });
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await chown(path, uid, gid);
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) await chownTree(child, uid, gid);
    else await chown(child, uid, gid);
  }
}

export interface InstallResult {
  unitPath: string;
  enabled: boolean;
  /** What happened, for the summary. */
  note: string;
}

/**
 * Writes the unit into `unitDir` and, when systemd runs and `enable` is
 * set, creates the user, hands it the config directory and enables the
 * unit (`--now`: started, or restarted to pick up a new config).
 */
export async function installUnit(
  settings: UnitSettings & { unitDir: string; enable: boolean },
): Promise<InstallResult> {
  const unitPath = join(settings.unitDir, UNIT_NAME);
  const text = renderUnit(await unitTemplate(), settings);
  try {
    await writeFile(unitPath, text, { mode: 0o644 });
  } catch (err) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `cannot write the systemd unit ${unitPath}: ${(err as Error).message}: run join as root, or pass --no-systemd`,
      { cause: err },
    );
  }
  if (!settings.enable || !systemdRunning()) {
    return {
      unitPath,
      enabled: false,
      note: `written to ${unitPath}; systemd is not running here: start the agent with meshfed vm-agent run --config-dir ${resolve(settings.configDir)}`,
    };
  }
  const user = settings.user ?? 'meshfed';
  if (!(await run('id', ['-u', user])).ok) {
    const created = await run('useradd', [
      '--system',
      '--no-create-home',
      '--home-dir',
      '/nonexistent',
      '--shell',
      '/usr/sbin/nologin',
      user,
    ]);
    if (!created.ok) {
      throw new MeshError(ErrorCodes.CONFIG, `cannot create the system user ${user}: ${created.output}`);
    }
  }
  const uid = Number((await run('id', ['-u', user])).output);
  const gid = Number((await run('id', ['-g', user])).output);
  if (Number.isInteger(uid) && Number.isInteger(gid)) await chownTree(resolve(settings.configDir), uid, gid);
  for (const args of [['daemon-reload'], ['enable', UNIT_NAME], ['restart', UNIT_NAME]]) {
    const result = await run('systemctl', args);
    if (!result.ok) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `systemctl ${args.join(' ')} failed: ${result.output}: see journalctl -u ${UNIT_NAME}`,
      );
    }
  }
  return {
    unitPath,
    enabled: true,
    note: `${UNIT_NAME} enabled and started (journalctl -u ${UNIT_NAME} -f)`,
  };
}

/** Stops and disables the unit (when systemd runs) and removes its file. */
export async function removeUnit(unitDir: string): Promise<string> {
  const unitPath = join(unitDir, UNIT_NAME);
  const present = existsSync(unitPath);
  if (systemdRunning()) {
    await run('systemctl', ['disable', '--now', UNIT_NAME]);
  }
  if (present) {
    await rm(unitPath, { force: true });
    if (systemdRunning()) await run('systemctl', ['daemon-reload']);
    return `${UNIT_NAME} stopped, disabled and removed (${unitPath})`;
  }
  return systemdRunning() ? `${UNIT_NAME} stopped and disabled` : 'no systemd unit to remove';
}
