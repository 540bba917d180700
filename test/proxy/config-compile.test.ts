/**
 * Snapshot validation and compilation (what makes a NACK), and the
 * authorization engine's Istio semantics, without sockets.
 */

import { describe, expect, it } from '@jest/globals';
import { isMeshError } from '../../core/errors.js';
import type { SidecarSnapshot } from '../../core/mesh/snapshot.js';
import { compileSnapshot } from '../../proxy/config/config-compile.js';
import { RetryOn } from '../../proxy/config/config-types.js';
import { compileAuthorization, type AuthzRequest } from '../../proxy/inbound/authz-engine.js';
import { retriableFailure, retriableResponse } from '../../proxy/outbound/outbound-retry.js';
import { UpstreamFailure } from '../../proxy/upstream/upstream-attempt.js';
import { createTestMesh } from '../common/pki-fixtures.js';
import { sidecarEndpoint, sidecarSnapshot } from './proxy-harness.js';

const mesh = createTestMesh();

function snapshot(http: unknown[] = [], trafficPolicy: Record<string, unknown> = {}): SidecarSnapshot {
  return sidecarSnapshot({
    workload: 'web',
    namespace: 'shop',
    roots: [mesh.rootPem],
    services: [
      {
        name: 'cart',
        namespace: 'shop',
        http: http as SidecarSnapshot['outbound']['services'][number]['http'],
        clusters: [
          {
            subset: '_',
            trafficPolicy,
            endpoints: [sidecarEndpoint(15006, { workload: 'cart', namespace: 'shop' })],
          },
          { subset: 'v1', trafficPolicy, endpoints: [] },
        ],
      },
    ],
  });
}

function refusal(json: unknown): string {
  try {
    compileSnapshot(json);
  } catch (err) {
    if (isMeshError(err)) return `${err.code} ${err.message}`;
    throw err;
  }
  throw new Error('the snapshot compiled');
}

describe('snapshot validation', () => {
  it('compiles a good snapshot: clusters per port and subset with mesh SNIs', () => {
    const c = compileSnapshot(snapshot());
    expect(c.clusters.map((x) => x.name)).toEqual([
      'outbound|80||cart.shop.svc.cluster.local',
      'outbound|80|v1|cart.shop.svc.cluster.local',
    ]);
    expect(c.clusters[1]?.sni).toBe('v1.80.cart.shop.svc.mesh');
    expect(c.outbound.byHost.get('cart')?.host).toBe('cart.shop.svc.cluster.local');
    expect(c.clusters[0]?.policy).toMatchObject({
      lb: 'LEAST_REQUEST',
      connectTimeoutMs: 10_000,
      h2: false,
      h2ToProxies: true,
    });
  });

  it('reads h2UpgradePolicy: HTTP/2 between sidecars unless DO_NOT_UPGRADE, to every endpoint with UPGRADE', () => {
    const policy = (h2UpgradePolicy: string): unknown =>
      compileSnapshot(snapshot([], { connectionPool: { http: { h2UpgradePolicy } } })).clusters[0]?.policy;
    expect(policy('DEFAULT')).toMatchObject({ h2: false, h2ToProxies: true });
    expect(policy('DO_NOT_UPGRADE')).toMatchObject({ h2: false, h2ToProxies: false });
    expect(policy('UPGRADE')).toMatchObject({ h2: true, h2ToProxies: true });
    expect(refusal(snapshot([], { connectionPool: { http: { h2UpgradePolicy: 'SOMETIMES' } } }))).toContain(
      'connectionPool.http.h2UpgradePolicy: must be one of DEFAULT, DO_NOT_UPGRADE, UPGRADE',
    );
  });

  it('names the field of each refusal', () => {
    expect(refusal({ ...snapshot(), type: 'gateway/v1' })).toContain('type: must be "sidecar/v1"');
    expect(
      refusal(
        snapshot([
          {
            route: [
              { destination: { host: 'cart' }, weight: 50 },
              { destination: { host: 'cart', subset: 'v1' }, weight: 40 },
            ],
          },
        ]),
      ),
    ).toContain('outbound.services[0].http[0].route: weights sum to 90');
    expect(refusal(snapshot([{ route: [{ destination: { host: 'cart' } }], timeout: 'soon' }]))).toContain(
      'outbound.services[0].http[0].timeout',
    );
    expect(
      refusal(
        snapshot([
          { route: [{ destination: { host: 'cart' } }], retries: { attempts: 2, retryOn: '5xx,sometimes' } },
        ]),
      ),
    ).toContain('unknown retry condition "sometimes"');
    expect(
      refusal(
        snapshot([
          { match: [{ headers: { x: { regex: '(a' } } }], route: [{ destination: { host: 'cart' } }] },
        ]),
      ),
    ).toContain('outbound.services[0].http[0].match[0].headers["x"].regex');
    expect(refusal(snapshot([], { loadBalancer: { simple: 'FASTEST' } }))).toContain(
      'loadBalancer.simple: unknown load balancer "FASTEST"',
    );
    expect(refusal(snapshot([], { outlierDetection: { interval: '-1s' } }))).toContain(
      'outlierDetection.interval',
    );
    const noIdentity = snapshot();
    const cluster = noIdentity.outbound.services[0]?.clusters[0];
    if (cluster?.endpoints[0]) cluster.endpoints[0].identities = [];
    expect(refusal(noIdentity)).toContain('endpoints[0].identities: an mTLS endpoint needs the identities');
    expect(
      refusal({ ...snapshot(), trust: { trustDomain: 'cluster.local', roots: ['not a pem'] } }),
    ).toContain('trust.roots[0]');
    expect(
      refusal({
        ...snapshot(),
        inbound: {
          ports: [{ port: 80, targetPort: 0, protocol: 'http' }],
          defaultMtls: 'STRICT',
          authorization: [],
        },
      }),
    ).toContain('inbound.ports[0].targetPort');
    expect(
      refusal({
        ...snapshot(),
        inbound: {
          ports: [],
          defaultMtls: 'STRICT',
          authorization: [
            {
              name: 'p',
              namespace: 'n',
              action: 'ALLOW',
              rules: [{ when: [{ key: 'request.magic', values: ['x'] }] }],
            },
          ],
        },
      }),
    ).toContain('unsupported condition key "request.magic"');
    expect(refusal(null)).toContain('snapshot: must be an object');
  });

  it('drops matches that cannot apply to this proxy (sourceLabels, sourceNamespace, gateways)', () => {
    const c = compileSnapshot(
      snapshot([
        {
          match: [{ sourceLabels: { app: 'someone-else' } }],
          route: [{ destination: { host: 'cart', subset: 'v1' } }],
        },
        { match: [{ gateways: ['ingress'] }], route: [{ destination: { host: 'cart', subset: 'v1' } }] },
        { match: [{ sourceNamespace: 'shop' }], route: [{ destination: { host: 'cart' } }] },
      ]),
    );
    const routes = c.outbound.byHost.get('cart')?.http ?? [];
    expect(routes).toHaveLength(1);
    expect(routes[0]?.destinations[0]?.subset).toBe('_');
  });

  it("applies Istio's default retry policy and parses retryOn with status codes", () => {
    const c = compileSnapshot(
      snapshot([
        {
          route: [{ destination: { host: 'cart' } }],
          retries: { attempts: 3, perTryTimeout: '2s', retryOn: 'gateway-error,409' },
        },
      ]),
    );
    const route = c.outbound.byHost.get('cart')?.http[0];
    expect(route?.retry).toEqual({
      attempts: 3,
      perTryTimeoutMs: 2000,
      on: RetryOn.GATEWAY_ERROR | RetryOn.RETRIABLE_STATUS_CODES,
      statusCodes: [409],
    });
    expect(c.outbound.byHost.get('cart')?.defaultRoute.retry).toMatchObject({
      attempts: 2,
      statusCodes: [503],
    });
  });
});

