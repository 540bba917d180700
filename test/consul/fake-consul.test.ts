/**
 * The fake Consul itself, held to what Consul's API documentation says
 * (catalog, health, blocking queries, ACLs), with the real `consul` client
 * where it can be used: the discovery tests are only as good as the fake
 * is honest.
 */

import { afterEach, describe, expect, it } from '@jest/globals';
import Consul from 'consul';

import { FakeConsul } from '../common/fake-consul.js';
import type { FakeConsulOptions } from '../common/fake-consul.js';
import { waitFor } from '../common/wait.js';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function start(options: FakeConsulOptions = {}): Promise<FakeConsul> {
  const fake = await FakeConsul.start(options);
  closers.push(() => fake.close());
  return fake;
}

interface Answer {
  status: number;
  index: string | null;
  headers: Headers;
  text: string;
  json: unknown;
}

async function get(fake: FakeConsul, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${fake.url}${path}`, { headers });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, index: res.headers.get('x-consul-index'), headers: res.headers, text, json };
}

async function put(
  fake: FakeConsul,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await fetch(`${fake.url}${path}`, { method: 'PUT', body: JSON.stringify(body), headers });
  const text = await res.text();
  return {
    status: res.status,
    index: res.headers.get('x-consul-index'),
    headers: res.headers,
    text,
    json: undefined,
  };
}

const web1 = {
  Node: 'vm-1',
  Address: '10.0.0.1',
  NodeMeta: { rack: 'r1' },
  Service: { ID: 'web-1', Service: 'web', Tags: ['v1', 'mesh'], Port: 8080, Meta: { version: '1.0' } },
  Checks: [
    { CheckID: 'web-1-http', Name: 'HTTP on 8080', ServiceID: 'web-1', Status: 'passing' },
    { CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing' },
  ],
};

describe('fake Consul: catalog and health shapes', () => {
  it('answers the catalog and health endpoints in Consul shapes', async () => {
    const fake = await start();
    expect((await put(fake, '/v1/catalog/register', web1)).text).toBe('true');
    fake.register({
      Node: 'vm-2',
      Address: '10.0.0.2',
      Service: { ID: 'web-2', Service: 'web', Tags: ['v2'], Port: 8080 },
    });

    const services = await get(fake, '/v1/catalog/services');
    expect(services.status).toBe(200);
    expect(services.headers.get('content-type')).toBe('application/json');
    expect(services.json).toEqual({ consul: [], web: ['v1', 'mesh', 'v2'] });

    const health = await get(fake, '/v1/health/service/web');
    const entries = health.json as Array<Record<string, Record<string, unknown>>>;
    expect(entries).toHaveLength(2);
    expect(entries[0]?.Node).toMatchObject({
      Node: 'vm-1',
      Address: '10.0.0.1',
      Datacenter: 'dc1',
      Meta: { rack: 'r1' },
    });
    expect(entries[0]?.Service).toMatchObject({
      ID: 'web-1',
      Service: 'web',
      Tags: ['v1', 'mesh'],
      Address: '',
      Port: 8080,
      Meta: { version: '1.0' },
      Weights: { Passing: 1, Warning: 1 },
    });
    // Node checks apply to every service on the node and are listed with its service checks.
    const checks = entries[0]?.Checks as unknown as Array<Record<string, unknown>>;
    expect(checks.map((c) => [c.CheckID, c.ServiceID, c.ServiceName, c.ServiceTags])).toEqual([
      ['serfHealth', '', '', []],
      ['web-1-http', 'web-1', 'web', ['v1', 'mesh']],
    ]);
    // No meta and no tags: Meta null, Tags [] (Consul never sends a null list).
    expect(entries[1]?.Service).toMatchObject({ ID: 'web-2', Tags: ['v2'], Meta: null });
    expect(entries[1]?.Checks).toEqual([]);

    const catalog = await get(fake, '/v1/catalog/service/web');
    expect((catalog.json as Array<Record<string, unknown>>)[0]).toMatchObject({
      Node: 'vm-1',
      Address: '10.0.0.1',
      ServiceID: 'web-1',
      ServiceName: 'web',
      ServicePort: 8080,
      ServiceAddress: '',
      ServiceTags: ['v1', 'mesh'],
      ServiceMeta: { version: '1.0' },
      NodeMeta: { rack: 'r1' },
    });
    expect(catalog.index).toBe(health.index);
  });

  it('works with the real consul client, and filters by ?passing and ?tag', async () => {
    const fake = await start();
    fake.register(web1);
    fake.register({
      Node: 'vm-2',
      Address: '10.0.0.2',
      Service: { ID: 'web-2', Service: 'web', Tags: ['v2', 'mesh'], Port: 8080 },
      Check: { CheckID: 'web-2-http', ServiceID: 'web-2', Status: 'warning' },
    });
    const client = new Consul({ host: '127.0.0.1', port: fake.port });
    try {
      expect(await client.catalog.service.list()).toEqual({ consul: [], web: ['v1', 'mesh', 'v2'] });
      const all = (await client.health.service('web')) as Array<{ Service: { ID: string } }>;
      expect(all.map((e) => e.Service.ID)).toEqual(['web-1', 'web-2']);
      // ?passing drops instances with any check not passing, warnings included.
      const passing = (await client.health.service({ service: 'web', passing: true })) as Array<{
        Service: { ID: string };
      }>;
      expect(passing.map((e) => e.Service.ID)).toEqual(['web-1']);
      const tagged = await get(fake, '/v1/health/service/web?tag=mesh&tag=v2');
      expect((tagged.json as Array<{ Service: { ID: string } }>).map((e) => e.Service.ID)).toEqual(['web-2']);
    } finally {
      client.destroy();
    }
  });

  it('applies Consul defaults and refusals on register', async () => {
    const fake = await start();
    // A check without status is critical; CheckID defaults to the name; Service.ID to the service name.
    fake.register({
      Node: 'n1',
      Address: '10.0.0.9',
      Service: { Service: 'db', Port: 5432 },
      Check: { Name: 'db-alive', ServiceID: 'db' },
    });
    const [entry] = (await get(fake, '/v1/health/service/db')).json as Array<{
      Service: { ID: string };
      Checks: Array<Record<string, unknown>>;
    }>;
    expect(entry?.Service.ID).toBe('db');
    expect(entry?.Checks[0]).toMatchObject({ CheckID: 'db-alive', Status: 'critical' });

    const unknownService = await put(fake, '/v1/catalog/register', {
      Node: 'n1',
      Address: '10.0.0.9',
      Check: { CheckID: 'x', ServiceID: 'nope', Status: 'passing' },
    });
    expect(unknownService.status).toBe(500);
    expect(unknownService.text).toMatch(/Unknown service ID 'nope'/);
    expect((await put(fake, '/v1/catalog/register', { Address: '1.2.3.4' })).text).toBe('Must provide node');
    expect((await put(fake, '/v1/catalog/register', { Node: 'n2' })).text).toBe('Must provide address');
    const badJson = await fetch(`${fake.url}/v1/catalog/register`, { method: 'PUT', body: '{' });
    expect(badJson.status).toBe(400);
    expect((await fetch(`${fake.url}/v1/catalog/register`, { method: 'POST', body: '{}' })).status).toBe(405);
    expect((await get(fake, '/v1/catalog/services?dc=dc9')).text).toBe('No path to datacenter');
    expect((await get(fake, '/v1/health/service/db?filter=Service.Port==1')).status).toBe(400);
    expect((await get(fake, '/v1/health/service/db?index=abc')).status).toBe(400);
    expect((await get(fake, '/v1/health/service/db?index=1&wait=forever')).text).toBe('Invalid wait time');
    expect((await get(fake, '/v1/kv/anything')).status).toBe(404);
  });

  it('deregisters a check, a service with its checks, or a node with everything on it', async () => {
    const fake = await start();
    fake.register(web1);
    fake.register({ Node: 'vm-1', Address: '10.0.0.1', Service: { ID: 'db-1', Service: 'db', Port: 5432 } });
    await put(fake, '/v1/catalog/deregister', { Node: 'vm-1', CheckID: 'web-1-http' });
    let [entry] = (await get(fake, '/v1/health/service/web')).json as Array<{
      Checks: Array<{ CheckID: string }>;
    }>;
    expect(entry?.Checks.map((c) => c.CheckID)).toEqual(['serfHealth']);

    fake.register(web1);
    await put(fake, '/v1/catalog/deregister', { Node: 'vm-1', ServiceID: 'web-1' });
    expect((await get(fake, '/v1/health/service/web')).json).toEqual([]);
    [entry] = (await get(fake, '/v1/health/service/db')).json as Array<{
      Checks: Array<{ CheckID: string }>;
    }>;
    expect(entry?.Checks.map((c) => c.CheckID)).toEqual(['serfHealth']);

    await put(fake, '/v1/catalog/deregister', { Node: 'vm-1' });
    expect((await get(fake, '/v1/catalog/services')).json).toEqual({ consul: [] });
    // Deregistering what is not there succeeds (idempotent).
    expect((await put(fake, '/v1/catalog/deregister', { Node: 'vm-1' })).text).toBe('true');
  });
});

describe('fake Consul: blocking queries', () => {
  it('holds a query until its service changes, and only its service', async () => {
    const fake = await start();
    fake.register(web1);
    const first = await get(fake, '/v1/health/service/web');
    const index = Number(first.index);
    expect(index).toBeGreaterThan(0);

    const pending = get(fake, `/v1/health/service/web?index=${index}&wait=30s`);
    await waitFor(() => fake.blockedQueries() === 1, { what: 'the query to block' });
    // Another service changing, or a write that changes nothing, wakes nothing.
    fake.register({ Node: 'vm-9', Address: '10.0.0.9', Service: { ID: 'db', Service: 'db', Port: 1 } });
    fake.register(web1);
    expect(fake.blockedQueries()).toBe(1);

    fake.setCheckStatus('vm-1', 'web-1-http', 'critical', 'connection refused');
    const changed = await pending;
    expect(Number(changed.index)).toBeGreaterThan(index);
    const [entry] = changed.json as Array<{
      Checks: Array<{ CheckID: string; Status: string; Output: string }>;
    }>;
    expect(entry?.Checks.find((c) => c.CheckID === 'web-1-http')).toMatchObject({
      Status: 'critical',
      Output: 'connection refused',
    });
  });

  it('wakes every service of a node when a node check changes', async () => {
    const fake = await start();
    fake.register(web1);
    const { index } = await get(fake, '/v1/health/service/web');
    const pending = get(fake, `/v1/health/service/web?index=${index ?? ''}&wait=30s`);
    await waitFor(() => fake.blockedQueries() === 1, { what: 'the query to block' });
    fake.setCheckStatus('vm-1', 'serfHealth', 'critical');
    const [entry] = (await pending).json as Array<{ Checks: Array<{ CheckID: string; Status: string }> }>;
    expect(entry?.Checks.find((c) => c.CheckID === 'serfHealth')?.Status).toBe('critical');
  });

  it('answers the same index when the wait expires without a change', async () => {
    const fake = await start();
    fake.register(web1);
    const { index } = await get(fake, '/v1/catalog/services');
    const answer = await get(fake, `/v1/catalog/services?index=${index ?? ''}&wait=1s`);
    expect(answer.status).toBe(200);
    expect(answer.index).toBe(index);
  });

  it('wakes a query on a service that disappears, with a higher index', async () => {
    const fake = await start();
    fake.register(web1);
    const { index } = await get(fake, '/v1/health/service/web');
    const pending = get(fake, `/v1/health/service/web?index=${index ?? ''}&wait=30s`);
    await waitFor(() => fake.blockedQueries() === 1, { what: 'the query to block' });
    fake.deregister({ Node: 'vm-1', ServiceID: 'web-1' });
    const gone = await pending;
    expect(gone.json).toEqual([]);
    expect(Number(gone.index)).toBeGreaterThan(Number(index));
  });

  it('never answers index 0, and never blocks on index 0', async () => {
    const fake = await start({ registerSelf: false });
    const empty = await get(fake, '/v1/catalog/services?index=0&wait=30s');
    expect(empty.json).toEqual({});
    expect(empty.index).toBe('1');
  });

  it('releases blocked queries with a lower index when a snapshot is restored', async () => {
    const fake = await start();
    fake.register(web1);
    const snapshot = fake.snapshot();
    fake.register({
      Node: 'vm-2',
      Address: '10.0.0.2',
      Service: { ID: 'web-2', Service: 'web', Port: 8080 },
    });
    const { index } = await get(fake, '/v1/health/service/web');
    const pending = get(fake, `/v1/health/service/web?index=${index ?? ''}&wait=30s`);
    await waitFor(() => fake.blockedQueries() === 1, { what: 'the query to block' });
    fake.restore(snapshot);
    const restored = await pending;
    expect(Number(restored.index)).toBeLessThan(Number(index));
    expect((restored.json as unknown[]).length).toBe(1);
  });

  it('answers 500 No cluster leader while unavailable, and injected faults', async () => {
    const fake = await start();
    fake.register(web1);
    const { index } = await get(fake, '/v1/catalog/services');
    const pending = get(fake, `/v1/catalog/services?index=${index ?? ''}&wait=30s`);
    await waitFor(() => fake.blockedQueries() === 1, { what: 'the query to block' });
    fake.setAvailable(false);
    const down = await pending;
    expect([down.status, down.text]).toEqual([500, 'No cluster leader']);
    fake.setAvailable(true);

    fake.injectFault({ path: '/v1/health/service/web', body: '[{"Node": 5}', index: null });
    const broken = await get(fake, '/v1/health/service/web');
    expect([broken.status, broken.index, broken.text]).toEqual([200, null, '[{"Node": 5}']);
    expect((await get(fake, '/v1/health/service/web')).json).toHaveLength(1);
  });
});

describe('fake Consul: ACLs', () => {
  it('refuses unknown tokens, filters anonymous reads and refuses anonymous writes', async () => {
    const fake = await start({ aclTokens: ['s3cret'] });
    fake.register(web1);
    const unknown = await get(fake, '/v1/catalog/services', { 'x-consul-token': 'nope' });
    expect([unknown.status, unknown.text]).toEqual([403, 'ACL not found']);
    const anonymous = await get(fake, '/v1/catalog/services');
    expect(anonymous.status).toBe(200);
    expect(anonymous.json).toEqual({});
    expect(anonymous.headers.get('x-consul-results-filtered-by-acls')).toBe('true');
    expect((await put(fake, '/v1/catalog/register', web1)).status).toBe(403);
    expect((await get(fake, '/v1/health/service/web', { authorization: 'Bearer s3cret' })).json).toHaveLength(
      1,
    );
    expect((await get(fake, '/v1/health/service/web?token=s3cret')).json).toHaveLength(1);
    const client = new Consul({ host: '127.0.0.1', port: fake.port, defaults: { token: 's3cret' } });
    try {
      expect(Object.keys(await client.catalog.service.list())).toEqual(['consul', 'web']);
    } finally {
      client.destroy();
    }
  });
});
