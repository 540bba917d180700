import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { MdsClient, type ReceivedSnapshot } from '../../core/mds/mds-client.js';
import { assertCliBuilt, runCli } from '../common/cli.js';
import { waitFor } from '../common/wait.js';
import { service, startTestZoneCp, workload, type TestZoneCp } from '../common/zone-cp.js';

describe('meshfed inspect / token against a zone', () => {
  let zone: TestZoneCp;
  let client: MdsClient;
  const received: ReceivedSnapshot[] = [];

  beforeAll(async () => {
    assertCliBuilt();
    zone = await startTestZoneCp({ zone: 'zone-cli' });
    zone.discovery?.set([
      service('web', 'shop', [workload('web-1', 'shop')]),
      service('cart', 'shop', [workload('cart-1', 'shop')]),
    ]);
    const token = await zone.issueProxyToken({ workload: 'web-1', namespace: 'shop', serviceAccount: 'web' });
    client = new MdsClient({
      address: zone.cp.grpcAddress,
      caPem: zone.cp.caPem,
      credential: () => ({ token }),
      hello: { proxyId: 'web-1.shop', kind: 'sidecar', workload: 'web-1', namespace: 'shop' },
      onSnapshot: (s) => {
        received.push(s);
      },
    });
    client.start();
    await waitFor(() => received.length === 1, { what: 'first snapshot' });
  });

  afterAll(async () => {
    client?.close();
    await zone?.close();
  });

  const cli = (args: string[]) => runCli(['--server', zone.cp.restUrl, '--token', zone.admin, ...args]);

  it('lists proxies as a table and as JSON', async () => {
    const table = await waitFor(
      async () => {
        const result = await cli(['inspect', 'proxies']);
        return result.stdout.includes('yes') && !result.stdout.includes('(pending)') ? result : undefined;
      },
      { what: 'an ACKed proxy in the table' },
    );
    expect(table.code).toBe(0);
    const [header, row] = table.stdout.trim().split('\n');
    expect(header).toMatch(
      /^ID\s+KIND\s+WORKLOAD\s+CONNECTED\s+VERSION\s+LAST ACK\s+LAST NACK\s+CERT EXPIRES\s+STATUS$/,
    );
    expect(row).toMatch(/^web-1\.shop\s+sidecar\s+shop\/web-1\s+yes\s+/);
    expect(row).toContain((received[0]?.version ?? 'x').slice(0, 12));
    const json = await cli(['inspect', 'proxies', '-o', 'json']);
    expect(JSON.parse(json.stdout)).toEqual([
      expect.objectContaining({ id: 'web-1.shop', configVersion: received[0]?.version }),
    ]);
  });

  it('prints the snapshot compiled for one proxy', async () => {
    const result = await cli(['inspect', 'proxy', 'web-1.shop', '--config']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(received[0]?.json);
    const missing = await cli(['inspect', 'proxy', 'nobody', '--config']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(
      'error: no proxy with id nobody is or was connected to this zone (MESHFED_ERR_NOT_FOUND)\n',
    );
  });

  it('creates proxy tokens on the zone with their identity flags', async () => {
    const result = await cli([
      'token',
      'create',
      '--kind',
      'proxy',
      '--workload',
      'cart-1',
      '--namespace',
      'shop',
      '--service-account',
      'cart',
      '-o',
      'json',
    ]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ kind: 'proxy', zone: 'zone-cli' });
    const wrongZone = await cli([
      'token',
      'create',
      '--kind',
      'proxy',
      '--workload',
      'cart-1',
      '--zone',
      'zone-b',
    ]);
    expect(wrongZone.code).toBe(1);
    expect(wrongZone.stderr).toMatch(/cannot issue a proxy token for zone zone-b/);
  });

  it('checks zone-cp flags before starting anything', async () => {
    const noZone = await runCli(['zone-cp']);
    expect(noZone.code).toBe(1);
    expect(noZone.stderr).toMatch(/--zone/);
    const badZone = await runCli(['zone-cp', '--zone', 'Zone_A']);
    expect(badZone.stderr).toMatch(/DNS-1123/);
    const halfGlobal = await runCli(['zone-cp', '--zone', 'zone-a', '--global-address', '127.0.0.1:5685']);
    expect(halfGlobal.code).toBe(1);
    expect(halfGlobal.stderr).toMatch(/--global-address needs --global-ca-file/);
    const badDebounce = await runCli(['zone-cp', '--zone', 'zone-a', '--push-debounce', 'soon']);
    expect(badDebounce.stderr).toMatch(/duration/);
    const badWorkers = await runCli(['zone-cp', '--zone', 'zone-a', '--ca-workers', 'many']);
    expect(badWorkers.code).toBe(1);
    expect(badWorkers.stderr).toMatch(/--ca-workers.*integer from 0 to 64/);
    const badBatch = await runCli(['zone-cp', '--zone', 'zone-a', '--push-batch-size', '0']);
    expect(badBatch.stderr).toMatch(/--push-batch-size.*integer from 1/);
  });
});
