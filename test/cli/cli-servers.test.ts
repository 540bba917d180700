/**
 * The long-running commands, run from the built CLI: `meshfed global-cp`
 * (flags, environment variables, one-line errors, clean stop) and
 * `meshfed demo`'s flag checks (the demo itself: test/cli/demo.test.ts).
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

  it('demo refuses a bad port before starting', async () => {
    const result = await runCli(['demo', '--port', '-1', '--data-dir', path.join(dir, 'demo-bad')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: .*--port.*\(MESHFED_ERR_INVALID_ARGUMENT\)\n$/);
  });
});
