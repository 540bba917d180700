import { describe, expect, it } from '@jest/globals';
import type { ServiceCatalog } from '../../core/mesh/inventory.js';
import type { GatewaySnapshot, OutboundService, SidecarSnapshot } from '../../core/mesh/snapshot.js';
import type { StoredResource } from '../../core/resource/resource.js';
import { createLogger } from '../../core/log.js';
import { ConfigCompiler } from '../../zone-cp/compiler/config-compiler.js';
import type { PolicyKind } from '../../zone-cp/compiler/policy-index.js';
import type { LocalService, WorkloadEndpoint } from '../../zone-cp/discovery/discovery.js';
import { storedFromYaml } from '../common/stored-resources.js';
import { service, workload } from '../common/zone-cp.js';

function stored(yaml: string): StoredResource[] {
  return storedFromYaml(yaml, 'default');
}

interface World {
  services: LocalService[];
  extraWorkloads?: WorkloadEndpoint[];
  policies?: string;
  catalog?: ServiceCatalog;
}

function compilerFor(world: World): { compiler: ConfigCompiler; set(next: Partial<World>): void } {
  let current = world;
  let objects = stored(world.policies ?? '');
  const compiler = new ConfigCompiler({
    zone: 'zone-a',
    logger: createLogger('test-compiler'),
    sources: {
      services: () => current.services,
      workloads: () => [...current.services.flatMap((s) => s.endpoints), ...(current.extraWorkloads ?? [])],
      resources: (kind: PolicyKind) => objects.filter((o) => o.kind === kind),
      catalog: () => current.catalog,
      trust: () => ({ trustDomain: 'cluster.local', roots: ['ROOT'] }),
      gateway: () => ({ address: '10.0.0.1', port: 15443 }),
    },
  });
  return {
    compiler,
    set(next) {
      current = { ...current, ...next };
      if (next.policies !== undefined) objects = stored(next.policies);
      compiler.invalidate();
    },
  };
}

function sidecar(compiler: ConfigCompiler, namespace: string, name: string): SidecarSnapshot {
  const compiled = compiler.compileSidecar(`${name}-1`, namespace, name);
  if (compiled === undefined) throw new Error(`no snapshot for ${namespace}/${name}`);
  const snapshot = JSON.parse(compiled.json) as SidecarSnapshot;
  // The hand-assembled JSON must be exactly what JSON.stringify writes.
  expect(JSON.stringify(snapshot)).toBe(compiled.json);
  return snapshot;
}

function outbound(snapshot: SidecarSnapshot, host: string): OutboundService {
  const found = snapshot.outbound.services.find((s) => s.host === host);
  if (found === undefined)
    throw new Error(`${host} not in ${snapshot.outbound.services.map((s) => s.host).join(', ')}`);
  return found;
}

const bookinfo = (): LocalService[] => [
  service('productpage', 'bookinfo', [
    workload('productpage-1', 'bookinfo', { labels: { app: 'productpage' } }),
  ]),
  service('reviews', 'bookinfo', [
    workload('reviews-v1', 'bookinfo', {
      labels: { app: 'reviews', version: 'v1' },
      serviceAccount: 'reviews',
      address: '10.1.0.1',
    }),
    workload('reviews-v2', 'bookinfo', {
      labels: { app: 'reviews', version: 'v2' },
      serviceAccount: 'reviews',
      address: '10.1.0.2',
    }),
    workload('reviews-v3', 'bookinfo', {
      labels: { app: 'reviews', version: 'v3' },
      serviceAccount: 'reviews',
      address: '10.1.0.3',
      healthy: false,
    }),
  ]),
  service('ratings', 'bookinfo', [workload('ratings-1', 'bookinfo', { labels: { app: 'ratings' } })]),
];

/** A DestinationRule that pins ratings.bookinfo to the caller's zone (for the callers it applies to). */
const RATINGS_PINNED_BY_DR = `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: ratings
  namespace: bookinfo
  annotations: {meshfed.io/pinned-to-zone: "true"}
spec: {host: ratings}
`;

