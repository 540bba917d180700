import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVICE_CATALOG_KIND } from '../../core/auth/internal-kinds.js';
import { assertCliBuilt, startCli, type RunningCli } from '../common/cli.js';
import { http } from '../common/http.js';
import { freePort } from '../../core/free-port.js';
import { startRedisServer, type RedisServer } from '../common/redis-server.js';
import { waitFor } from '../common/wait.js';
import { inventoryWith, peerAuthentication, startTestZone, type TestZone } from './kds-harness.js';

interface Replica {
  cli: RunningCli;
  url: string;
  kds: string;
  dir: string;
}

describe('KDS with two global replicas on one Redis', () => {
  let redis: RedisServer;
  const replicas: Replica[] = [];
  let zones: TestZone[] = [];
  let admin = '';

  beforeAll(async () => {
    assertCliBuilt();
    redis = await startRedisServer();
    const storeUrl = `${redis.url}/0?prefix=kdsha`;
    for (const name of ['g1', 'g2']) {
      const [port, kdsPort] = [await freePort(), await freePort()];
      const dir = await mkdtemp(join(tmpdir(), `meshfed-kds-ha-${name}-`));
      const cli = startCli([
        'global-cp',
        '--port',
        String(port),
        '--kds-port',
        String(kdsPort),
        '--data-dir',
        dir,
        '--store',
        storeUrl,
        '--zone-grace-period',
        '60s',
      ]);
      replicas.push({ cli, url: `http://127.0.0.1:${port}`, kds: `127.0.0.1:${kdsPort}`, dir });
    }
    for (const r of replicas) {
      await waitFor(() => http(`${r.url}/readyz`).then((a) => a.status === 200), {
        what: `${r.url} ready`,
        timeoutMs: 20_000,
      });
    }
    admin = (await readFile(join(replicas[0]?.dir ?? '', 'admin-token'), 'utf8')).trim();
  });

  afterAll(async () => {
    for (const zone of zones) await zone.close();
    for (const r of replicas) {
      if (r.cli.child.exitCode === null && r.cli.child.signalCode === null) r.cli.child.kill('SIGTERM');
      await r.cli.exited;
      await rm(r.dir, { recursive: true, force: true });
    }
    await redis?.stop();
  });

  it('a zone on the replica that dies reconnects to the other and converges, with no change lost', async () => {
    const [g1, g2] = replicas;
    if (g1 === undefined || g2 === undefined) throw new Error('replicas did not start');
    const bundle = await http(`${g2.url}/api/v1/trust-bundle`, { token: admin });
    const caPem = (bundle.json as { roots: string[] }).roots[0] ?? '';
    const tokenFor = async (zone: string) => {
      const answer = await http(`${g1.url}/api/v1/tokens`, {
        method: 'POST',
        token: admin,
        body: JSON.stringify({ kind: 'zone', zone }),
        contentType: 'application/json',
      });
      return { token: (answer.json as { token: string }).token };
    };
    // The client gets both addresses; `first` is only the harness default.
    const endpoint = (first: Replica) => ({
      cp: { kdsAddress: first.kds, caCertPem: caPem },
      zoneToken: tokenFor,
    });
    // zone-a prefers g1 (the one that dies), zone-b prefers g2.
    const a = await startTestZone('zone-a', endpoint(g1), {
      globalAddresses: [g1.kds, g2.kds],
      initialInventory: inventoryWith('reviews', 2),
    });
    const b = await startTestZone('zone-b', endpoint(g2), { globalAddresses: [g2.kds, g1.kds] });
    zones = [a, b];
    await Promise.all([a.client.ready(), b.client.ready()]);
    const replicaOf = async (zone: string) =>
      (
        (await http(`${g2.url}/apis/meshfed.io/v1alpha1/zones/${zone}`, { token: admin })).json as {
          status?: { replica?: string; connected?: boolean };
        }
      ).status;
    const g1Replica = (await http(`${g1.url}/api/v1/kds`, { token: admin })).json as { replica: string };
    await waitFor(async () => (await replicaOf('zone-a'))?.replica === g1Replica.replica, {
      what: 'zone-a on g1',
    });

    // Writers keep applying through g2 while g1 is killed; only 200s count.
    const acknowledged: string[] = [];
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const name = `ha-${i}`;
        const answer = await http(`${g2.url}/api/v1/apply`, {
          method: 'POST',
          token: admin,
          body: peerAuthentication(name),
          contentType: 'application/yaml',
        }).catch(() => undefined);
        if (answer?.status === 200) acknowledged.push(name);
      }
    })();
    await waitFor(() => acknowledged.length >= 30, { what: '30 writes' });
    g1.cli.child.kill('SIGKILL');
    await g1.cli.exited;
    await waitFor(
      async () => {
        const status = await replicaOf('zone-a');
        return status?.connected === true && status.replica !== g1Replica.replica;
      },
      { what: 'zone-a reconnected to g2', timeoutMs: 20_000 },
    );
    await waitFor(() => acknowledged.length >= 80, { what: '80 writes' });
    stop = true;
    await writer;

    const expected = acknowledged.map((n) => `demo/${n}`).sort();
    for (const zone of [a, b]) {
      await waitFor(
        async () => {
          const names = (await zone.synced('PeerAuthentication')).filter((n) => n.startsWith('demo/ha-'));
          return names.length === expected.length && names.join() === expected.join();
        },
        { what: `${zone.name} has every acknowledged write`, timeoutMs: 20_000 },
      );
    }
    // Each zone object is global's object at global's revision: nothing applied twice or out of order.
    const listed = (await http(`${g2.url}/apis/security.istio.io/v1/peerauthentications`, { token: admin }))
      .json as {
      items: Array<{ metadata: { name: string; namespace: string; resourceVersion: string } }>;
    };
    for (const item of listed.items.filter((i) => i.metadata.name.startsWith('ha-'))) {
      const inZone = await a.store.get({
        kind: 'PeerAuthentication',
        namespace: item.metadata.namespace,
        name: item.metadata.name,
      });
      expect(inZone?.metadata.annotations?.['meshfed.io/global-revision']).toBe(
        item.metadata.resourceVersion,
      );
    }
    // zone-a's services stayed in zone-b's catalog through the failover.
    const catalog = (await b.store.get({ kind: SERVICE_CATALOG_KIND, namespace: '', name: 'catalog' }))
      ?.spec as { zones: Array<{ zone: string; services: Array<{ name: string }> }> } | undefined;
    expect(catalog?.zones.find((z) => z.zone === 'zone-a')?.services.map((s) => s.name)).toEqual(['reviews']);
  });
});
