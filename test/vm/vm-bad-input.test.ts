/**
 * Bad input to `meshfed vm-agent`: each a single `error: … (CODE)` line
 * that says what to do, exit status 1, and nothing created at the zone.
 * Wrong zone CP URL (not https, not a URL, not TLS, TLS but not a zone CP),
 * wrong or malformed fingerprint, unreachable zone CP, read-only config
 * directory, sidecar port already in use, not enrolled, no token.
 */

import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { assertCliBuilt, type CliResult } from '../common/cli.js';
import { createTestMesh } from '../common/pki-fixtures.js';
import { freePort } from '../../core/free-port.js';
import {
  errorLine,
  hostNet,
  portFlags,
  runVmCli,
  startVmZone,
  vmJoinArgs,
  vmPorts,
  workloadGroupYaml,
  type VmZone,
} from './vm-fixtures.js';

const NS = 'ops';
let zone: VmZone;
let dir: string;
let token: string;
const servers: Array<http.Server | net.Server> = [];
const cleanups: Array<() => void> = [];

async function listen<T extends http.Server | net.Server>(server: T): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return (server.address() as AddressInfo).port;
}

function join_(
  args: string[],
  configDir = join(dir, `vm-${Math.random().toString(36).slice(2)}`),
): Promise<CliResult> {
  return runVmCli(hostNet(), [
    'vm-agent',
    'join',
    '--address',
    '10.88.0.1',
    '--no-systemd',
    '--config-dir',
    configDir,
    ...args,
  ]);
}

async function expectOneLine(result: CliResult, code: string, reason: RegExp): Promise<void> {
  expect(result.code).toBe(1);
  const line = errorLine(result);
  expect(line).toMatch(reason);
  expect(line.endsWith(`(${code})`)).toBe(true);
  expect(await zone.workloadEntries(NS)).toEqual([]);
}

/** A directory this process cannot write: a read-only bind mount as root, mode 0555 otherwise. */
async function readOnlyDir(): Promise<string> {
  const path = await mkdtemp(join(tmpdir(), 'meshfed-vm-ro-'));
  // Runs after the unmount (cleanups run in reverse).
  cleanups.push(() => spawnSync('rmdir', [path]));
  if (process.getuid?.() === 0) {
    const bind = spawnSync('mount', ['--bind', path, path], { encoding: 'utf8' });
    const ro =
      bind.status === 0 ? spawnSync('mount', ['-o', 'remount,ro,bind', path], { encoding: 'utf8' }) : bind;
    if (bind.status === 0) cleanups.push(() => spawnSync('umount', [path]));
    if (ro.status !== 0) throw new Error(`cannot make a read-only directory as root: ${ro.stderr}`);
  } else {
    await chmod(path, 0o555);
  }
  await expect(writeFile(join(path, 'probe'), 'x')).rejects.toThrow();
  return path;
}

beforeAll(async () => {
  assertCliBuilt();
  dir = await mkdtemp(join(tmpdir(), 'meshfed-vm-bad-'));
  zone = await startVmZone(hostNet());
  await zone.admin('POST', '/api/v1/apply', { yaml: workloadGroupYaml('db', NS, '') });
  token = (await zone.vmToken({ workloadGroup: 'db', uses: 100 })).token;
}, 30_000);