describe('retry conditions', () => {
  const policy = (retryOn: number, statusCodes: number[] = []) => ({
    attempts: 1,
    perTryTimeoutMs: 0,
    on: retryOn,
    statusCodes,
  });
  it('follow Envoy x-envoy-retry-on', () => {
    expect(retriableResponse(policy(RetryOn.HTTP_5XX), 500, undefined)).toBe(true);
    expect(retriableResponse(policy(RetryOn.GATEWAY_ERROR), 500, undefined)).toBe(false);
    expect(retriableResponse(policy(RetryOn.GATEWAY_ERROR), 504, undefined)).toBe(true);
    expect(retriableResponse(policy(RetryOn.RETRIABLE_STATUS_CODES, [418]), 418, undefined)).toBe(true);
    expect(retriableResponse(policy(RetryOn.GRPC_UNAVAILABLE), 200, '14')).toBe(true);
    expect(retriableResponse(policy(RetryOn.GRPC_UNAVAILABLE), 200, '13')).toBe(false);
    expect(retriableFailure(policy(RetryOn.CONNECT_FAILURE), UpstreamFailure.CONNECT, false)).toBe(true);
    expect(retriableFailure(policy(RetryOn.CONNECT_FAILURE), UpstreamFailure.RESET, false)).toBe(false);
    expect(retriableFailure(policy(RetryOn.RESET), UpstreamFailure.RESET, false)).toBe(true);
    expect(retriableFailure(policy(RetryOn.RESET), 0, true)).toBe(true);
    expect(retriableFailure(policy(RetryOn.REFUSED_STREAM), UpstreamFailure.REFUSED_STREAM, false)).toBe(
      true,
    );
    expect(retriableFailure(policy(RetryOn.REFUSED_STREAM), 0, true)).toBe(false);
  });
});