describe('config compiler', () => {
  it('resolves VirtualService hosts relative to the rule namespace and keeps Istio route shapes', () => {
    const { compiler } = compilerFor({
      services: bookinfo(),
      policies: `
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route:
    - {destination: {host: reviews.bookinfo, subset: v1}, weight: 90}
    - {destination: {host: ratings.bookinfo.svc, subset: v3}, weight: 10}
    mirror: {host: ratings}
    retries: {attempts: 3, perTryTimeout: 2s}
`,
    });
    const reviews = outbound(
      sidecar(compiler, 'bookinfo', 'productpage-1'),
      'reviews.bookinfo.svc.cluster.local',
    );
    expect(reviews.aliases).toEqual(['reviews', 'reviews.bookinfo', 'reviews.bookinfo.svc']);
    expect(reviews.http).toHaveLength(2);
    expect(reviews.http[0]).toEqual({
      match: [{ headers: { 'end-user': { exact: 'jason' } } }],
      route: [{ destination: { host: 'reviews.bookinfo.svc.cluster.local', subset: 'v2' } }],
    });
    const second = reviews.http[1] as {
      route: Array<{ destination: { host: string } }>;
      mirror: { host: string };
      retries: unknown;
    };
    expect(second.route.map((r) => r.destination.host)).toEqual([
      'reviews.bookinfo.svc.cluster.local',
      'ratings.bookinfo.svc.cluster.local',
    ]);
    expect(second.mirror.host).toBe('ratings.bookinfo.svc.cluster.local');
    expect(second.retries).toEqual({ attempts: 3, perTryTimeout: '2s' });
  });

  it('builds DestinationRule subsets from endpoint labels with the subset policy winning per field', () => {
    const { compiler } = compilerFor({
      services: bookinfo(),
      policies: `
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting: {enabled: true, failover: [{from: us-east, to: us-west}]}
    connectionPool: {tcp: {maxConnections: 10}}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      loadBalancer: {simple: LEAST_REQUEST}
`,
    });
    const reviews = outbound(
      sidecar(compiler, 'bookinfo', 'productpage-1'),
      'reviews.bookinfo.svc.cluster.local',
    );
    expect(reviews.clusters.map((c) => c.subset)).toEqual(['_', 'v1', 'v3']);
    const [all, v1, v3] = reviews.clusters;
    expect(all?.endpoints.map((e) => e.workload)).toEqual(['reviews-v1', 'reviews-v2', 'reviews-v3']);
    expect(v1?.endpoints.map((e) => e.address)).toEqual(['10.1.0.1']);
    expect(v1?.trafficPolicy).toEqual(all?.trafficPolicy);
    expect(v3?.trafficPolicy).toEqual({
      loadBalancer: { simple: 'LEAST_REQUEST' },
      connectionPool: { tcp: { maxConnections: 10 } },
    });
    expect(v3?.endpoints[0]).toMatchObject({
      port: 15006,
      via: 'sidecar',
      healthy: false,
      zone: 'zone-a',
      identities: ['spiffe://cluster.local/ns/bookinfo/sa/reviews'],
      labels: { app: 'reviews', version: 'v3', 'topology.istio.io/cluster': 'zone-a' },
    });
    expect(reviews.locality).toEqual({
      preferLocalZone: true,
      pinnedToZone: false,
      setting: { enabled: true, failover: [{ from: 'us-east', to: 'us-west' }] },
    });
  });

  it('layers PeerAuthentication: Mesh, root namespace, namespace, workload selector, port level', () => {
    const services = [
      service(
        'db',
        'data',
        [workload('db-1', 'data', { labels: { app: 'db' }, ports: { http: 8080, metrics: 9090 } })],
        {
          ports: [
            { name: 'http', port: 80, targetPort: 'http', protocol: 'http' },
            { name: 'metrics', port: 9090, targetPort: 9090, protocol: 'http' },
          ],
        },
      ),
      service('web', 'data', [workload('web-1', 'data', { labels: { app: 'web' } })]),
      service('other', 'elsewhere', [workload('other-1', 'elsewhere')]),
    ];
    const { compiler, set } = compilerFor({
      services,
      policies: `
apiVersion: meshfed.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec: {mtls: {mode: STRICT}}
`,
    });
    expect(sidecar(compiler, 'elsewhere', 'other-1').inbound.defaultMtls).toBe('STRICT');
    set({
      policies: `
apiVersion: meshfed.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: mesh, namespace: istio-system}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: data, namespace: data}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: db, namespace: data}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: UNSET}
  portLevelMtls:
    "9090": {mode: DISABLE}
`,
    });
    expect(sidecar(compiler, 'elsewhere', 'other-1').inbound.defaultMtls).toBe('PERMISSIVE');
    expect(sidecar(compiler, 'data', 'web-1').inbound.defaultMtls).toBe('STRICT');
    const db = sidecar(compiler, 'data', 'db-1').inbound;
    expect(db.defaultMtls).toBe('STRICT');
    expect(db.ports).toEqual([
      { port: 80, targetPort: 8080, protocol: 'http', mtls: 'STRICT', name: 'http' },
      { port: 9090, targetPort: 9090, protocol: 'http', mtls: 'DISABLE', name: 'metrics' },
    ]);
  });

  it('selects AuthorizationPolicies by root namespace, namespace and selector, skipping what sidecars cannot enforce', () => {
    const { compiler } = compilerFor({
      services: bookinfo(),
      policies: `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-evil, namespace: istio-system}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: [evil]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: bookinfo}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{from: [{source: {principals: [cluster.local/ns/bookinfo/sa/productpage-1]}}], to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: bookinfo}
spec:
  action: CUSTOM
  provider: {name: opa}
  rules: [{}]
`,
    });
    const names = (ns: string, w: string) =>
      sidecar(compiler, ns, w).inbound.authorization.map((p) => `${p.namespace}/${p.name}:${p.action}`);
    expect(names('bookinfo', 'reviews-v1')).toEqual([
      'istio-system/deny-evil:DENY',
      'bookinfo/allow-nothing:ALLOW',
      'bookinfo/reviews-viewer:ALLOW',
    ]);
    expect(names('bookinfo', 'ratings-1')).toEqual([
      'istio-system/deny-evil:DENY',
      'bookinfo/allow-nothing:ALLOW',
    ]);
    const allowNothing = sidecar(compiler, 'bookinfo', 'ratings-1').inbound.authorization[1];
    expect(allowNothing?.rules).toEqual([]);
    expect(compiler.problems()).toEqual([
      expect.objectContaining({
        kind: 'AuthorizationPolicy',
        name: 'ext-authz',
        severity: 'error',
        reason: expect.stringContaining('CUSTOM'),
      }),
    ]);
  });

  it('skips a bad policy from the store, reports it by name and reason, and compiles everything else', () => {
    const { compiler } = compilerFor({
      services: bookinfo(),
      policies: `
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: broken-weights, namespace: bookinfo}
spec:
  hosts: [ratings]
  http:
  - route:
    - {destination: {host: ratings}, weight: 70}
    - {destination: {host: ratings}, weight: 70}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: typo, namespace: bookinfo}
spec:
  host: reviews
  trafficPolcy: {}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
`,
    });
    const snapshot = sidecar(compiler, 'bookinfo', 'productpage-1');
    expect(outbound(snapshot, 'reviews.bookinfo.svc.cluster.local').http).toHaveLength(1);
    expect(outbound(snapshot, 'ratings.bookinfo.svc.cluster.local').http).toEqual([]);
    const problems = compiler.problems();
    expect(problems.map((p) => `${p.kind}/${p.name}`).sort()).toEqual([
      'DestinationRule/typo',
      'VirtualService/broken-weights',
    ]);
    expect(problems.find((p) => p.name === 'typo')?.reason).toMatch(/trafficPolcy/);
    expect(problems.find((p) => p.name === 'broken-weights')?.reason).toMatch(/weight/i);
  });

  it('scopes a proxy to its dependency list plus what their routes send to', () => {
    const services = [
      ...bookinfo(),
      service('reviews-next', 'bookinfo', [workload('reviews-next-1', 'bookinfo')]),
      ...Array.from({ length: 50 }, (_, i) =>
        service(`filler-${i}`, 'other', [workload(`filler-${i}-1`, 'other')]),
      ),
      service('private', 'secret', [workload('private-1', 'secret')], { exportTo: ['.'] }),
    ];
    const fe = workload('frontend-1', 'bookinfo', {
      annotations: { 'meshfed.io/dependencies': 'reviews, other/*, private.secret' },
    });
    const { compiler } = compilerFor({
      services,
      extraWorkloads: [fe, workload('loner-1', 'bookinfo')],
      policies: `
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews-next}}]}]
`,
    });
    const hosts = sidecar(compiler, 'bookinfo', 'frontend-1').outbound.services.map((s) => s.host);
    expect(hosts).toHaveLength(52);
    expect(hosts).toContain('reviews.bookinfo.svc.cluster.local');
    expect(hosts).toContain('reviews-next.bookinfo.svc.cluster.local');
    expect(hosts).not.toContain('ratings.bookinfo.svc.cluster.local');
    // exportTo "." hides a service from other namespaces even when it is named.
    expect(hosts).not.toContain('private.secret.svc.cluster.local');
    // Without a list, a proxy sees what its namespace may see.
    const all = sidecar(compiler, 'bookinfo', 'loner-1').outbound.services.map((s) => s.host);
    expect(all).toHaveLength(services.length - 1);
  });

  it('keeps a proxy version unchanged when only services it does not call change', () => {
    const fe = workload('frontend-1', 'shop', { annotations: { 'meshfed.io/dependencies': 'cart' } });
    const cart = service('cart', 'shop', [workload('cart-1', 'shop')]);
    const { compiler, set } = compilerFor({
      services: [cart, service('search', 'shop', [workload('search-1', 'shop')])],
      extraWorkloads: [fe],
    });
    const before = compiler.compileSidecar('fe', 'shop', 'frontend-1')?.version;
    set({
      services: [
        cart,
        service('search', 'shop', [workload('search-1', 'shop'), workload('search-2', 'shop')]),
      ],
    });
    expect(compiler.compileSidecar('fe', 'shop', 'frontend-1')?.version).toBe(before);
    set({ services: [service('cart', 'shop', [workload('cart-1', 'shop'), workload('cart-2', 'shop')])] });
    expect(compiler.compileSidecar('fe', 'shop', 'frontend-1')?.version).not.toBe(before);
  });

  it('adds one weighted gateway endpoint per remote zone, weighted by healthy endpoints matching the subset', () => {
    const catalog: ServiceCatalog = {
      zones: [
        {
          zone: 'zone-b',
          connected: true,
          lastSeen: new Date().toISOString(),
          gateway: { address: '192.0.2.10', port: 15443 },
          services: [
            {
              name: 'reviews',
              namespace: 'bookinfo',
              ports: [{ name: 'http', port: 80, protocol: 'http' }],
              endpointGroups: [
                {
                  labels: { app: 'reviews', version: 'v1' },
                  healthy: 2,
                  total: 3,
                  identities: ['spiffe://cluster.local/ns/bookinfo/sa/reviews'],
                },
                {
                  labels: { app: 'reviews', version: 'v2' },
                  healthy: 4,
                  total: 4,
                  identities: ['spiffe://cluster.local/ns/bookinfo/sa/reviews-v2'],
                },
              ],
            },
            {
              name: 'only-remote',
              namespace: 'bookinfo',
              ports: [{ name: 'grpc', port: 9000, protocol: 'grpc' }],
              endpointGroups: [{ labels: {}, healthy: 1, total: 1, identities: [] }],
            },
          ],
        },
        {
          zone: 'zone-c',
          connected: false,
          lastSeen: new Date().toISOString(),
          gateway: { address: '192.0.2.20', port: 15443 },
          services: [
            {
              name: 'reviews',
              namespace: 'bookinfo',
              ports: [{ name: 'http', port: 80, protocol: 'http' }],
              endpointGroups: [
                { labels: { app: 'reviews', version: 'v1' }, healthy: 1, total: 1, identities: [] },
              ],
            },
          ],
        },
      ],
    };
    const { compiler } = compilerFor({
      services: bookinfo(),
      catalog,
      policies: `
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
`,
    });
    const snapshot = sidecar(compiler, 'bookinfo', 'productpage-1');
    const reviews = outbound(snapshot, 'reviews.bookinfo.svc.cluster.local');
    const gateways = (subset: string) =>
      reviews.clusters
        .find((c) => c.subset === subset)
        ?.endpoints.filter((e) => e.via === 'gateway')
        .map((e) => `${e.zone}:${e.weight}:${e.healthy}`);
    // zone-c is disconnected from global but inside its grace period: its last health stands.
    expect(gateways('_')).toEqual(['zone-b:6:true', 'zone-c:1:true']);
    expect(gateways('v1')).toEqual(['zone-b:2:true', 'zone-c:1:true']);
    expect(gateways('v2')).toEqual(['zone-b:4:true']);
    const v2 = reviews.clusters.find((c) => c.subset === 'v2')?.endpoints.find((e) => e.via === 'gateway');
    expect(v2).toMatchObject({
      address: '192.0.2.10',
      port: 15443,
      identities: ['spiffe://cluster.local/ns/bookinfo/sa/reviews-v2'],
      labels: { 'topology.istio.io/cluster': 'zone-b' },
    });
    // A service that runs only in another zone is still callable.
    expect(outbound(snapshot, 'only-remote.bookinfo.svc.cluster.local').ports).toEqual([
      { name: 'grpc', port: 9000, protocol: 'grpc' },
    ]);
  });

  it('reaches workloads without a sidecar in plaintext at each target port', () => {
    const legacy = workload('legacy-1', 'shop', {
      sidecar: false,
      address: '10.2.0.9',
      ports: { web: 8000, admin: 8001 },
    });
    const { compiler } = compilerFor({
      services: [
        service('legacy', 'shop', [legacy], {
          ports: [
            { name: 'http', port: 80, targetPort: 'web', protocol: 'http' },
            { name: 'admin', port: 81, targetPort: 8001, protocol: 'http' },
          ],
        }),
      ],
      extraWorkloads: [workload('client-1', 'shop')],
    });
    const legacyOut = outbound(sidecar(compiler, 'shop', 'client-1'), 'legacy.shop.svc.cluster.local');
    expect(
      legacyOut.clusters[0]?.endpoints.map((e) => [e.via, e.servicePort, e.port, e.identities.length]),
    ).toEqual([
      ['plaintext', 80, 8000, 0],
      ['plaintext', 81, 8001, 0],
    ]);
  });

  it('compiles the gateway table from sidecar endpoints and the inventory by label groups', () => {
    const services = [
      ...bookinfo(),
      service('legacy', 'bookinfo', [workload('legacy-1', 'bookinfo', { sidecar: false })]),
    ];
    const { compiler } = compilerFor({
      services,
      policies: `
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v9, labels: {version: v9}}]
`,
    });
    const gateway = JSON.parse(compiler.compileGateway().json) as GatewaySnapshot;
    expect(gateway.zone).toBe('zone-a');
    expect(gateway.services.map((s) => s.name)).toEqual(['productpage', 'ratings', 'reviews']);
    const reviews = gateway.services.find((s) => s.name === 'reviews');
    expect(reviews?.clusters.map((c) => `${c.subset}:${c.endpoints.length}`)).toEqual(['_:3', 'v1:1']);
    expect(reviews?.ports).toEqual([80]);

    const inventory = compiler.inventory();
    expect(inventory.gateway).toEqual({ address: '10.0.0.1', port: 15443 });
    const reviewsInv = inventory.services.find((s) => s.name === 'reviews');
    expect(reviewsInv?.endpointGroups).toEqual([
      {
        labels: { app: 'reviews', version: 'v1' },
        healthy: 1,
        total: 1,
        identities: ['spiffe://cluster.local/ns/bookinfo/sa/reviews'],
      },
      {
        labels: { app: 'reviews', version: 'v2' },
        healthy: 1,
        total: 1,
        identities: ['spiffe://cluster.local/ns/bookinfo/sa/reviews'],
      },
      {
        labels: { app: 'reviews', version: 'v3' },
        healthy: 0,
        total: 1,
        identities: ['spiffe://cluster.local/ns/bookinfo/sa/reviews'],
      },
    ]);
    expect(inventory.services.find((s) => s.name === 'legacy')?.endpointGroups).toEqual([]);
  });

  it('applies the Mesh routing default and the pinned-to-zone annotation', () => {
    const { compiler } = compilerFor({
      services: bookinfo(),
      policies: `
apiVersion: meshfed.io/v1alpha1
kind: Mesh
metadata:
  name: default
  annotations: {meshfed.io/access-log: "true"}
spec: {routing: {preferLocalZone: false}}
---
${RATINGS_PINNED_BY_DR}`,
    });
    const snapshot = sidecar(compiler, 'bookinfo', 'productpage-1');
    expect(snapshot.telemetry).toEqual({ accessLog: true });
    expect(outbound(snapshot, 'ratings.bookinfo.svc.cluster.local').locality).toEqual({
      preferLocalZone: false,
      pinnedToZone: true,
    });
    expect(outbound(snapshot, 'reviews.bookinfo.svc.cluster.local').locality.pinnedToZone).toBe(false);
  });

  it("leaves services the Mesh pins out of the gateway's table, listed as not exported; a DestinationRule's pin stays with its callers", () => {
    const { compiler } = compilerFor({
      services: bookinfo(),
      policies: `
apiVersion: meshfed.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec: {routing: {pinnedServices: [productpage.bookinfo]}}
---
${RATINGS_PINNED_BY_DR}`,
    });
    const gateway = JSON.parse(compiler.compileGateway().json) as GatewaySnapshot;
    expect(gateway.services.map((s) => s.name)).toEqual(['ratings', 'reviews']);
    expect(gateway.notExported).toEqual(['productpage.bookinfo']);
  });
});
