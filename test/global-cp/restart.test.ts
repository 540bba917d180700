import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGlobalCp } from '../../global-cp/global-cp.js';
import { http } from '../common/http.js';

const PA = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
`;

describe('global CP restart with the file store', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshfed-restart-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps policies, the root CA and the admin token across a restart', async () => {
    const first = await startGlobalCp({ port: 0, dataDir: dir });
    const token = (await readFile(first.adminTokenFile, 'utf8')).trim();
    const applied = await http(`${first.url}/api/v1/apply`, {
      method: 'POST',
      token,
      body: PA,
      contentType: 'application/yaml',
    });
    expect(applied.status).toBe(200);
    const bundleBefore = (await http(`${first.url}/api/v1/trust-bundle`, { token })).json;
    await first.close();

    const second = await startGlobalCp({ port: 0, dataDir: dir });
    try {
      expect((await readFile(second.adminTokenFile, 'utf8')).trim()).toBe(token);
      const got = await http(
        `${second.url}/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications/default`,
        { token },
      );
      expect(got.status).toBe(200);
      expect(got.json).toMatchObject({ spec: { mtls: { mode: 'STRICT' } } });
      expect((await http(`${second.url}/api/v1/trust-bundle`, { token })).json).toEqual(bundleBefore);
    } finally {
      await second.close();
    }
  });

  it('refuses to serve plain HTTP on a non-loopback address', async () => {
    await expect(
      startGlobalCp({ port: 0, host: '0.0.0.0', dataDir: join(dir, 'other'), storeUrl: 'memory://' }),
    ).rejects.toMatchObject({
      code: 'MESHFED_ERR_CONFIG',
    });
  });
});