describe('authorization engine', () => {
  const base: AuthzRequest = {
    tcp: false,
    principal: 'cluster.local/ns/default/sa/sleep',
    namespace: 'default',
    sourceIp: '10.1.2.3',
    remoteIp: '10.1.2.3',
    port: 8000,
    targetPort: 80,
    destinationIp: '10.0.0.1',
    sni: '_.8000.httpbin.default.svc.mesh',
    method: 'GET',
    path: '/info/x',
    host: 'httpbin:8000',
    headers: { version: 'v1' },
  };

  it('DENY wins, then ALLOW must match, with no policies everything passes', () => {
    expect(compileAuthorization([], 'p').evaluate(base).allowed).toBe(true);
    const engine = compileAuthorization(
      [
        {
          name: 'allow-get',
          namespace: 'default',
          action: 'ALLOW',
          rules: [{ to: [{ operation: { methods: ['GET'] } }] }],
        },
        {
          name: 'deny-admin',
          namespace: 'default',
          action: 'DENY',
          rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }],
        },
        { name: 'audit', namespace: 'default', action: 'AUDIT', rules: [{}] },
      ],
      'p',
    );
    expect(engine.evaluate(base)).toEqual({ allowed: true, policy: 'default.allow-get' });
    expect(engine.evaluate({ ...base, path: '/admin/users' })).toEqual({
      allowed: false,
      policy: 'default.deny-admin',
    });
    expect(engine.evaluate({ ...base, method: 'POST' })).toEqual({ allowed: false, policy: '' });
  });

  it('matches principals, namespaces, ip blocks, hosts, suffix/prefix/presence and path templates', () => {
    const allow = (rules: unknown[]) =>
      compileAuthorization([{ name: 'a', namespace: 'd', action: 'ALLOW', rules }], 'p');
    expect(
      allow([{ from: [{ source: { principals: ['*/ns/default/sa/*'] } }] }]).evaluate(base).allowed,
    ).toBe(false);
    expect(
      allow([{ from: [{ source: { principals: ['cluster.local/ns/default/*'] } }] }]).evaluate(base).allowed,
    ).toBe(true);
    expect(
      allow([{ from: [{ source: { principals: ['*'] } }] }]).evaluate({ ...base, principal: '' }).allowed,
    ).toBe(false);
    expect(allow([{ from: [{ source: { namespaces: ['default'] } }] }]).evaluate(base).allowed).toBe(true);
    expect(allow([{ from: [{ source: { ipBlocks: ['10.1.0.0/16'] } }] }]).evaluate(base).allowed).toBe(true);
    expect(allow([{ from: [{ source: { ipBlocks: ['10.2.0.0/16'] } }] }]).evaluate(base).allowed).toBe(false);
    expect(
      allow([{ from: [{ source: { notIpBlocks: ['10.1.2.3'] } }] }]).evaluate({
        ...base,
        sourceIp: '::ffff:10.1.2.3',
      }).allowed,
    ).toBe(false);
    expect(allow([{ to: [{ operation: { hosts: ['HTTPBIN'] } }] }]).evaluate(base).allowed).toBe(true);
    expect(allow([{ to: [{ operation: { paths: ['*/x'] } }] }]).evaluate(base).allowed).toBe(true);
    expect(allow([{ to: [{ operation: { paths: ['/info/{*}'] } }] }]).evaluate(base).allowed).toBe(true);
    expect(
      allow([{ to: [{ operation: { paths: ['/info/{*}'] } }] }]).evaluate({ ...base, path: '/info/a/b' })
        .allowed,
    ).toBe(false);
    expect(
      allow([{ to: [{ operation: { paths: ['/{**}/x'] } }] }]).evaluate({ ...base, path: '/a/b/x' }).allowed,
    ).toBe(true);
    expect(allow([{ to: [{ operation: { ports: ['80'] } }] }]).evaluate(base).allowed).toBe(true);
    expect(
      allow([{ when: [{ key: 'request.headers[version]', notValues: ['v1'] }] }]).evaluate(base).allowed,
    ).toBe(false);
    expect(allow([{ when: [{ key: 'source.namespace', values: ['default'] }] }]).evaluate(base).allowed).toBe(
      true,
    );
    expect(
      allow([{ when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] }]).evaluate(base).allowed,
    ).toBe(false);
  });

  it('for TCP, an ALLOW rule with HTTP-only fields never matches and a DENY rule ignores them', () => {
    const tcp = { ...base, tcp: true, method: '', path: '' };
    const allowGet = compileAuthorization(
      [
        {
          name: 'a',
          namespace: 'd',
          action: 'ALLOW',
          rules: [{ to: [{ operation: { methods: ['GET'] } }] }],
        },
      ],
      'p',
    );
    expect(allowGet.evaluate(tcp).allowed).toBe(false);
    const denyGet = compileAuthorization(
      [
        {
          name: 'd',
          namespace: 'd',
          action: 'DENY',
          rules: [{ to: [{ operation: { methods: ['GET'], ports: ['80'] } }] }],
        },
      ],
      'p',
    );
    expect(denyGet.evaluate(tcp).allowed).toBe(false);
  });
});
