/**
 * mTLS and authorization with real certificates: STRICT refuses plaintext,
 * PERMISSIVE accepts both; peers from another trust domain, with expired
 * certificates or with the wrong identity are refused; AuthorizationPolicy
 * allow, deny and allow-nothing answer 403 `RBAC: access denied` with a
 * metric; the app learns the caller's verified identity.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import tls from 'node:tls';
import type {
  AuthorizationPolicyConfig,
  EndpointConfig,
  InboundPort,
  MtlsMode,
} from '../../core/mesh/snapshot.js';
import { createTestMesh, expiredWorkload, type WorkloadCredentials } from '../common/pki-fixtures.js';
import {
  keepAlive,
  metricValue,
  request,
  scrape,
  sidecarEndpoint,
  sidecarSnapshot,
  spiffeOf,
  startApp,
  startTestProxy,
  type TestApp,
  type TestProxy,
} from './proxy-harness.js';

const mesh = createTestMesh();
const other = createTestMesh('other.example');
const NS = 'foo';

let app: TestApp;
let server: TestProxy;
let client: TestProxy;
const serverW = {
  workload: 'httpbin',
  namespace: NS,
  serviceAccount: 'httpbin',
  labels: { app: 'httpbin', version: 'v1' },
};
const clientW = { workload: 'sleep', namespace: NS, serviceAccount: 'sleep' };

function serverConfig(
  ports: InboundPort[],
  defaultMtls: MtlsMode,
  authorization: AuthorizationPolicyConfig[] = [],
  roots = [mesh.rootPem],
): void {
  server.handle.applySnapshot(
    sidecarSnapshot({ ...serverW, roots, inboundPorts: ports, defaultMtls, authorization }),
  );
}

function port(mtls: MtlsMode, number = 8000): InboundPort {
  return { port: number, targetPort: app.port, protocol: 'http', mtls };
}

function clientConfig(endpoint: EndpointConfig, proxy = client, roots = [mesh.rootPem]): void {
  proxy.handle.applySnapshot(
    sidecarSnapshot({
      ...clientW,
      roots,
      services: [
        {
          name: 'httpbin',
          namespace: NS,
          ports: [
            { name: 'http', port: 8000, protocol: 'http' },
            { name: 'admin', port: 9000, protocol: 'http' },
          ],
          clusters: [{ subset: '_', endpoints: [endpoint] }],
        },
      ],
    }),
  );
}

function endpoint(): EndpointConfig {
  return sidecarEndpoint(server.handle.ports.inbound, serverW);
}

/** Plain HTTP straight to the server proxy's inbound port. */
function plaintext(
  path: string,
  host = 'httpbin.foo:8000',
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: server.handle.ports.inbound,
        path,
        headers: { ...headers, host },
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** A raw TLS client presenting `creds` to the server proxy's inbound port. */
function tlsClient(creds: WorkloadCredentials, ca: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: server.handle.ports.inbound,
      servername: '_.8000.httpbin.foo.svc.mesh',
      cert: creds.certChainPem,
      key: creds.keyPem,
      ca,
      checkServerIdentity: () => undefined,
    });
    let data = '';
    socket.on('secureConnect', () =>
      socket.write('GET / HTTP/1.1\r\nhost: httpbin\r\nconnection: close\r\n\r\n'),
    );
    socket.on('data', (c: Buffer) => (data += c.toString()));
    socket.on('error', (err) => resolve(`error: ${err.message}`));
    socket.on('close', () => resolve(data));
  });
}

function viaClient(
  path = '/',
  headers: Record<string, string> = {},
  method = 'GET',
): ReturnType<typeof request> {
  return request(client.handle.ports.outbound, 'httpbin:8000', path, { headers, method });
}

beforeAll(async () => {
  app = await startApp('httpbin');
  server = await startTestProxy(mesh, serverW, undefined);
  client = await startTestProxy(mesh, clientW, undefined);
  serverConfig([port('STRICT')], 'STRICT');
  clientConfig(endpoint());
});

afterAll(async () => {
  keepAlive.destroy();
  await client?.close();
  await server?.close();
  await app?.close();
});

