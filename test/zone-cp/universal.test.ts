import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MdsClient, type ReceivedSnapshot } from '../../core/mds/mds-client.js';
import type { SidecarSnapshot } from '../../core/mesh/snapshot.js';
import { assertCliBuilt, startCli, type RunningCli } from '../common/cli.js';
import { http } from '../common/http.js';
import { waitFor } from '../common/wait.js';

/** `meshfed zone-cp` as a user runs it, in universal mode, with workloads registering over REST. */
describe('meshfed zone-cp (universal mode, built CLI)', () => {
  let dir: string;
  let running: RunningCli;
  let api: string;
  let grpc: string;
  let admin: string;
  let caPem: string;

  beforeAll(async () => {
    assertCliBuilt();
    dir = await mkdtemp(join(tmpdir(), 'meshfed-zone-cli-'));
    running = startCli(
      [
        'zone-cp',
        '--zone',
        'zone-u',
        '--port',
        '0',
        '--grpc-port',
        '0',
        '--store',
        'memory://',
        '--data-dir',
        dir,
        '--push-debounce',
        '50ms',
      ],
      {
        env: { MESHFED_LOG_LEVEL: 'info' },
      },
    );
    const listening = await waitFor(
      () => {
        for (const line of running.stderr().split('\n')) {
          if (!line.includes('zone control plane listening')) continue;
          return JSON.parse(line) as { api: string; grpc: string; adminTokenFile: string };
        }
        if (running.child.exitCode !== null) throw new Error(`zone-cp exited: ${running.stderr()}`);
        return undefined;
      },
      { timeoutMs: 20_000, what: 'zone-cp to listen' },
    );
    api = listening.api;
    grpc = listening.grpc;
    admin = (await readFile(listening.adminTokenFile, 'utf8')).trim();
    await waitFor(async () => (await http(`${api}/readyz`)).status === 200, { what: 'readiness' });
    caPem = (
      (await http(`${api}/api/v1/trust-bundle`, { token: admin })).json as { roots: string[] }
    ).roots.join('');
  });

  afterAll(async () => {
    if (running !== undefined && running.child.exitCode === null) {
      running.child.kill('SIGKILL');
      await running.exited;
    }
    await rm(dir, { recursive: true, force: true });
  });

  const token = async (workload: string, serviceAccount: string): Promise<string> => {
    const answer = await http(`${api}/api/v1/tokens`, {
      method: 'POST',
      token: admin,
      contentType: 'application/json',
      body: JSON.stringify({ kind: 'proxy', workload, namespace: 'shop', serviceAccount }),
    });
    expect(answer.status).toBe(201);
    return (answer.json as { token: string }).token;
  };

  const register = (proxyToken: string, body: Record<string, unknown>) =>
    http(`${api}/api/v1/workloads`, {
      method: 'POST',
      token: proxyToken,
      contentType: 'application/json',
      body: JSON.stringify(body),
    });

  it('registers workloads, pushes their config, follows deregistration, and stops on SIGTERM', async () => {
    const webToken = await token('web-1', 'web');
    const cartToken = await token('cart-1', 'cart');
    expect(
      (
        await register(webToken, {
          address: '127.0.0.2',
          inboundPort: 16001,
          ports: { http: 8080 },
          labels: { app: 'web' },
          service: 'web',
        })
      ).status,
    ).toBeLessThan(300);
    expect(
      (
        await register(cartToken, {
          address: '127.0.0.3',
          inboundPort: 16002,
          ports: { http: 8081 },
          labels: { app: 'cart' },
          service: 'cart',
        })
      ).status,
    ).toBeLessThan(300);

    const received: ReceivedSnapshot[] = [];
    const client = new MdsClient({
      address: grpc,
      caPem,
      credential: () => ({ token: webToken }),
      hello: { proxyId: 'web-1', kind: 'sidecar', workload: 'web-1', namespace: 'shop' },
      onSnapshot: (s) => {
        received.push(s);
      },
    });
    client.start();
    const cartEndpoints = () => {
      const last = received[received.length - 1]?.json as SidecarSnapshot | undefined;
      return (
        last?.outbound.services
          .find((s) => s.name === 'cart')
          ?.clusters[0]?.endpoints.map((e) => `${e.address}:${e.port}`) ?? []
      );
    };
    try {
      await waitFor(() => cartEndpoints().length === 1, { what: "cart in web's snapshot" });
      expect(cartEndpoints()).toEqual(['127.0.0.3:16002']);
      const inbound = (received[received.length - 1]?.json as SidecarSnapshot).inbound.ports;
      expect(inbound).toEqual([expect.objectContaining({ port: 8080, targetPort: 8080 })]);

      expect(
        (await http(`${api}/api/v1/workloads/shop/cart-1`, { method: 'DELETE', token: cartToken })).status,
      ).toBeLessThan(300);
      await waitFor(() => cartEndpoints().length === 0, { what: 'cart gone after deregistration' });
    } finally {
      client.close();
    }
    running.child.kill('SIGTERM');
    const exited = await running.exited;
    expect(exited.code).toBe(0);
  });
});
