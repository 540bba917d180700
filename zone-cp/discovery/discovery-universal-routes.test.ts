/**
 * Universal registration over real HTTP: the zone API pipeline with the
 * registration routes, real proxy tokens, a memory store, and the
 * universal source watching what the routes write.
 */

import http from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';

import { createApiHandler } from '../../core/api/api-server.js';
import { ORIGIN_LABEL } from '../../core/auth/internal-kinds.js';
import { TokenService } from '../../core/auth/token-service.js';
import { createLogger } from '../../core/log.js';
import { Router } from '../../core/http/router.js';
import { MemoryStore } from '../../core/store/store-memory.js';
import { http as request } from '../../test/common/http.js';
import type { HttpAnswer } from '../../test/common/http.js';
import { waitFor } from '../../test/common/wait.js';
import { registerUniversalRoutes } from './discovery-universal-routes.js';
import { UniversalSource } from './discovery-universal.js';

interface Zone {
  url: string;
  store: MemoryStore;
  tokens: TokenService;
  source: UniversalSource;
  /** A proxy token for workload `frontend` in namespace `demo`, service account `frontend`, zone-a. */
  token: string;
}

let zone: Zone;
const closers: Array<() => Promise<void>> = [];

beforeEach(async () => {
  const store = new MemoryStore();
  const logger = createLogger('test.registration');
  const tokens = await TokenService.open(store, logger);
  const router = new Router();
  registerUniversalRoutes(router, {
    store,
    verifyProxyToken: (t) => tokens.verify(t, ['proxy']),
    zone: 'zone-a',
  });
  const server = http.createServer(createApiHandler({ router, authenticator: tokens, logger }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const source = new UniversalSource({ store, debounceMs: 2 });
  await source.start();
  // Shaped as the zone's token routes issue them: sub is the token's name, ext binds the workload.
  const { token } = await tokens.issue('proxy', 'frontend-token', {
    zone: 'zone-a',
    ext: { workload: 'frontend', namespace: 'demo', serviceAccount: 'frontend' },
  });
  closers.push(
    () => new Promise<void>((resolve) => server.close(() => resolve())),
    () => source.close(),
    async () => tokens.close(),
    () => store.close(),
  );
  zone = { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, store, tokens, source, token };
});

afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** `token: null` sends no Authorization header. */
function register(body: unknown, token: string | null = zone.token): Promise<HttpAnswer> {
  return request(`${zone.url}/api/v1/workloads`, {
    method: 'POST',
    ...(token === null ? {} : { token }),
    contentType: 'application/json',
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

function heartbeat(path: string, body?: unknown, token = zone.token): Promise<HttpAnswer> {
  return request(`${zone.url}/api/v1/workloads/${path}/heartbeat`, {
    method: 'POST',
    token,
    ...(body === undefined ? {} : { contentType: 'application/json', body: JSON.stringify(body) }),
  });
}

const frontend = {
  address: '127.0.0.1',
  ports: { http: 8080 },
  labels: { app: 'frontend' },
  service: 'frontend',
};

describe('universal registration routes', () => {
  it('registers a workload bound by its proxy token, and the source forms its service', async () => {
    const created = await register({ ...frontend, inboundPort: 16001, locality: 'local/a' });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({
      name: 'frontend',
      namespace: 'demo',
      serviceAccount: 'frontend',
      inboundPort: 16001,
      heartbeatIntervalSeconds: 10,
    });
    const entry = await zone.store.get({ kind: 'WorkloadEntry', namespace: 'demo', name: 'frontend' });
    expect(entry?.spec).toEqual({
      address: '127.0.0.1',
      ports: { http: 8080 },
      labels: { app: 'frontend', 'meshfed.io/service': 'frontend' },
      serviceAccount: 'frontend',
      locality: 'local/a',
    });
    await waitFor(() => zone.source.services().find((s) => s.name === 'frontend'), {
      what: 'the frontend service',
    });
    const svc = zone.source.services().find((s) => s.name === 'frontend');
    expect(svc?.namespace).toBe('demo');
    expect(svc?.ports).toEqual([{ name: 'http', port: 8080, targetPort: 'http', protocol: 'http' }]);
    expect(svc?.endpoints[0]).toMatchObject({
      address: '127.0.0.1',
      inboundPort: 16001,
      healthy: true,
      serviceAccount: 'frontend',
    });

    // Re-registration (a restarted agent with a new address) replaces the entry.
    const again = await register({ ...frontend, address: '127.0.0.2', name: 'frontend', namespace: 'demo' });
    expect(again.status).toBe(200);
    await waitFor(() => zone.source.workloads()[0]?.address === '127.0.0.2', { what: 'the new address' });
    expect(zone.source.workloads()).toHaveLength(1);
  });

  it('refuses a body that claims another identity than the token, and tokens of another zone or kind', async () => {
    const cases: Array<[unknown, number, string, string | undefined]> = [
      [{ ...frontend, name: 'payments' }, 403, 'MESHFED_ERR_FORBIDDEN', 'name'],
      [{ ...frontend, namespace: 'prod' }, 403, 'MESHFED_ERR_FORBIDDEN', 'namespace'],
      [{ ...frontend, serviceAccount: 'admin' }, 403, 'MESHFED_ERR_FORBIDDEN', 'serviceAccount'],
    ];
    for (const [body, status, code, field] of cases) {
      const answer = await register(body);
      expect({ status: answer.status, json: answer.json }).toMatchObject({ status, json: { code, field } });
    }
    const otherZone = (
      await zone.tokens.issue('proxy', 'frontend', { zone: 'zone-b', ext: { namespace: 'demo' } })
    ).token;
    const refused = await register(frontend, otherZone);
    expect(refused.status).toBe(403);
    expect((refused.json as { message: string }).message).toContain('zone "zone-b"');
    const admin = (await zone.tokens.issue('admin', 'ops')).token;
    expect((await register(frontend, admin)).json).toMatchObject({ code: 'MESHFED_ERR_TOKEN_INVALID' });
    expect((await register(frontend, admin)).status).toBe(401);
    expect((await register(frontend, null)).json).toMatchObject({ code: 'MESHFED_ERR_UNAUTHENTICATED' });
    expect((await register(frontend, 'mf1.forged.token')).status).toBe(401);
    const revoked = await zone.tokens.issue('proxy', 'frontend', {
      zone: 'zone-a',
      ext: { namespace: 'demo' },
    });
    await zone.tokens.revoke(revoked.claims.jti);
    expect((await register(frontend, revoked.token)).status).toBe(401);
    expect(
      await zone.store.get({ kind: 'WorkloadEntry', namespace: 'demo', name: 'frontend' }),
    ).toBeUndefined();
  });

  it('answers bad bodies with 400/422 naming the field, and keeps serving', async () => {
    const cases: Array<[unknown, number, string | undefined]> = [
      ['{not json', 400, undefined],
      [[1, 2], 400, undefined],
      [{ ports: { http: 8080 } }, 422, 'address'],
      [{ address: 'not an address!' }, 422, 'address'],
      [{ address: '::::' }, 422, 'address'],
      [{ address: ':' }, 422, 'address'],
      [{ address: '10.0.0.1%eth0' }, 422, 'address'],
      [{ address: '10.0.0.1', labels: { 'meshfed.io/origin': 'global' } }, 422, 'labels.meshfed.io/origin'],
      [{ address: '10.0.0.1', labels: { 'istio.io/rev': 'x' } }, 422, 'labels.istio.io/rev'],
      [{ address: '10.0.0.1', ports: { http: 0 } }, 422, 'ports.http'],
      [{ address: '10.0.0.1', ports: { 'Bad Name': 80 } }, 422, 'ports.Bad Name'],
      [{ address: '10.0.0.1', labels: { app: 'has space' } }, 422, 'labels.app'],
      [{ address: '10.0.0.1', inboundPort: 70000 }, 422, 'inboundPort'],
      [{ address: '10.0.0.1', weight: -1 }, 422, 'weight'],
      [{ address: '10.0.0.1', locality: 'a//b' }, 422, 'locality'],
      [{ address: '10.0.0.1', service: 'Not_A_Label' }, 422, 'service'],
      [{ address: '10.0.0.1', colour: 'blue' }, 422, 'colour'],
    ];
    for (const [body, status, field] of cases) {
      const answer = await register(body);
      expect({ body, status: answer.status }).toEqual({ body, status });
      if (field !== undefined) expect((answer.json as { field?: string }).field).toBe(field);
    }
    expect((await register(frontend)).status).toBe(201);
  });

  it('records heartbeats and the workload own health, and deregisters', async () => {
    expect((await heartbeat('demo/frontend')).status).toBe(404);
    await register(frontend);
    await waitFor(() => zone.source.workloads().length === 1, { what: 'the workload' });
    const beat = await heartbeat('demo/frontend', { healthy: false });
    expect(beat.status).toBe(200);
    expect(beat.json).toMatchObject({ healthy: false });
    await waitFor(() => zone.source.workloads()[0]?.healthy === false, { what: 'unhealthy' });
    expect((await heartbeat('demo/frontend', { healthy: true })).json).toMatchObject({ healthy: true });
    await waitFor(() => zone.source.workloads()[0]?.healthy === true, { what: 'healthy again' });
    expect((await heartbeat('demo/frontend')).status).toBe(200);
    expect((await heartbeat('demo/frontend', { healthy: 'yes' })).status).toBe(422);
    // Another workload's heartbeat or deregistration with this token is refused.
    expect((await heartbeat('demo/payments')).status).toBe(403);
    const otherDelete = await request(`${zone.url}/api/v1/workloads/demo/payments`, {
      method: 'DELETE',
      token: zone.token,
    });
    expect(otherDelete.status).toBe(403);

    const deleted = await request(`${zone.url}/api/v1/workloads/demo/frontend`, {
      method: 'DELETE',
      token: zone.token,
    });
    expect(deleted.status).toBe(200);
    await waitFor(() => zone.source.workloads().length === 0, { what: 'the workload to be gone' });
    expect(zone.source.services()).toEqual([]);
    const again = await request(`${zone.url}/api/v1/workloads/demo/frontend`, {
      method: 'DELETE',
      token: zone.token,
    });
    expect(again.status).toBe(404);
  });

  it('never overwrites a WorkloadEntry synced from global', async () => {
    await zone.store.create({
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name: 'frontend', namespace: 'demo', labels: { [ORIGIN_LABEL]: 'global' } },
      spec: { address: '10.9.9.9' },
    });
    const answer = await register(frontend);
    expect(answer.status).toBe(403);
    expect((answer.json as { message: string }).message).toContain('global');
    const kept = await zone.store.get({ kind: 'WorkloadEntry', namespace: 'demo', name: 'frontend' });
    expect(kept?.spec.address).toBe('10.9.9.9');
  });
});
