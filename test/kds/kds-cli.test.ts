import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { join } from 'node:path';
import { assertCliBuilt, runCli } from '../common/cli.js';
import { waitFor } from '../common/wait.js';
import { startTestGlobal, startTestZone, type TestGlobal } from './kds-harness.js';

describe('meshfed CLI for zones', () => {
  let global: TestGlobal;
  let env: Record<string, string>;

  beforeAll(async () => {
    assertCliBuilt();
    global = await startTestGlobal();
    env = {
      MESHFED_SERVER: global.cp.url,
      MESHFED_TOKEN_FILE: global.cp.adminTokenFile,
      MESHFED_CONFIG: join(global.dir, 'client', 'config'),
    };
  });

  afterAll(async () => {
    await global?.close();
  });

  it('creates a zone token that a zone connects with, and shows the zone in get zones', async () => {
    const created = await runCli(
      ['token', 'create', '--kind', 'zone', '--zone', 'zone-cli', '--ttl', '24h', '-o', 'json'],
      {
        env,
      },
    );
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const issued = JSON.parse(created.stdout) as {
      token: string;
      kind: string;
      zone: string;
      expiresAt: string;
    };
    expect(issued).toMatchObject({ kind: 'zone', zone: 'zone-cli' });
    expect(Date.parse(issued.expiresAt)).toBeGreaterThan(Date.now());

    const zone = await startTestZone('zone-cli', global, { token: issued.token });
    try {
      await zone.client.ready();
      await waitFor(async () => {
        const status = (await global.get('/apis/meshfed.io/v1alpha1/zones/zone-cli')).json as {
          status?: { proxies?: number };
        };
        return status.status?.proxies === 3;
      });
      const table = await runCli(['get', 'zones'], { env });
      expect(table.code).toBe(0);
      const [header, row] = table.stdout.trim().split('\n');
      expect(header?.split(/\s{2,}/)).toEqual([
        'NAME',
        'ENABLED',
        'CONNECTED',
        'LAST-SYNC',
        'REVISION',
        'PROXIES',
        'VERSION',
        'AGE',
      ]);
      const cells = row?.split(/\s{2,}/) ?? [];
      expect(cells[0]).toBe('zone-cli');
      expect(cells[1]).toBe('true');
      expect(cells[2]).toBe('true');
      expect(cells[3]).toMatch(/^\d+s ago$/);
      expect(Number(cells[4])).toBeGreaterThan(0);
      expect(cells[5]).toBe('3');
      expect(cells[6]).toMatch(/^\d+\.\d+\.\d+/);
    } finally {
      await zone.close();
    }
  });

  it('refuses a zone token without --zone', async () => {
    const result = await runCli(['token', 'create', '--kind', 'zone'], { env });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('error: a zone token needs --zone (MESHFED_ERR_INVALID_ARGUMENT)\n');
  });

  it('global-cp refuses a bad --zone-grace-period before starting', async () => {
    const result = await runCli([
      'global-cp',
      '--data-dir',
      join(global.dir, 'x'),
      '--zone-grace-period',
      'soon',
    ]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/--zone-grace-period/);
    expect(result.stderr).toMatch(/expected a duration such as 500ms/);
  });
});
