/**
 * `meshfed gateway` as a user runs it (the built CLI in a child process):
 * flag errors are one clear line, a static snapshot file routes, and SIGTERM
 * drains: the gateway reports not ready, keeps an open connection flowing
 * until it ends, then exits 0.
 */

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { assertCliBuilt, runCli, startCli, type RunningCli } from '../common/cli.js';
import { listenLocal } from '../common/ports.js';
import { waitFor } from '../common/wait.js';
import { startRecorder, type RecorderServer } from './gateway-fixtures.js';
import { buildHelloMessage, frameRecords } from './hello-builder.js';

const HELLO = frameRecords(buildHelloMessage({ serverName: '_.9080.reviews.bookinfo.svc.mesh' }));
let dir: string;
let recorder: RecorderServer;
let snapshotFile: string;

beforeAll(async () => {
  assertCliBuilt();
  dir = mkdtempSync(path.join(os.tmpdir(), 'gateway-cli-'));
  recorder = await startRecorder();
  snapshotFile = path.join(dir, 'snapshot.json');
  writeFileSync(
    snapshotFile,
    JSON.stringify({
      type: 'gateway/v1',
      zone: 'zone-b',
      services: [
        {
          name: 'reviews',
          namespace: 'bookinfo',
          ports: [9080],
          clusters: [
            {
              subset: '_',
              endpoints: [{ address: '127.0.0.1', port: recorder.port, healthy: true, workload: 'r' }],
            },
          ],
        },
      ],
    }),
  );
});

afterAll(async () => {
  await recorder?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('meshfed gateway: bad input', () => {
  test('without a table source it says what to give', async () => {
    const result = await runCli(['gateway', '--port', '0']);
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toMatch(
      /^error: the gateway needs a routing table: give --mds-address.*--snapshot-file/,
    );
  });

  test('MDS flags go together', async () => {
    const result = await runCli(['gateway', '--mds-address', '127.0.0.1:5678']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('--mds-address, --mds-ca-file and --mds-token-file go together');
  });

  test('a bad duration or policy names the flag', async () => {
    const timeout = await runCli(['gateway', '--snapshot-file', snapshotFile, '--hello-timeout', 'soon']);
    expect(timeout.code).toBe(1);
    expect(timeout.stderr).toContain("option '--hello-timeout <duration>' argument 'soon' is invalid");
    const policy = await runCli(['gateway', '--snapshot-file', snapshotFile, '--lb-policy', 'fastest']);
    expect(policy.code).toBe(1);
    expect(policy.stderr).toContain('Allowed choices are least-conn, round-robin');
    const idle = await runCli(['gateway', '--snapshot-file', snapshotFile, '--preconnect-idle', '11m']);
    expect(idle.code).toBe(1);
    expect(idle.stderr).toContain('limits.preconnectIdleMs must be an integer from 0 to 600000');
  });

  test('an invalid snapshot file is refused naming the field', async () => {
    const bad = path.join(dir, 'bad.json');
    writeFileSync(
      bad,
      JSON.stringify({ type: 'gateway/v1', zone: 'zone-b', services: [{ name: 'Bad_Name' }] }),
    );
    const result = await runCli(['gateway', '--snapshot-file', bad, '--port', '0', '--admin-port', '0']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('services[0].name: must be a DNS-1123 label (MESHFED_ERR_VALIDATION)');
  });
});

describe('meshfed gateway: a port in use', () => {
  test('names the taken address and the flags that move it', async () => {
    const taken = await listenLocal(0);
    const { port } = taken.address() as net.AddressInfo;
    try {
      const result = await runCli([
        'gateway',
        '--snapshot-file',
        snapshotFile,
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '--admin-port',
        '0',
      ]);
      expect(result.code).toBe(1);
      expect(result.stderr.trim().split('\n').at(-1)).toBe(
        `error: 127.0.0.1:${port} is already in use: stop what listens there or pass --port or --admin-port N (0 picks a free port) (MESHFED_ERR_CONFIG)`,
      );
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});

describe('meshfed gateway: running', () => {
  let cli: RunningCli;
  let port = 0;
  let adminPort = 0;

  beforeAll(async () => {
    cli = startCli(
      ['gateway', '--snapshot-file', snapshotFile, '--host', '127.0.0.1', '--drain-timeout', '20s'],
      {
        env: { MESHFED_GATEWAY_PORT: '0', MESHFED_GATEWAY_ADMIN_PORT: '0' },
      },
    );
    const line = await waitFor(
      () =>
        cli
          .stderr()
          .split('\n')
          .find((l) => l.includes('"msg":"east-west gateway running"')),
      { what: 'the gateway to start', timeoutMs: 15_000 },
    );
    const info = JSON.parse(line) as { port: number; adminPort: number };
    port = info.port;
    adminPort = info.adminPort;
  });

  afterAll(() => {
    if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
  });

  test('routes by SNI, and SIGTERM drains before exiting 0', async () => {
    expect((await fetch(`http://127.0.0.1:${adminPort}/ready`)).status).toBe(200);
    const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const received: Buffer[] = [];
    client.on('data', (c: Buffer) => received.push(c));
    client.write(HELLO);
    // A second connection may follow: the spare the gateway opens for the next client.
    await waitFor(() => recorder.accepted.length >= 1, { what: 'the upstream connection' });

    cli.child.kill('SIGTERM');
    await waitFor(
      async () => {
        const res = await fetch(`http://127.0.0.1:${adminPort}/ready`);
        return res.status === 503 && ((await res.json()) as { reason: string }).reason === 'draining';
      },
      { what: 'not ready while draining' },
    );
    // Still flowing while the process drains.
    client.write('while-draining');
    await waitFor(() => recorder.accepted[0]?.received().toString('latin1').endsWith('while-draining'));
    expect(cli.child.exitCode).toBeNull();
    client.end();
    await waitFor(
      () => Buffer.concat(received).toString() === `bye:${HELLO.length + 'while-draining'.length}`,
    );
    const exit = await cli.exited;
    expect(exit.code).toBe(0);
  });
});
