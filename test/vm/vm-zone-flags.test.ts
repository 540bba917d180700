/**
 * The VM settings of `meshfed zone-cp` (--vm-heartbeat-interval,
 * --vm-unhealthy-after, --vm-remove-after, --vm-join-token-ttl), with the
 * zone CP, the join and the agent all real CLI processes: a VM whose agent
 * dies is marked unhealthy after the short grace, then removed; flags that
 * contradict each other are refused with one line naming them.
 */

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { assertCliBuilt, runCli, startCli, type RunningCli } from '../common/cli.js';
import { http } from '../common/http.js';
import { freePort } from '../../core/free-port.js';
import { waitFor } from '../common/wait.js';
import {
  errorLine,
  hostNet,
  portFlags,
  runVmCli,
  startVmCli,
  stopCli,
  vmJoinArgs,
  vmPorts,
  vmTokenArgs,
} from './vm-fixtures.js';

const NS = 'flags';
let dir: string;
let zoneCp: RunningCli | undefined;
let agent: RunningCli | undefined;
let restUrl: string;
let admin: string;

interface Entry {
  metadata: { name: string };
  spec: { address?: string };
  status?: { conditions?: Array<{ type: string; status: string; reason?: string }> };
}

async function entries(): Promise<Entry[]> {
  const answer = await http(`${restUrl}/apis/networking.istio.io/v1/namespaces/${NS}/workloadentries`, {
    token: admin,
  });
  if (answer.status !== 200) throw new Error(`listing answered ${answer.status}: ${answer.text}`);
  return (answer.json as { items: Entry[] }).items;
}

function healthy(entry: Entry | undefined): { status: string; reason?: string } | undefined {
  return entry?.status?.conditions?.find((c) => c.type === 'Healthy');
}

beforeAll(async () => {
  assertCliBuilt();
  dir = await mkdtemp(join(tmpdir(), 'meshfed-vm-flags-'));
  const port = await freePort();
  zoneCp = startCli([
    'zone-cp',
    '--zone',
    'zone-flags',
    '--port',
    String(port),
    '--grpc-port',
    String(await freePort()),
    '--store',
    'memory://',
    '--data-dir',
    join(dir, 'zone'),
    '--vm-heartbeat-interval',
    '1s',
    '--vm-unhealthy-after',
    '2500ms',
    '--vm-remove-after',
    '5s',
    '--vm-join-token-ttl',
    '2s',
  ]);
  restUrl = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (zoneCp?.child.exitCode !== null) throw new Error(`zone-cp exited: ${zoneCp?.stderr() ?? ''}`);
      return (await http(`${restUrl}/readyz`).catch(() => ({ status: 0 }))).status === 200;
    },
    { what: 'the zone CP process to be ready', timeoutMs: 20_000 },
  );
  admin = (await readFile(join(dir, 'zone', 'admin-token'), 'utf8')).trim();
}, 30_000);

