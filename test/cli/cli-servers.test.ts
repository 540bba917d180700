/**
 * The long-running commands, run from the built CLI: `meshfed global-cp`
 * (flags, environment variables, one-line errors, clean stop) and
 * `meshfed demo` (ready file, admin token, Ctrl-C).
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { http } from '../common/http.js';
import { assertCliBuilt, runCli, startCli, type RunningCli } from '../common/cli.js';
import { isListening } from '../common/ports.js';
import { waitFor } from '../common/wait.js';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

describe('meshfed global-cp and demo', () => {
  let dir: string;
  const running: RunningCli[] = [];

  beforeAll(async () => {
    assertCliBuilt();
    dir = await mkdtemp(path.join(tmpdir(), 'meshfed-cli-servers-'));
  });

  afterAll(async () => {
    for (const r of running) {
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.child.kill('SIGKILL');
        await r.exited;
      }
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it.each([
    [
      ['--port', 'abc'],
      {},
      /^error: option '--port <port>' argument 'abc' is invalid\. .*\(MESHFED_ERR_INVALID_ARGUMENT\)\n$/,
    ],
    [['--port', '70000'], {}, /argument '70000' is invalid.*\(MESHFED_ERR_INVALID_ARGUMENT\)\n$/],
    [[], { MESHFED_GLOBAL_PORT: '70000' }, /value '70000' from env 'MESHFED_GLOBAL_PORT' is invalid/],
    [['--store', 'ftp://x'], {}, /unsupported store scheme "ftp:"/],
    [['--max-body-bytes', 'lots'], {}, /--max-body-bytes <bytes>' argument 'lots' is invalid/],
    [['--ca-cert', 'ca.pem'], {}, /^error: --ca-cert and --ca-key go together/],
  ])('global-cp %j %j refuses bad values before starting', async (args, env, expected) => {
    const dataDir = path.join(dir, `bad-${Math.random().toString(36).slice(2)}`);
    const result = await runCli(['global-cp', '--data-dir', dataDir, ...args], { env });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(expected);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('global-cp serves with flags beating environment variables, and stops on SIGTERM with exit 0', async () => {
    const dataDir = path.join(dir, 'global');
    const cp = startCli(['global-cp', '--port', '0', '--data-dir', dataDir], {
      // An invalid env port must not matter when the flag is given.
      env: { MESHFED_GLOBAL_PORT: 'not-a-port', MESHFED_STORE: 'memory://' },
    });
    running.push(cp);
    const listening = await waitFor(
      () =>
        cp
          .stderr()
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .find((r) => r.component === 'cli' && typeof r.url === 'string'),
      { what: 'the "listening" log line', timeoutMs: 15_000 },
    );
    const url = String(listening.url);
    const port = Number(listening.port);
    expect(url).toBe(`http://127.0.0.1:${port}`);
    expect(listening.adminTokenFile).toBe(path.join(dataDir, 'admin-token'));

    const admin = (await readFile(path.join(dataDir, 'admin-token'), 'utf8')).trim();
    expect((await http(`${url}/apis`, { token: admin })).status).toBe(200);
    // MESHFED_STORE=memory:// was honoured: no file store under the data dir.
    expect(await readdir(dataDir)).not.toContain('store');

    cp.child.kill('SIGTERM');
    const exit = await cp.exited;
    expect(exit.code).toBe(0);
    expect(await isListening(port)).toBe(false);
  });

  it('demo writes the ready file once serving, answers with its admin token, and stops on SIGINT', async () => {
    const dataDir = path.join(dir, 'demo');
    const readyFile = path.join(dir, 'ready.json');
    const demo = startCli(['demo', '--port', '0', '--data-dir', dataDir, '--ready-file', readyFile]);
    running.push(demo);
    const ready = await waitFor(
      async () => {
        if (demo.child.exitCode !== null) throw new Error(`demo exited: ${demo.stderr()}`);
        return existsSync(readyFile) ? (JSON.parse(await readFile(readyFile, 'utf8')) as unknown) : undefined;
      },
      { what: 'the ready file', timeoutMs: 20_000 },
    );
    expect(isRecord(ready)).toBe(true);
    if (!isRecord(ready)) return;
    // The demo runs zone-a and zone-b, synced from the global CP over KDS.
    expect(ready.zones).toEqual([
      expect.objectContaining({
        name: 'zone-a',
        api: expect.stringMatching(/^http/),
        mds: expect.any(String),
      }),
      expect.objectContaining({
        name: 'zone-b',
        api: expect.stringMatching(/^http/),
        mds: expect.any(String),
      }),
    ]);
    expect(ready.workloads).toEqual([]);
    const api = String(ready.globalApi);
    expect(api).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(ready.dashboard).toBe(`${api}/`);

    const admin = (await readFile(String(ready.adminTokenFile), 'utf8')).trim();
    expect((await http(`${api}/apis`, { token: admin })).status).toBe(200);
    expect((await http(`${api}/apis`)).status).toBe(401);
    await waitFor(() => demo.stdout().includes('meshfed get vs -A'), { what: 'the summary' });
    expect(demo.stdout()).toContain(`export MESHFED_TOKEN_FILE=${String(ready.adminTokenFile)}`);
    expect(demo.stdout()).toContain(api);

    demo.child.kill('SIGINT');
    const exit = await demo.exited;
    expect(exit.code).toBe(0);
    expect(await isListening(Number(new URL(api).port))).toBe(false);
    // Stopping removes the now-stale ready file and keeps the user's data.
    expect(existsSync(readyFile)).toBe(false);
    expect(existsSync(String(ready.adminTokenFile))).toBe(true);
  });

  it('demo refuses a bad port before starting', async () => {
    const result = await runCli(['demo', '--port', '-1', '--data-dir', path.join(dir, 'demo-bad')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: .*--port.*\(MESHFED_ERR_INVALID_ARGUMENT\)\n$/);
  });
});
