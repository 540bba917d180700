import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGlobalCp } from '../../global-cp/global-cp.js';
import type { GlobalCpHandle } from '../../global-cp/options.js';
import { http, openSse } from '../common/http.js';

const REVIEWS = `
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v3}
      weight: 10
`;

describe('global policy API', () => {
  let dir: string;
  let cp: GlobalCpHandle;
  let admin: string;
  let api: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshfed-global-'));
    cp = await startGlobalCp({ port: 0, dataDir: dir, storeUrl: 'memory://' });
    admin = (await readFile(cp.adminTokenFile, 'utf8')).trim();
    api = cp.url;
  });

  afterAll(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const apply = (body: string, token = admin, contentType = 'application/yaml') =>
    http(`${api}/api/v1/apply`, { method: 'POST', token, body, contentType });

  it('writes the admin token readable only by its owner', async () => {
    const mode = (await stat(cp.adminTokenFile)).mode & 0o777;
    expect(mode).toBe(0o600);
  });

  it('refuses requests without a valid token and read-only tokens on writes', async () => {
    expect((await http(`${api}/apis`)).status).toBe(401);
    const forged = await http(`${api}/apis`, { token: admin.slice(0, -4) + 'AAAA' });
    expect(forged.status).toBe(401);
    expect((forged.json as { code: string }).code).toBe('MESHFED_ERR_TOKEN_INVALID');

    const created = await http(`${api}/api/v1/tokens`, {
      method: 'POST',
      token: admin,
      body: JSON.stringify({ kind: 'readonly', name: 'viewer', ttl: '1h' }),
      contentType: 'application/json',
    });
    expect(created.status).toBe(201);
    const readonly = (created.json as { token: string }).token;
    expect((await http(`${api}/apis`, { token: readonly })).status).toBe(200);
    const write = await apply(REVIEWS, readonly);
    expect(write.status).toBe(403);
    expect((write.json as { code: string }).code).toBe('MESHFED_ERR_FORBIDDEN');
  });

  it('revoked tokens stop working at once', async () => {
    const created = await http(`${api}/api/v1/tokens`, {
      method: 'POST',
      token: admin,
      body: JSON.stringify({ kind: 'admin', name: 'short-lived' }),
      contentType: 'application/json',
    });
    const { token, id } = created.json as { token: string; id: string };
    expect((await http(`${api}/apis`, { token })).status).toBe(200);
    expect((await http(`${api}/api/v1/tokens/${id}`, { method: 'DELETE', token: admin })).status).toBe(200);
    const after = await http(`${api}/apis`, { token });
    expect(after.status).toBe(401);
    expect(after.text).toMatch(/revoked/);
  });

  it('applies, reads back and reports unchanged on re-apply', async () => {
    const first = await apply(REVIEWS);
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({
      results: [{ kind: 'VirtualService', name: 'reviews', namespace: 'default', action: 'created' }],
    });
    const again = await apply(REVIEWS);
    expect(again.json).toMatchObject({ results: [{ action: 'unchanged' }] });

    const got = await http(
      `${api}/apis/networking.istio.io/v1beta1/namespaces/default/virtualservices/reviews`,
      { token: admin },
    );
    expect(got.status).toBe(200);
    const object = got.json as {
      spec: { http: Array<{ route: Array<{ weight: number }> }> };
      metadata: { generation: number };
    };
    expect(object.spec.http[0]?.route.map((r) => r.weight)).toEqual([90, 10]);
    expect(object.metadata.generation).toBe(1);

    // The meshfed group serves the same objects.
    const viaMeshfed = await http(`${api}/apis/networking.meshfed.io/v1/virtualservices`, { token: admin });
    expect((viaMeshfed.json as { items: unknown[] }).items).toHaveLength(1);
  });

  it('applies every Istio documentation example in the fixtures', async () => {
    const fixtures = join(process.cwd(), 'test/fixtures/istio');
    const files = (await readdir(fixtures)).filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThan(3);
    for (const file of files) {
      const answer = await apply(await readFile(join(fixtures, file), 'utf8'));
      expect({ file, status: answer.status, body: answer.status === 200 ? '' : answer.text }).toEqual({
        file,
        status: 200,
        body: '',
      });
    }
  });

  it('refuses bad documents with the field path and stores nothing of them', async () => {
    const unknownField = await apply(REVIEWS.replace('weight: 10', 'weight: 10\n      wieght: 3'));
    expect(unknownField.status).toBe(422);
    expect(unknownField.json).toMatchObject({
      code: 'MESHFED_ERR_VALIDATION',
      field: 'spec.http[0].route[1].wieght',
    });

    const badWeights = await apply(REVIEWS.replace('weight: 10', 'weight: 20'));
    expect(badWeights.status).toBe(422);
    expect((badWeights.json as { message: string }).message).toMatch(/100/);

    // Two documents, the second bad: the first must not be written either.
    const twoDocs =
      REVIEWS.replace('name: reviews', 'name: half-written') +
      '---\n' +
      REVIEWS.replace('weight: 90', 'weight: "x"');
    const refused = await apply(twoDocs);
    expect(refused.status).toBe(422);
    expect(refused.json).toMatchObject({ details: { document: 1 } });
    const ratings = await http(
      `${api}/apis/networking.istio.io/v1/namespaces/default/virtualservices/half-written`,
      { token: admin },
    );
    expect(ratings.status).toBe(404);

    const malformed = await apply('kind: [unclosed');
    expect(malformed.status).toBe(400);
    expect((malformed.json as { code: string }).code).toBe('MESHFED_ERR_DECODE');

    const unknownKind = await apply(
      'apiVersion: networking.istio.io/v1\nkind: Gateway2\nmetadata: {name: x}\nspec: {}\n',
    );
    expect(unknownKind.status).toBe(400);
    expect((unknownKind.json as { code: string }).code).toBe('MESHFED_ERR_UNKNOWN_KIND');

    const deep = '['.repeat(5000) + ']'.repeat(5000);
    const nested = await apply(deep, admin, 'application/json');
    expect(nested.status).toBe(400);
  });

  it('stores nothing of a multi-document apply whose pinned resourceVersion no longer holds', async () => {
    const pa = (name: string, extra = '') =>
      `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ${name}, namespace: pins${extra}}\nspec: {mtls: {mode: STRICT}}\n`;
    const answer = await apply(`${pa('pin-first')}---\n${pa('pin-second', ', resourceVersion: "5"')}`);
    expect(answer.status).toBe(404);
    expect(answer.json).toMatchObject({
      code: 'MESHFED_ERR_NOT_FOUND',
      message: expect.stringContaining('document 1: PeerAuthentication pins/pin-second does not exist'),
    });
    const first = await http(
      `${api}/apis/security.istio.io/v1/namespaces/pins/peerauthentications/pin-first`,
      {
        token: admin,
      },
    );
    expect(first.status).toBe(404);
  });

  it('refuses a 10 MB body with 413 and keeps serving', async () => {
    const huge = 'x'.repeat(10 * 1024 * 1024);
    const answer = await apply(huge).catch(() => undefined);
    // The server may close the socket before the client finished sending; both are a refusal.
    if (answer !== undefined) expect(answer.status).toBe(413);
    expect((await http(`${api}/healthz`)).status).toBe(200);
    expect((await http(`${api}/apis`, { token: admin })).status).toBe(200);
  });

  it('refuses a stale update with a conflict; exactly one of concurrent CAS writers wins', async () => {
    const path = `${api}/apis/networking.istio.io/v1beta1/namespaces/default/virtualservices/reviews`;
    const current = (await http(path, { token: admin })).json as { metadata: { resourceVersion: string } };
    const body = (weights: [number, number]) =>
      JSON.stringify({
        apiVersion: 'networking.istio.io/v1beta1',
        kind: 'VirtualService',
        metadata: {
          name: 'reviews',
          namespace: 'default',
          resourceVersion: current.metadata.resourceVersion,
        },
        spec: {
          hosts: ['reviews'],
          http: [
            {
              route: [
                { destination: { host: 'reviews', subset: 'v1' }, weight: weights[0] },
                { destination: { host: 'reviews', subset: 'v3' }, weight: weights[1] },
              ],
            },
          ],
        },
      });
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        http(path, {
          method: 'PUT',
          token: admin,
          body: body([50 + i, 50 - i]),
          contentType: 'application/json',
        }),
      ),
    );
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(9);
    expect(answers.find((a) => a.status === 409)?.json).toMatchObject({ code: 'MESHFED_ERR_CONFLICT' });
  });

  it('streams changes to watchers and resumes from a revision', async () => {
    const list = await http(`${api}/apis/security.istio.io/v1/peerauthentications`, { token: admin });
    const revision = (list.json as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
    const watch = await openSse(
      `${api}/apis/security.istio.io/v1/peerauthentications?watch=true&resourceVersion=${revision}`,
      admin,
    );
    try {
      const pa =
        'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict-watch, namespace: prod}\nspec: {mtls: {mode: STRICT}}\n';
      expect((await apply(pa)).status).toBe(200);
      const event = await watch.next();
      expect(event.event).toBe('ADDED');
      expect(event.data).toMatchObject({
        type: 'ADDED',
        object: { metadata: { name: 'strict-watch', namespace: 'prod' } },
      });
      const del = await http(
        `${api}/apis/security.istio.io/v1/namespaces/prod/peerauthentications/strict-watch`,
        {
          method: 'DELETE',
          token: admin,
        },
      );
      expect(del.status).toBe(200);
      expect((await watch.next()).event).toBe('DELETED');
    } finally {
      watch.close();
    }
  });

  it('answers a watch from a revision it cannot hold with an ERROR event naming it, and keeps serving', async () => {
    for (const bad of ['1e300', '9007199254740993', '-1', 'soon']) {
      const watch = await openSse(
        `${api}/apis/security.istio.io/v1/peerauthentications?watch=true&resourceVersion=${bad}`,
        admin,
      );
      try {
        const event = await watch.next();
        expect(event.event).toBe('ERROR');
        expect(event.data).toMatchObject({
          code: 'MESHFED_ERR_INVALID_ARGUMENT',
          message: expect.stringContaining(`resourceVersion must be a non-negative integer, got "${bad}"`),
        });
      } finally {
        watch.close();
      }
    }
    const list = await http(`${api}/apis/security.istio.io/v1/peerauthentications`, { token: admin });
    expect(list.status).toBe(200);
  });

  it('publishes the trust bundle and never a private key', async () => {
    const bundle = await http(`${api}/api/v1/trust-bundle`, { token: admin });
    expect(bundle.status).toBe(200);
    expect(bundle.json).toMatchObject({ trustDomain: 'cluster.local' });
    expect(bundle.text).toContain('BEGIN CERTIFICATE');
    expect(bundle.text).not.toMatch(/PRIVATE KEY/);
  });

  it('exposes Prometheus metrics that count applies', async () => {
    const metrics = await http(`${api}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(/meshfed_global_applies_total\{[^}]*kind="VirtualService"[^}]*\} [1-9]/);
    expect(metrics.text).toMatch(/meshfed_global_http_requests_total/);
  });
});
