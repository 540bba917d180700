/**
 * The systemd units meshfed ships (deploy/systemd/, and the sample app unit
 * of the compose "VM"), checked with the real `systemd-analyze`:
 * - `verify` must pass with no warning at all;
 * - `security --offline` must rate the agent's exposure at most 2.5 of 10;
 * - the agent unit keeps what the VM agent needs: Restart=always, the
 *   credentials under /etc/meshfed (not /run) and the hardening options.
 *
 * Why a temporary root: `verify` refuses a unit whose ExecStart binary does
 * not exist, and /usr/local/bin/meshfed does not exist on a build machine.
 * Rewriting ExecStart in a copy would verify a different file, so the unit
 * is installed byte for byte into a scratch root (`--root`), next to a stub
 * executable at the ExecStart path and a copy of the host's own system units
 * (for the targets it orders itself after).
 */

import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SIDECAR_ENV } from '../../core/sidecar-node-options.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const AGENT_UNIT = path.join(ROOT, 'deploy/systemd/meshfed-vm-agent.service');
const UNITS = [AGENT_UNIT, path.join(ROOT, 'deploy/compose/meshfed-sample-app.service')];
const MAX_EXPOSURE = 2.5;

type Unit = Map<string, Map<string, string[]>>;

/** systemd's unit file syntax: sections, `Key=value` (repeatable), comments, continuation lines. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = (pending + raw).trim();
    if (line.endsWith('\\')) {
      pending = `${line.slice(0, -1)} `;
      continue;
    }
    pending = '';
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header?.[1]) {
      section = new Map();
      unit.set(header[1], section);
      continue;
    }
    const eq = line.indexOf('=');
    if (!section || eq < 0) throw new Error(`unit: cannot parse "${line}"`);
    const key = line.slice(0, eq).trim();
    const values = section.get(key) ?? [];
    values.push(line.slice(eq + 1).trim());
    section.set(key, values);
  }
  return unit;
}

function one(unit: Unit, section: string, key: string): string | undefined {
  const values = unit.get(section)?.get(key);
  return values?.[values.length - 1];
}

/** Runs systemd-analyze; a missing binary fails the test with what to install, never skips it. */
function analyze(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync('systemd-analyze', args, { encoding: 'utf8' });
  if (result.error) {
    throw new Error(
      `systemd-analyze is not installed (${result.error.message}): the systemd units cannot be verified. ` +
        'Install the Debian package "systemd" (CI: add it to .ci/run).',
    );
  }
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('systemd units', () => {
  let root: string;
  const installed = new Map<string, string>();

  beforeAll(() => {
    root = mkdtempSync(path.join(tmpdir(), 'systemd-root-'));
    const systemUnits = ['/usr/lib/systemd/system', '/lib/systemd/system'].find((dir) =>
      existsSync(path.join(dir, 'multi-user.target')),
    );
    if (systemUnits === undefined) {
      throw new Error(
        'no system units (multi-user.target) on this machine: install the Debian package "systemd"',
      );
    }
    cpSync(systemUnits, path.join(root, 'usr/lib/systemd/system'), {
      recursive: true,
      dereference: false,
      verbatimSymlinks: true,
    });
    mkdirSync(path.join(root, 'etc/systemd/system'), { recursive: true });
    for (const file of UNITS) {
      const target = path.join(root, 'etc/systemd/system', path.basename(file));
      writeFileSync(target, readFileSync(file));
      installed.set(file, `/etc/systemd/system/${path.basename(file)}`);
      const exec = one(parseUnit(readFileSync(file, 'utf8')), 'Service', 'ExecStart') ?? '';
      const binary = exec.replace(/^[-@:+!]+/, '').split(/\s+/)[0] ?? '';
      expect(binary.startsWith('/')).toBe(true);
      mkdirSync(path.join(root, path.dirname(binary)), { recursive: true });
      writeFileSync(path.join(root, binary), '#!/bin/sh\nexit 0\n');
      chmodSync(path.join(root, binary), 0o755);
    }
  });
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });

  it.each(UNITS.map((u) => [path.relative(ROOT, u), u]))(
    '%s passes systemd-analyze verify without a warning',
    (_name, file) => {
      const result = analyze(['verify', `--root=${root}`, installed.get(file) ?? '']);
      expect({ status: result.status, stderr: result.stderr, stdout: result.stdout }).toEqual({
        status: 0,
        stderr: '',
        stdout: '',
      });
    },
  );

  it('catches a broken unit (the check is live)', () => {
    const broken = path.join(root, 'etc/systemd/system/meshfed-broken.service');
    writeFileSync(
      broken,
      readFileSync(AGENT_UNIT, 'utf8').replace('Restart=always', 'Restart=always\nRestartt=always'),
    );
    const typo = analyze(['verify', `--root=${root}`, '/etc/systemd/system/meshfed-broken.service']);
    expect(typo.stderr).toMatch(/Unknown key 'Restartt'/);
    writeFileSync(
      broken,
      readFileSync(AGENT_UNIT, 'utf8').replace('/usr/local/bin/meshfed', '/usr/local/bin/meshfed-missing'),
    );
    const missing = analyze(['verify', `--root=${root}`, '/etc/systemd/system/meshfed-broken.service']);
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/meshfed-missing is not executable/);
    rmSync(broken);
  });

  it(`rates the agent's exposure at most ${MAX_EXPOSURE} (systemd-analyze security)`, () => {
    const result = analyze([
      'security',
      '--offline=yes',
      `--root=${root}`,
      // The threshold is on a 0-100 scale (exposure × 10).
      `--threshold=${MAX_EXPOSURE * 10}`,
      installed.get(AGENT_UNIT) ?? '',
    ]);
    const level = /Overall exposure level for \S+: ([\d.]+)/.exec(result.stdout)?.[1];
    expect(level).toBeDefined();
    expect(Number(level)).toBeLessThanOrEqual(MAX_EXPOSURE);
    expect(result.status).toBe(0);
  });

  it('runs the agent as systemd should: always restarted, credentials kept under /etc/meshfed, hardened', () => {
    const unit = parseUnit(readFileSync(AGENT_UNIT, 'utf8'));
    expect(one(unit, 'Service', 'ExecStart')).toBe(
      '/usr/local/bin/meshfed vm-agent run --config-dir /etc/meshfed',
    );
    expect(one(unit, 'Service', 'Restart')).toBe('always');
    expect(one(unit, 'Unit', 'StartLimitIntervalSec')).toBe('0');
    expect(one(unit, 'Unit', 'After')).toContain('network-online.target');
    expect(one(unit, 'Install', 'WantedBy')).toBe('multi-user.target');
    // A dedicated user, no capabilities: the sidecar's ports are unprivileged.
    expect(one(unit, 'Service', 'User')).toBe('meshfed');
    expect(one(unit, 'Service', 'CapabilityBoundingSet')).toBe('');
    expect(one(unit, 'Service', 'AmbientCapabilities')).toBe('');
    for (const [key, value] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['PrivateDevices', 'yes'],
      ['ProtectKernelTunables', 'yes'],
      ['ProtectControlGroups', 'yes'],
      ['RestrictSUIDSGID', 'yes'],
      ['SystemCallArchitectures', 'native'],
    ] as const) {
      expect([key, one(unit, 'Service', key)]).toEqual([key, value]);
    }
    // The only writable place is the config dir, which survives reboots (unlike /run).
    expect(unit.get('Service')?.get('ReadWritePaths')).toEqual(['/etc/meshfed']);
    expect(one(unit, 'Unit', 'ConditionDirectoryNotEmpty')).toBe('/etc/meshfed');
    for (const volatile of ['RuntimeDirectory', 'RuntimeDirectoryPreserve'])
      expect(unit.get('Service')?.has(volatile)).toBe(false);
    // The agent hosts the VM's sidecar: it runs in the sidecar's environment, as benchmarked.
    // An assignment with spaces is quoted whole (systemd.exec, Environment=).
    const environment = (unit.get('Service')?.get('Environment') ?? []).map((e) =>
      e.replace(/^"(.*)"$/, '$1'),
    );
    for (const [name, value] of Object.entries(SIDECAR_ENV))
      expect(environment).toContain(`${name}=${value}`);
    // V8's JIT needs writable executable memory: this option would stop Node at start.
    expect(one(unit, 'Service', 'MemoryDenyWriteExecute')).toBeUndefined();
  });
});