describe('peer authentication', () => {
  it('STRICT: mTLS passes, plaintext is cut without an answer and counted', async () => {
    serverConfig([port('STRICT')], 'STRICT');
    expect((await viaClient('/strict')).status).toBe(200);
    await expect(plaintext('/strict-plain')).rejects.toThrow();
    expect(app.requests.find((r) => r.url === '/strict-plain')).toBeUndefined();
    const text = await scrape(server.metrics);
    expect(
      metricValue(text, 'meshfed_proxy_inbound_refused_total', { reason: 'plaintext_on_strict' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('PERMISSIVE: both plaintext and mTLS reach the app, with the security policy in the metrics', async () => {
    serverConfig([port('PERMISSIVE')], 'PERMISSIVE');
    expect((await plaintext('/permissive-plain')).status).toBe(200);
    expect((await viaClient('/permissive-mtls')).status).toBe(200);
    const plainSeen = app.requests.find((r) => r.url === '/permissive-plain');
    expect(plainSeen?.headers['x-forwarded-client-cert']).toBeUndefined();
    const mtlsSeen = app.requests.find((r) => r.url === '/permissive-mtls');
    expect(mtlsSeen?.headers['x-forwarded-client-cert']).toBe(
      `By=${spiffeOf(NS, 'httpbin')};URI=${spiffeOf(NS, 'sleep')}`,
    );
    const text = await scrape(server.metrics);
    expect(
      metricValue(text, 'istio_requests_total', {
        reporter: 'destination',
        connection_security_policy: 'none',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      metricValue(text, 'istio_requests_total', {
        reporter: 'destination',
        connection_security_policy: 'mutual_tls',
        source_principal: spiffeOf(NS, 'sleep'),
        source_workload: 'sleep',
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('per-port modes: plaintext to the STRICT port is cut, to the PERMISSIVE port it passes', async () => {
    serverConfig([port('PERMISSIVE', 8000), port('STRICT', 9000)], 'PERMISSIVE');
    expect((await plaintext('/p8000', 'httpbin.foo:8000')).status).toBe(200);
    await expect(plaintext('/p9000', 'httpbin.foo:9000')).rejects.toThrow();
    expect((await request(client.handle.ports.outbound, 'httpbin:9000', '/m9000')).status).toBe(200);
  });

  it('refuses a peer whose certificate chains to an untrusted root', async () => {
    serverConfig([port('STRICT')], 'STRICT');
    const stranger = await startTestProxy(other, { workload: 'stranger', namespace: NS }, undefined);
    try {
      clientConfig(endpoint(), stranger, [mesh.rootPem, other.rootPem]);
      const answer = await request(stranger.handle.ports.outbound, 'httpbin:8000', '/stranger');
      expect(answer.status).toBe(503);
      expect(app.requests.find((r) => r.url === '/stranger')).toBeUndefined();
      const text = await scrape(server.metrics);
      expect(
        metricValue(text, 'meshfed_proxy_inbound_refused_total', { reason: 'untrusted_peer_cert' }),
      ).toBeGreaterThanOrEqual(1);
    } finally {
      await stranger.close();
    }
  });

  it('refuses a trusted chain whose SPIFFE ID is of another trust domain', async () => {
    serverConfig([port('STRICT')], 'STRICT', [], [mesh.rootPem, other.rootPem]);
    const creds = other.workload({ namespace: NS, serviceAccount: 'sleep' });
    const reply = await tlsClient(creds, mesh.rootPem);
    expect(reply).not.toContain('HTTP/1.1 200');
    const text = await scrape(server.metrics);
    expect(
      metricValue(text, 'meshfed_proxy_inbound_refused_total', { reason: 'wrong_trust_domain' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('refuses an expired client certificate before any request reaches the app', async () => {
    serverConfig([port('STRICT')], 'STRICT');
    const reply = await tlsClient(
      expiredWorkload(mesh, { namespace: NS, serviceAccount: 'sleep' }),
      mesh.rootPem,
    );
    expect(reply).not.toContain('HTTP/1.1 200');
    const text = await scrape(server.metrics);
    expect(
      metricValue(text, 'meshfed_proxy_inbound_refused_total', { reason: 'peer_cert_expired' }),
    ).toBeGreaterThanOrEqual(1);
    // A valid certificate on the same path is let in.
    expect(
      await tlsClient(mesh.workload({ namespace: NS, serviceAccount: 'sleep' }), mesh.rootPem),
    ).toContain('HTTP/1.1 200');
  });

  it('the client refuses a server with an expired certificate or the wrong identity (503 UF)', async () => {
    serverConfig([port('STRICT')], 'STRICT');
    const expired = expiredWorkload(mesh, { namespace: NS, serviceAccount: 'httpbin' });
    const fake = tls.createServer(
      { cert: expired.certChainPem, key: expired.keyPem, requestCert: false },
      (s) => s.end(),
    );
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    try {
      const fakePort = (fake.address() as { port: number }).port;
      clientConfig({ ...endpoint(), port: fakePort });
      const answer = await viaClient('/expired-server');
      expect(answer.status).toBe(503);
      expect(answer.body).toContain('connection failure');
      clientConfig({ ...endpoint(), identities: [spiffeOf(NS, 'not-httpbin')] });
      const wrongId = await viaClient('/wrong-identity');
      expect(wrongId.status).toBe(503);
      expect(app.requests.find((r) => r.url === '/wrong-identity')).toBeUndefined();
      const text = await scrape(client.metrics);
      expect(
        metricValue(text, 'meshfed_proxy_upstream_connect_failures_total', { reason: 'identity' }),
      ).toBeGreaterThanOrEqual(1);
      // Istio's default policy retries connect failures twice: UF with URX once they are used up.
      expect(
        metricValue(text, 'istio_requests_total', {
          reporter: 'source',
          response_code: '503',
          response_flags: 'UF,URX',
        }),
      ).toBeGreaterThanOrEqual(2);
    } finally {
      fake.close();
      clientConfig(endpoint());
    }
  });
});

describe('authorization', () => {
  it('DENY: GET is refused with 403 RBAC: access denied, POST passes', async () => {
    serverConfig([port('STRICT')], 'STRICT', [
      {
        name: 'deny-method-get',
        namespace: NS,
        action: 'DENY',
        rules: [{ to: [{ operation: { methods: ['GET'] } }] }],
      },
    ]);
    const denied = await viaClient('/deny-get');
    expect(denied.status).toBe(403);
    expect(denied.body.trim()).toBe('RBAC: access denied');
    expect(app.requests.find((r) => r.url === '/deny-get')).toBeUndefined();
    expect((await viaClient('/deny-post', {}, 'POST')).status).toBe(200);
    const text = await scrape(server.metrics);
    expect(
      metricValue(text, 'meshfed_proxy_rbac_denied_total', { policy: 'foo.deny-method-get' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      metricValue(text, 'istio_requests_total', { reporter: 'destination', response_code: '403' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('ALLOW by principal, method, path and header condition; everything else is refused', async () => {
    serverConfig([port('PERMISSIVE')], 'PERMISSIVE', [
      {
        name: 'get-from-sleep',
        namespace: NS,
        action: 'ALLOW',
        rules: [
          {
            from: [{ source: { principals: ['cluster.local/ns/foo/sa/sleep'] } }],
            to: [{ operation: { methods: ['GET'], paths: ['/info*'] } }],
            when: [{ key: 'request.headers[version]', values: ['v1', 'v2'] }],
          },
        ],
      },
    ]);
    expect((await viaClient('/info/a', { version: 'v1' })).status).toBe(200);
    expect((await viaClient('/info/a', { version: 'v3' })).status).toBe(403);
    expect((await viaClient('/info/a')).status).toBe(403);
    expect((await viaClient('/other', { version: 'v1' })).status).toBe(403);
    expect((await viaClient('/info/a', { version: 'v1' }, 'POST')).status).toBe(403);
    // Plaintext has no principal.
    expect((await plaintext('/info/a')).status).toBe(403);
  });

  it('a DENY policy wins over a matching ALLOW policy', async () => {
    serverConfig([port('STRICT')], 'STRICT', [
      { name: 'allow-all', namespace: NS, action: 'ALLOW', rules: [{}] },
      {
        name: 'deny-admin',
        namespace: NS,
        action: 'DENY',
        rules: [{ to: [{ operation: { paths: ['/admin/{**}'] } }] }],
      },
    ]);
    expect((await viaClient('/public')).status).toBe(200);
    expect((await viaClient('/admin/users/1')).status).toBe(403);
  });

  it('a path policy holds however the path is spelled: absolute-form, dot segments, %2e; the app gets it normalized', async () => {
    serverConfig([port('PERMISSIVE')], 'PERMISSIVE', [
      { name: 'allow-all', namespace: NS, action: 'ALLOW', rules: [{}] },
      {
        name: 'deny-admin',
        namespace: NS,
        action: 'DENY',
        rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }],
      },
    ]);
    for (const path of [
      'http://httpbin.foo:8000/admin/users',
      '/public/../admin/users',
      '/public/%2e%2e/admin/users',
      '/./admin/users',
    ]) {
      expect({ path, status: (await plaintext(path)).status }).toEqual({ path, status: 403 });
    }
    expect((await viaClient('/public/./../admin/users')).status).toBe(403);
    expect(app.requests.find((r) => r.url.includes('admin'))).toBeUndefined();

    expect((await plaintext('http://httpbin.foo:8000/public/./a/../b?q=1', 'ignored.example')).status).toBe(
      200,
    );
    const seen = app.requests.at(-1);
    expect(seen?.url).toBe('/public/b?q=1');
    expect(seen?.headers.host).toBe('httpbin.foo:8000');
    // Not a path at all: refused before any policy or app sees it.
    expect((await plaintext('ftp://httpbin.foo/admin')).status).toBe(400);
    serverConfig([port('STRICT')], 'STRICT');
  });

  it('a hosts rule judges the authority the app is asked for: an absolute-form target, not the Host header', async () => {
    serverConfig([port('PERMISSIVE')], 'PERMISSIVE', [
      {
        name: 'public-only',
        namespace: NS,
        action: 'ALLOW',
        rules: [{ to: [{ operation: { hosts: ['public.example'] } }] }],
      },
    ]);
    const before = app.requests.length;
    expect((await plaintext('/page', 'public.example')).status).toBe(200);
    // Host says public.example; the target names admin.internal, which is what the app would get.
    expect((await plaintext('http://admin.internal/secret', 'public.example')).status).toBe(403);
    expect(app.requests.slice(before).map((r) => r.url)).toEqual(['/page']);
    serverConfig([port('STRICT')], 'STRICT');
  });

  it('remote.ip is the last X-Forwarded-For address, not the first one a client wrote', async () => {
    serverConfig([port('PERMISSIVE')], 'PERMISSIVE', [
      {
        name: 'from-the-lan',
        namespace: NS,
        action: 'ALLOW',
        rules: [{ from: [{ source: { remoteIpBlocks: ['10.0.0.0/8'] } }] }],
      },
    ]);
    const xff = (value: string): Promise<number> =>
      plaintext('/xff', undefined, { 'x-forwarded-for': value }).then((a) => a.status);
    expect(await xff('192.168.0.1, 10.0.0.9')).toBe(200);
    expect(await xff('10.0.0.9, 192.168.0.1')).toBe(403);
    // Without the header it is the connection's own address (loopback here).
    expect((await plaintext('/xff')).status).toBe(403);
    serverConfig([port('STRICT')], 'STRICT');
  });

  it('allow-nothing (an ALLOW policy without rules) refuses every request', async () => {
    serverConfig([port('STRICT')], 'STRICT', [
      { name: 'allow-nothing', namespace: NS, action: 'ALLOW', rules: [] },
    ]);
    for (const path of ['/', '/a', '/info']) expect((await viaClient(path)).status).toBe(403);
    serverConfig([port('STRICT')], 'STRICT');
    expect((await viaClient('/')).status).toBe(200);
  });

  it('namespaces, notPrincipals and ports', async () => {
    serverConfig([port('STRICT', 8000), port('STRICT', 9000)], 'STRICT', [
      {
        name: 'ns-only',
        namespace: NS,
        action: 'ALLOW',
        rules: [
          {
            from: [{ source: { namespaces: ['foo'], notPrincipals: ['cluster.local/ns/foo/sa/intruder'] } }],
            to: [{ operation: { ports: ['8000'] } }],
          },
        ],
      },
    ]);
    expect((await viaClient('/ns')).status).toBe(200);
    expect((await request(client.handle.ports.outbound, 'httpbin:9000', '/ns9000')).status).toBe(403);
  });
});