afterAll(async () => {
  if (agent !== undefined) await stopCli(agent, 'SIGKILL');
  if (zoneCp !== undefined) await stopCli(zoneCp);
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('meshfed zone-cp VM flags', () => {
  it('refuse contradictory or too short settings with one line naming the flag', async () => {
    const base = ['zone-cp', '--zone', 'zone-bad', '--port', '0', '--store', 'memory://'];
    const shorter = await runCli([
      ...base,
      '--vm-heartbeat-interval',
      '1s',
      '--vm-unhealthy-after',
      '10s',
      '--vm-remove-after',
      '5s',
    ]);
    expect(shorter.code).toBe(1);
    expect(errorLine(shorter)).toMatch(
      /--vm-remove-after \(5s\) must not be shorter than --vm-unhealthy-after \(10s\)/,
    );
    const flapping = await runCli([...base, '--vm-heartbeat-interval', '30s']);
    expect(flapping.code).toBe(1);
    expect(errorLine(flapping)).toMatch(
      /--vm-unhealthy-after \(30s\) must be longer than --vm-heartbeat-interval \(30s\)/,
    );
    const tooShort = await runCli([...base, '--vm-unhealthy-after', '100ms']);
    expect(tooShort.code).not.toBe(0);
    expect(tooShort.stderr).toMatch(/--vm-unhealthy-after.*100ms.*at least 1s/);
    const notDuration = await runCli([...base, '--vm-join-token-ttl', 'soon']);
    expect(notDuration.code).not.toBe(0);
    expect(notDuration.stderr).toMatch(/--vm-join-token-ttl.*soon.*duration/);
  });

  it('mark a VM whose agent died unhealthy after --vm-unhealthy-after, and remove it after --vm-remove-after', async () => {
    const applied = await http(`${restUrl}/api/v1/apply`, {
      method: 'POST',
      token: admin,
      contentType: 'application/yaml',
      body: `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: { name: ledger, namespace: ${NS} }
spec:
  metadata: { labels: { app: ledger } }
  template: { serviceAccount: ledger, ports: { http: 8080 } }
`,
    });
    expect(applied.status).toBe(200);
    const created = await runCli([
      '--server',
      restUrl,
      '--token',
      admin,
      ...vmTokenArgs('zone-flags', 'ledger', ['--ttl', '1h']),
    ]);
    expect(created.code).toBe(0);
    const net = hostNet();
    const ports = await vmPorts(net);
    const configDir = join(dir, 'vm');
    const joined = await runVmCli(
      net,
      vmJoinArgs(`https://127.0.0.1:${new URL(restUrl).port}`, created.stdout.trim(), configDir, [
        '--address',
        '10.79.0.1',
        ...portFlags(ports),
      ]),
    );
    expect(joined.stderr).toBe('');
    expect(joined.code).toBe(0);
    // The zone told the VM its --vm-heartbeat-interval.
    expect(await readFile(join(configDir, 'vm-agent.yaml'), 'utf8')).toMatch(
      /^heartbeatIntervalSeconds: 1$/m,
    );

    agent = startVmCli(net, ['vm-agent', 'run', '--config-dir', configDir]);
    const entry = async (): Promise<Entry | undefined> =>
      (await entries()).find((e) => e.spec.address === '10.79.0.1');
    await waitFor(async () => healthy(await entry())?.status === 'True', {
      what: 'the running VM to be healthy',
      timeoutMs: 15_000,
    });

    // The agent dies without a last heartbeat.
    await stopCli(agent, 'SIGKILL');
    agent = undefined;
    await waitFor(async () => healthy(await entry())?.reason === 'HeartbeatTimeout', {
      what: 'the silent VM to be marked unhealthy',
      timeoutMs: 10_000,
    });
    expect(healthy(await entry())?.status).toBe('False');
    await waitFor(async () => (await entry()) === undefined, {
      what: 'the silent VM to be removed',
      timeoutMs: 15_000,
    });
    const metrics = await http(`${restUrl}/metrics`);
    expect(metrics.text).toMatch(/meshfed_zone_vm_removals_total\{[^}]*reason="silent"[^}]*\} 1\n/);
  }, 60_000);

  it('accept a join token created without --ttl for --vm-join-token-ttl only', async () => {
    const created = await runCli([
      '--server',
      restUrl,
      '--token',
      admin,
      ...vmTokenArgs('zone-flags', 'ledger'),
    ]);
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    const { iat } = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
      iat: number;
    };
    await waitFor(() => Date.now() > iat * 1000 + 2000 + 200, { what: 'the default join token TTL to pass' });
    const late = await runVmCli(
      hostNet(),
      vmJoinArgs(`https://127.0.0.1:${new URL(restUrl).port}`, token, join(dir, 'late-vm'), [
        '--address',
        '10.79.0.2',
      ]),
    );
    expect(late.code).toBe(1);
    expect(errorLine(late)).toMatch(
      /token expired at .* \(a token created without --ttl is accepted for 2 s\): create a new one \(MESHFED_ERR_TOKEN_INVALID\)$/,
    );
    expect((await entries()).some((e) => e.spec.address === '10.79.0.2')).toBe(false);
  }, 30_000);
});
