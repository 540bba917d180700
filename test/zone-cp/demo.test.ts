import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertCliBuilt, runCli, startCli, type RunningCli } from '../common/cli.js';
import { http } from '../common/http.js';
import { waitFor } from '../common/wait.js';

interface ReadyFile {
  globalApi: string;
  adminTokenFile: string;
  zones: Array<{ name: string; api: string; mds: string; gateway?: string }>;
}

describe('npm start (meshfed demo) runs zone-a and zone-b wired to the global CP', () => {
  let dir: string;
  let demo: RunningCli;
  let ready: ReadyFile;

  beforeAll(async () => {
    assertCliBuilt();
    dir = await mkdtemp(join(tmpdir(), 'meshfed-demo-zone-'));
    const readyFile = join(dir, 'ready.json');
    demo = startCli(['demo', '--port', '0', '--data-dir', join(dir, 'data'), '--ready-file', readyFile]);
    ready = await waitFor(
      async () => {
        if (demo.child.exitCode !== null) throw new Error(`demo exited: ${demo.stderr()}`);
        return existsSync(readyFile)
          ? (JSON.parse(await readFile(readyFile, 'utf8')) as ReadyFile)
          : undefined;
      },
      { what: 'the ready file', timeoutMs: 30_000 },
    );
  });

  afterAll(async () => {
    if (demo !== undefined && demo.child.exitCode === null) {
      demo.child.kill('SIGKILL');
      await demo.exited;
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('lists zone-a in the ready file and its API takes the demo admin token', async () => {
    const [zone] = ready.zones;
    expect(zone).toMatchObject({
      name: 'zone-a',
      api: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
      mds: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
    });
    const admin = (await readFile(ready.adminTokenFile, 'utf8')).trim();
    const readyz = await http(`${zone?.api}/readyz`);
    expect(readyz.json).toMatchObject({ status: 'ready', zone: 'zone-a', mode: 'global' });
    const inspect = await runCli([
      '--server',
      zone?.api ?? '',
      '--token',
      admin,
      'inspect',
      'proxies',
      '-o',
      'json',
    ]);
    expect(inspect.code).toBe(0);
    expect(JSON.parse(inspect.stdout)).toEqual([]);
    // The zone trusts the mesh root global holds.
    const bundle = (await http(`${zone?.api}/api/v1/trust-bundle`, { token: admin })).json as {
      roots: string[];
    };
    const globalBundle = (await http(`${ready.globalApi}/api/v1/trust-bundle`, { token: admin })).json as {
      roots: string[];
    };
    expect(bundle.roots).toEqual(globalBundle.roots);

    // Both zones show as connected in global's zone registry (`meshfed get zones`).
    expect(ready.zones.map((z) => z.name)).toEqual(['zone-a', 'zone-b']);
    const zones = await runCli(['--server', ready.globalApi, '--token', admin, 'get', 'zones', '-o', 'json']);
    expect(zones.code).toBe(0);
    const listed = JSON.parse(zones.stdout) as {
      items: Array<{ metadata: { name: string }; status?: { connected?: boolean } }>;
    };
    expect(listed.items.map((z) => [z.metadata.name, z.status?.connected])).toEqual([
      ['zone-a', true],
      ['zone-b', true],
    ]);

    demo.child.kill('SIGINT');
    expect((await demo.exited).code).toBe(0);
  });
});
