import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGlobalCp } from '../../global-cp/global-cp.js';
import type { GlobalCpHandle } from '../../global-cp/options.js';
import { assertCliBuilt, startCli } from '../common/cli.js';
import { freePort } from '../../core/free-port.js';
import { startRedisServer, type RedisServer } from '../common/redis-server.js';
import { waitFor } from '../common/wait.js';
import { http, openSse } from '../common/http.js';

function peerAuthentication(name: string): string {
  return `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ${name}, namespace: crash}\nspec: {mtls: {mode: STRICT}}\n`;
}

describe('global CP killed with SIGKILL', () => {
  let dir: string;

  beforeAll(async () => {
    assertCliBuilt();
    dir = await mkdtemp(join(tmpdir(), 'meshfed-sigkill-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('has every acknowledged write after a restart', async () => {
    const port = await freePort();
    const args = ['global-cp', '--port', String(port), '--data-dir', dir];
    const first = startCli(args);
    const url = `http://127.0.0.1:${port}`;
    await waitFor(() => http(`${url}/readyz`).then((a) => a.status === 200), { what: 'global-cp ready' });
    const token = (await readFile(join(dir, 'admin-token'), 'utf8')).trim();

    // Writers keep applying while the process is killed; only 200s count as acknowledged.
    const acknowledged: string[] = [];
    let stop = false;
    const writer = async (id: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        const name = `w${id}-${i}`;
        const answer = await http(`${url}/api/v1/apply`, {
          method: 'POST',
          token,
          body: peerAuthentication(name),
          contentType: 'application/yaml',
        }).catch(() => undefined);
        if (answer?.status === 200) acknowledged.push(name);
        if (answer === undefined) return;
      }
    };
    const writers = Array.from({ length: 8 }, (_, id) => writer(id));
    await waitFor(() => acknowledged.length >= 200, { what: '200 acknowledged writes' });
    first.child.kill('SIGKILL');
    await first.exited;
    stop = true;
    await Promise.all(writers);

    const second = startCli(args);
    try {
      await waitFor(() => http(`${url}/readyz`).then((a) => a.status === 200), {
        what: 'restarted global-cp',
      });
      const list = await http(`${url}/apis/security.istio.io/v1/namespaces/crash/peerauthentications`, {
        token,
      });
      const stored = new Set(
        (list.json as { items: Array<{ metadata: { name: string } }> }).items.map((i) => i.metadata.name),
      );
      const lost = acknowledged.filter((name) => !stored.has(name));
      expect(lost).toEqual([]);
      expect(stored.size).toBeGreaterThanOrEqual(acknowledged.length);
    } finally {
      second.child.kill('SIGTERM');
      await second.exited;
    }
  });
});

describe('two global CP replicas on one Redis', () => {
  let redis: RedisServer;
  let dirA: string;
  let dirB: string;
  let a: GlobalCpHandle;
  let b: GlobalCpHandle;

  beforeAll(async () => {
    redis = await startRedisServer();
    dirA = await mkdtemp(join(tmpdir(), 'meshfed-ha-a-'));
    dirB = await mkdtemp(join(tmpdir(), 'meshfed-ha-b-'));
    const storeUrl = `${redis.url}/0?prefix=ha`;
    // Started together, so both race to create the root CA and the token key.
    [a, b] = await Promise.all([
      startGlobalCp({ port: 0, dataDir: dirA, storeUrl }),
      startGlobalCp({ port: 0, dataDir: dirB, storeUrl }),
    ]);
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await redis?.stop();
    await rm(dirA, { recursive: true, force: true });
    await rm(dirB, { recursive: true, force: true });
  });

  it('share one trust root and accept each other’s tokens', async () => {
    const tokenA = (await readFile(a.adminTokenFile, 'utf8')).trim();
    const bundleA = await http(`${a.url}/api/v1/trust-bundle`, { token: tokenA });
    const bundleB = await http(`${b.url}/api/v1/trust-bundle`, { token: tokenA });
    expect(bundleB.status).toBe(200);
    expect(bundleB.json).toEqual(bundleA.json);
  });

  it('see each other’s writes through the watch', async () => {
    const token = (await readFile(a.adminTokenFile, 'utf8')).trim();
    const watch = await openSse(`${b.url}/apis/security.istio.io/v1/peerauthentications?watch=true`, token);
    try {
      const applied = await http(`${a.url}/api/v1/apply`, {
        method: 'POST',
        token,
        body: peerAuthentication('from-a'),
        contentType: 'application/yaml',
      });
      expect(applied.status).toBe(200);
      const event = await watch.next();
      expect(event.event).toBe('ADDED');
      expect(event.data).toMatchObject({ object: { metadata: { name: 'from-a', namespace: 'crash' } } });
    } finally {
      watch.close();
    }
  });

  it('a token revoked on one replica is refused by the other', async () => {
    const admin = (await readFile(a.adminTokenFile, 'utf8')).trim();
    const created = await http(`${a.url}/api/v1/tokens`, {
      method: 'POST',
      token: admin,
      body: JSON.stringify({ kind: 'readonly', name: 'ha-viewer' }),
      contentType: 'application/json',
    });
    const { token, id } = created.json as { token: string; id: string };
    expect((await http(`${b.url}/apis`, { token })).status).toBe(200);
    expect((await http(`${a.url}/api/v1/tokens/${id}`, { method: 'DELETE', token: admin })).status).toBe(200);
    await waitFor(async () => (await http(`${b.url}/apis`, { token })).status === 401, {
      what: 'revocation to reach replica b',
    });
  });
});