afterAll(async () => {
  for (const server of servers) server.close();
  for (const cleanup of cleanups.reverse()) cleanup();
  await zone?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('vm-agent join refuses bad input with one line that says what to do', () => {
  it('a zone CP URL that is not https', async () => {
    await expectOneLine(
      await join_(['--zone-cp', `http://127.0.0.1:${zone.restPort}`, '--token', token]),
      'MESHFED_ERR_INVALID_ARGUMENT',
      /--zone-cp must be an https:\/\/ URL/,
    );
  });

  it('a zone CP URL that is not a URL', async () => {
    await expectOneLine(
      await join_(['--zone-cp', 'zone a', '--token', token]),
      'MESHFED_ERR_INVALID_ARGUMENT',
      /is not a URL/,
    );
  });

  it('a port that does not speak TLS', async () => {
    const port = await listen(http.createServer((_req, res) => res.end('plain')));
    await expectOneLine(
      await join_(['--zone-cp', `https://127.0.0.1:${port}`, '--token', token]),
      'MESHFED_ERR_CONFIG',
      /does not answer TLS .*REST port/,
    );
  });

  it('a TLS server that is not a zone control plane', async () => {
    const other = createTestMesh('elsewhere.test').workload({
      namespace: 'web',
      serviceAccount: 'www',
      dnsNames: ['localhost'],
    });
    const port = await listen(
      https.createServer({ cert: other.certChainPem, key: other.keyPem }, (_req, res) => res.end('hi')),
    );
    await expectOneLine(
      await join_(['--zone-cp', `https://127.0.0.1:${port}`, '--token', token]),
      'MESHFED_ERR_PKI',
      /is not a meshfed zone control plane/,
    );
  });

  it('a fingerprint that is not the zone CA', async () => {
    await expectOneLine(
      await join_([
        '--zone-cp',
        zone.joinUrl,
        '--token',
        token,
        '--ca-fingerprint',
        `sha256:${'ab'.repeat(32)}`,
      ]),
      'MESHFED_ERR_PKI',
      /is not the one pinned: its chain ends in sha256:[0-9a-f]{64}, not sha256:(ab){32}: check --ca-fingerprint/,
    );
  });

  it('a fingerprint that is not a fingerprint', async () => {
    await expectOneLine(
      await join_(['--zone-cp', zone.joinUrl, '--token', token, '--ca-fingerprint', 'sha1:1234']),
      'MESHFED_ERR_INVALID_ARGUMENT',
      /is not a SHA-256 fingerprint/,
    );
  });

  it('an unreachable zone CP', async () => {
    const port = await freePort();
    await expectOneLine(
      await join_(['--zone-cp', `https://127.0.0.1:${port}`, '--token', token]),
      'MESHFED_ERR_UNAVAILABLE',
      /cannot reach the zone CP at https:\/\/127\.0\.0\.1:\d+: connection refused: check --zone-cp/,
    );
  });

  it('a read-only config directory, before anything is sent', async () => {
    const readOnly = await readOnlyDir();
    await expectOneLine(
      await join_(['--zone-cp', zone.joinUrl, '--token', token], join(readOnly, 'meshfed')),
      'MESHFED_ERR_CONFIG',
      /the config dir .* is not writable \((EROFS|EACCES)\): run as root, make it writable, or choose another --config-dir/,
    );
  });

  it('no join token', async () => {
    await expectOneLine(
      await join_(['--zone-cp', zone.joinUrl]),
      'MESHFED_ERR_INVALID_ARGUMENT',
      /join needs a join token/,
    );
  });

  it("takes an empty MESHFED_CA_FINGERPRINT (docker-compose's default) as not given: the token's pin applies", async () => {
    const result = await runVmCli(
      hostNet(),
      vmJoinArgs(zone.joinUrl, token, join(dir, 'empty-env'), ['--address', '10.88.0.2']),
      { MESHFED_CA_FINGERPRINT: '' },
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/zone CA pinned sha256:[0-9a-f]{64}/);
    await zone.admin('DELETE', `/apis/networking.istio.io/v1/namespaces/${NS}/workloadentries/db-10-88-0-2`);
  });

  it('trusts on first use only when told to, and warns', async () => {
    const result = await join_(['--zone-cp', zone.joinUrl, '--token', token, '--insecure-skip-verify']);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/^warning: --insecure-skip-verify: the zone CP was NOT authenticated/);
    expect(result.stdout).toContain('NOT verified');
    await zone.admin('DELETE', `/apis/networking.istio.io/v1/namespaces/${NS}/workloadentries/db-10-88-0-1`);
  });
});

describe('vm-agent run refuses bad input with one line', () => {
  it('a sidecar port already in use', async () => {
    const ports = await vmPorts(hostNet());
    const configDir = join(dir, 'busy');
    const joined = await join_(['--zone-cp', zone.joinUrl, '--token', token, ...portFlags(ports)], configDir);
    expect(joined.code).toBe(0);
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(ports.inbound, '0.0.0.0', resolve));
    servers.push(blocker);
    const result = await runVmCli(hostNet(), ['vm-agent', 'run', '--config-dir', configDir]);
    expect(result.code).toBe(1);
    expect(errorLine(result)).toMatch(
      new RegExp(
        `port ${ports.inbound} \\(inbound\\) is already in use: stop what listens there, or run meshfed vm-agent join again with --inbound-port \\(MESHFED_ERR_CONFIG\\)$`,
      ),
    );
    blocker.close();
    await zone.admin('DELETE', `/apis/networking.istio.io/v1/namespaces/${NS}/workloadentries/db-10-88-0-1`);
  });

  it('a VM that never joined', async () => {
    const empty = join(dir, 'never-joined');
    await mkdir(empty);
    const result = await runVmCli(hostNet(), ['vm-agent', 'run', '--config-dir', empty]);
    expect(result.code).toBe(1);
    expect(errorLine(result)).toMatch(/this VM is not enrolled .*run meshfed vm-agent join first/);
    const status = await runVmCli(hostNet(), ['vm-agent', 'status', '--config-dir', empty]);
    expect(errorLine(status)).toMatch(/this VM is not enrolled/);
  });
});
