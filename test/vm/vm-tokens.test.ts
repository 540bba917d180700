/**
 * Join tokens through the real CLI against a real zone CP: single-use and
 * limited-use tokens are counted once per VM (a VM joining again with its
 * own key is not a new use), and expired, reused, revoked and forged tokens
 * are refused with one clear line while no WorkloadEntry appears.
 */

import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { TokenIssuer } from '../../core/token/token.js';
import { assertCliBuilt, runCli, type CliResult } from '../common/cli.js';
import { waitFor } from '../common/wait.js';
import {
  errorLine,
  hostNet,
  runVmCli,
  startVmZone,
  vmJoinArgs,
  vmTokenArgs,
  workloadGroupYaml,
  type VmZone,
} from './vm-fixtures.js';

const NS = 'shop';
let zone: VmZone;
let dir: string;
let vmCounter = 0;

/** `vm-agent join` of a fresh VM (its own config dir and address) with `token`. */
async function joinAs(
  token: string,
  vm = `vm-${++vmCounter}`,
  extra: string[] = [],
): Promise<CliResult & { address: string }> {
  const address = `10.77.0.${Number(vm.replace(/\D/g, '')) || 99}`;
  const result = await runVmCli(
    hostNet(),
    vmJoinArgs(zone.joinUrl, token, join(dir, vm), ['--address', address, ...extra]),
  );
  return { ...result, address };
}

async function entryAt(address: string): Promise<boolean> {
  return (await zone.workloadEntries(NS)).some((e) => e.spec.address === address);
}

function cli(args: string[]): Promise<CliResult> {
  return runCli(['--server', zone.adminUrl, '--token', zone.zone.admin, ...zone.cliCaArgs, ...args]);
}

/** A refusal: exit 1, one `error: … (CODE)` line, no WorkloadEntry at the address. */
async function expectRefused(
  result: CliResult & { address: string },
  code: string,
  reason: RegExp,
): Promise<void> {
  expect(result.code).toBe(1);
  const line = errorLine(result);
  expect(line).toMatch(/^error: /);
  expect(line).toMatch(reason);
  expect(line.endsWith(`(${code})`)).toBe(true);
  expect(await entryAt(result.address)).toBe(false);
}

beforeAll(async () => {
  assertCliBuilt();
  dir = await mkdtemp(join(tmpdir(), 'meshfed-vm-tokens-'));
  zone = await startVmZone(hostNet());
  await zone.admin('POST', '/api/v1/apply', { yaml: workloadGroupYaml('cart', NS, '') });
}, 30_000);

afterAll(async () => {
  await zone?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('VM join tokens', () => {
  it('lets a single-use token enroll one VM, and that VM join again with its own key', async () => {
    const created = await cli(vmTokenArgs(zone.zone.cp.zone, 'cart', ['--uses', '1', '--ttl', '1h']));
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    const first = await joinAs(token, 'vm-1');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('joined the mesh as spiffe://cluster.local/ns/shop/sa/cart');
    expect(await entryAt(first.address)).toBe(true);

    await expectRefused(await joinAs(token, 'vm-2'), 'MESHFED_ERR_TOKEN_INVALID', /used up \(1 of 1 use/);

    // The first VM joins again with changed labels: the same key, so not a second use.
    const again = await joinAs(token, 'vm-1', ['--labels', 'tier=gold']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('joined again');
    const entries = await zone.workloadEntries(NS);
    expect(entries.filter((e) => e.spec.address === first.address)).toHaveLength(1);
    expect(
      (entries.find((e) => e.spec.address === first.address)?.spec.labels as Record<string, string>).tier,
    ).toBe('gold');
  }, 30_000);

  it('counts a limited token exactly', async () => {
    const { token } = await zone.vmToken({ workloadGroup: 'cart', uses: 2 });
    expect((await joinAs(token, 'vm-11')).code).toBe(0);
    expect((await joinAs(token, 'vm-12')).code).toBe(0);
    await expectRefused(await joinAs(token, 'vm-13'), 'MESHFED_ERR_TOKEN_INVALID', /used up \(2 of 2 uses/);
  }, 30_000);

  it('refuses an expired token', async () => {
    const issued = (
      await zone.admin('POST', '/api/v1/tokens', {
        json: { kind: 'vm', workloadGroup: 'cart', ttl: '1s' },
      })
    ).json as { token: string; expiresAt: string };
    await waitFor(() => Date.now() > Date.parse(issued.expiresAt) + 100, { what: 'the token to expire' });
    await expectRefused(
      await joinAs(issued.token, 'vm-21'),
      'MESHFED_ERR_TOKEN_INVALID',
      /join token refused: token expired at/,
    );
  }, 30_000);

  it('refuses a revoked token', async () => {
    const created = await cli(vmTokenArgs(zone.zone.cp.zone, 'cart', ['-o', 'json']));
    const { token, id } = JSON.parse(created.stdout) as { token: string; id: string };
    const revoked = await cli(['token', 'revoke', id]);
    expect(revoked.code).toBe(0);
    await expectRefused(
      await joinAs(token, 'vm-31'),
      'MESHFED_ERR_TOKEN_INVALID',
      new RegExp(`token ${id} is revoked`),
    );
  }, 30_000);

  it('refuses a forged token: the same claims signed by another key', async () => {
    const { token } = await zone.vmToken({ workloadGroup: 'cart', uses: 5 });
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
      zone: string;
      ext: Record<string, string>;
    };
    const forger = new TokenIssuer(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    const forged = forger.issue({
      kind: 'vm',
      sub: 'vm',
      zone: claims.zone,
      ttlSeconds: 3600,
      ext: claims.ext,
    }).token;
    await expectRefused(await joinAs(forged, 'vm-41'), 'MESHFED_ERR_TOKEN_INVALID', /bad token signature/);

    const tampered = `${token.slice(0, -4)}${token.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
    await expectRefused(await joinAs(tampered, 'vm-42'), 'MESHFED_ERR_TOKEN_INVALID', /join token refused/);
  }, 30_000);

  it('refuses a token of another kind before sending it anywhere', async () => {
    const proxy = (
      await zone.admin('POST', '/api/v1/tokens', {
        json: { kind: 'proxy', workload: 'cart-1', namespace: NS },
      })
    ).json as { token: string };
    await expectRefused(
      await joinAs(proxy.token, 'vm-51'),
      'MESHFED_ERR_INVALID_ARGUMENT',
      /is a proxy token, not a VM join token/,
    );
  });

  it('will not create a token for a WorkloadGroup that does not exist', async () => {
    const result = await cli(vmTokenArgs(zone.zone.cp.zone, 'nope'));
    expect(result.code).toBe(1);
    expect(errorLine(result)).toMatch(/WorkloadGroup named nope .*apply it first/);
  });
});
