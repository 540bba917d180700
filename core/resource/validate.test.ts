import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import { ErrorCodes, MeshError } from '../errors.js';
import { decodeDocuments } from './decode.js';
import { validateResource } from './validate.js';
import type { ValidationResult } from './validate.js';

const fixturesDir = fileURLToPath(new URL('../../test/fixtures/istio/', import.meta.url));
const fixtureFiles = readdirSync(fixturesDir).filter((f) => f.endsWith('.yaml'));

function fixture(name: string): unknown[] {
  return decodeDocuments(readFileSync(`${fixturesDir}${name}`, 'utf8'), 'application/yaml');
}

function validateYaml(yaml: string): ValidationResult {
  const docs = decodeDocuments(yaml, 'application/yaml');
  expect(docs).toHaveLength(1);
  return validateResource(docs[0]);
}

/** The MeshError validation throws, for asserting code and field. */
function refusal(fn: () => unknown): MeshError {
  try {
    fn();
  } catch (err) {
    if (err instanceof MeshError) return err;
    throw new Error(`expected a MeshError, got ${String(err)}`, { cause: err });
  }
  throw new Error('expected validation to fail');
}

function vs(http: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'reviews', namespace: 'default' },
    spec: { hosts: ['reviews'], http, ...extra },
  };
}

const route = (subset: string, weight?: number): Record<string, unknown> => ({
  destination: { host: 'reviews', subset },
  ...(weight === undefined ? {} : { weight }),
});

describe('Istio documentation examples', () => {
  it('has the fixtures the suite expects', () => {
    expect(fixtureFiles.length).toBeGreaterThanOrEqual(15);
  });

  it.each(fixtureFiles)('%s validates', (file) => {
    const docs = fixture(file);
    expect(docs.length).toBeGreaterThan(0);
    for (const doc of docs) {
      const result = validateResource(doc);
      expect(result.resource.metadata.name).toBe((doc as { metadata: { name: string } }).metadata.name);
      // None of the documented examples uses a deprecated field.
      expect(result.warnings).toEqual([]);
    }
  });

  it('keeps the reviews subsets and the jason header match', () => {
    const [dr] = fixture('bookinfo-destination-rules.yaml')
      .map((d) => validateResource(d))
      .filter((r) => r.resource.metadata.name === 'reviews');
    expect((dr?.resource.spec.subsets as Array<{ name: string }>).map((s) => s.name)).toEqual([
      'v1',
      'v2',
      'v3',
    ]);
    const jason = validateResource(fixture('request-routing-jason.yaml')[0]);
    expect(jason.resource.spec).toMatchObject({
      http: [{ match: [{ headers: { 'end-user': { exact: 'jason' } } }] }, {}],
    });
  });

  it('defaults the namespace and keeps an explicit one', () => {
    const [dr] = fixture('locality-failover.yaml');
    expect(validateResource(dr).resource.metadata.namespace).toBe('sample');
    const [productpage] = fixture('bookinfo-virtual-service-all-v1.yaml');
    expect(validateResource(productpage).resource.metadata.namespace).toBe('default');
    expect(validateResource(productpage, { defaultNamespace: 'bookinfo' }).resource.metadata.namespace).toBe(
      'bookinfo',
    );
  });

  it('accepts the allow-nothing policy (empty spec) and a missing spec', () => {
    const [allowNothing] = fixture('authorization-policy.yaml');
    expect(validateResource(allowNothing).resource.spec).toEqual({});
    const noSpec = validateResource({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'allow-nothing' },
    });
    expect(noSpec.resource.spec).toEqual({});
  });

  it('applies the Mesh and Zone defaults', () => {
    const [mesh, zone] = fixture('meshfed-mesh-zones.yaml').map((d) => validateResource(d));
    expect(mesh?.resource.spec).toEqual({
      trustDomain: 'cluster.local',
      mtls: { mode: 'STRICT' },
      routing: { preferLocalZone: true },
    });
    expect(mesh?.resource.metadata.namespace).toBeUndefined();
    expect(zone?.resource.spec).toEqual({ enabled: true, description: 'first cluster' });
  });

  it('accepts the meshfed API groups and every Istio version', () => {
    for (const apiVersion of [
      'networking.istio.io/v1alpha3',
      'networking.istio.io/v1beta1',
      'networking.meshfed.io/v1',
    ]) {
      expect(validateResource({ ...vs([{ route: [route('v1')] }]), apiVersion }).kind.kind).toBe(
        'VirtualService',
      );
    }
  });

  it('drops status and never mutates its input', () => {
    const input = { ...vs([{ route: [route('v1')] }]), status: { anything: 1 } };
    const before = JSON.stringify(input);
    const { resource } = validateResource(input);
    expect(resource.status).toBeUndefined();
    expect(JSON.stringify(input)).toBe(before);
    (resource.spec.hosts as string[]).push('mutated');
    expect(JSON.stringify(input)).toBe(before);
  });
});

describe('refusals name the field', () => {
  const cases: Array<[string, () => unknown, string, string]> = [
    [
      'unknown field',
      () => validateResource(vs([{ rout: [route('v1')] }])),
      'spec.http[0].rout',
      'unknown field',
    ],
    [
      'unknown nested field',
      () => validateResource(vs([{ route: [{ destination: { host: 'reviews', subst: 'v1' } }] }])),
      'spec.http[0].route[0].destination.subst',
      'unknown field',
    ],
    [
      'wrong type',
      () => validateResource(vs([{ route: [route('v1', 50), { ...route('v2'), weight: '50' }] }])),
      'spec.http[0].route[1].weight',
      'must be integer',
    ],
    [
      'weights 90+20',
      () => validateResource(vs([{ route: [route('v1', 90), route('v2', 20)] }])),
      'spec.http[0].route',
      'sum to 110',
    ],
    [
      'bad regex',
      () => validateResource(vs([{ match: [{ uri: { regex: '/api/(v1' } }], route: [route('v1')] }])),
      'spec.http[0].match[0].uri.regex',
      'invalid regex',
    ],
    [
      'lookbehind regex (not RE2)',
      () => validateResource(vs([{ match: [{ uri: { regex: '(?<=/api)/v1' } }], route: [route('v1')] }])),
      'spec.http[0].match[0].uri.regex',
      'lookahead and lookbehind',
    ],
    [
      'backreference regex (not RE2)',
      () =>
        validateResource(
          vs([{ match: [{ headers: { 'x-id': { regex: '(a)\\1' } } }], route: [route('v1')] }]),
        ),
      'spec.http[0].match[0].headers["x-id"].regex',
      'backreferences',
    ],
    [
      'bad duration',
      () => validateResource(vs([{ route: [route('v1')], timeout: '5 seconds' }])),
      'spec.http[0].timeout',
      'invalid duration',
    ],
    [
      'zero duration where positive is needed',
      () =>
        validateResource(
          vs([{ route: [route('v1')], fault: { delay: { fixedDelay: '0s', percentage: { value: 1 } } } }]),
        ),
      'spec.http[0].fault.delay.fixedDelay',
      'positive',
    ],
    [
      'two string match kinds',
      () => validateResource(vs([{ match: [{ uri: { exact: '/a', prefix: '/' } }], route: [route('v1')] }])),
      'spec.http[0].match[0].uri',
      'exactly one',
    ],
    [
      'percentage over 100',
      () =>
        validateResource(
          vs([{ route: [route('v1')], mirror: { host: 'x' }, mirrorPercentage: { value: 101 } }]),
        ),
      'spec.http[0].mirrorPercentage.value',
      'must be <= 100',
    ],
    [
      'httpStatus out of range',
      () =>
        validateResource(
          vs([{ route: [route('v1')], fault: { abort: { httpStatus: 600, percentage: { value: 10 } } } }]),
        ),
      'spec.http[0].fault.abort.httpStatus',
      'must be <= 599',
    ],
    [
      'port out of range',
      () =>
        validateResource(vs([{ route: [{ destination: { host: 'reviews', port: { number: 70000 } } }] }])),
      'spec.http[0].route[0].destination.port.number',
      'must be <= 65535',
    ],
    [
      'missing required field',
      () => validateResource(vs([{ route: [{ weight: 100 }] }])),
      'spec.http[0].route[0].destination',
      'required',
    ],
    [
      'enum value',
      () =>
        validateResource({
          apiVersion: 'networking.istio.io/v1',
          kind: 'DestinationRule',
          metadata: { name: 'r' },
          spec: { host: 'r', trafficPolicy: { loadBalancer: { simple: 'FASTEST' } } },
        }),
      'spec.trafficPolicy.loadBalancer.simple',
      'must be one of',
    ],
    [
      'bad name',
      () => validateResource({ ...vs([{ route: [route('v1')] }]), metadata: { name: 'Reviews_V1' } }),
      'metadata.name',
      'DNS-1123 subdomain',
    ],
    [
      'bad namespace',
      () =>
        validateResource({ ...vs([{ route: [route('v1')] }]), metadata: { name: 'r', namespace: 'a.b' } }),
      'metadata.namespace',
      'DNS-1123 label',
    ],
    [
      'cluster-scoped with namespace',
      () =>
        validateResource({
          apiVersion: 'meshfed.io/v1alpha1',
          kind: 'Zone',
          metadata: { name: 'zone-a', namespace: 'default' },
          spec: {},
        }),
      'metadata.namespace',
      'cluster-scoped',
    ],
    [
      'Zone name must be a DNS label',
      () =>
        validateResource({ apiVersion: 'meshfed.io/v1alpha1', kind: 'Zone', metadata: { name: 'zone.a' } }),
      'metadata.name',
      'DNS-1123 label',
    ],
    [
      'unknown top-level field',
      () => validateResource({ ...vs([{ route: [route('v1')] }]), specs: {} }),
      'specs',
      'unknown field',
    ],
    [
      'unknown metadata field',
      () => validateResource({ ...vs([{ route: [route('v1')] }]), metadata: { name: 'r', nmespace: 'x' } }),
      'metadata.nmespace',
      'unknown field',
    ],
    [
      'bad label key',
      () =>
        validateResource({
          ...vs([{ route: [route('v1')] }]),
          metadata: { name: 'r', labels: { '-x': 'y' } },
        }),
      'metadata.labels["-x"]',
      'key must be',
    ],
    [
      'non-string annotation',
      () =>
        validateResource({
          ...vs([{ route: [route('v1')] }]),
          metadata: { name: 'r', annotations: { a: 1 } },
        }),
      'metadata.annotations.a',
      'must be a string',
    ],
    ['no routes', () => validateResource(vs([])), 'spec', 'at least one http, tcp or tls route'],
    [
      'route without action',
      () => validateResource(vs([{ name: 'x' }])),
      'spec.http[0]',
      'one of route, redirect',
    ],
    [
      'duplicate subset names',
      () =>
        validateResource({
          apiVersion: 'networking.istio.io/v1',
          kind: 'DestinationRule',
          metadata: { name: 'r' },
          spec: { host: 'r', subsets: [{ name: 'v1' }, { name: 'v1' }] },
        }),
      'spec.subsets[1].name',
      'duplicate subset name',
    ],
    [
      'distribute and failover together',
      () =>
        validateResource({
          apiVersion: 'networking.istio.io/v1',
          kind: 'DestinationRule',
          metadata: { name: 'r' },
          spec: {
            host: 'r',
            trafficPolicy: {
              loadBalancer: {
                localityLbSetting: {
                  distribute: [{ from: 'a/*', to: { 'a/*': 100 } }],
                  failover: [{ from: 'a', to: 'b' }],
                },
              },
            },
          },
        }),
      'spec.trafficPolicy.loadBalancer.localityLbSetting',
      'at most one of distribute, failover or failoverPriority',
    ],
    [
      'distribute weights not 100',
      () =>
        validateResource({
          apiVersion: 'networking.istio.io/v1',
          kind: 'DestinationRule',
          metadata: { name: 'r' },
          spec: {
            host: 'r',
            trafficPolicy: {
              loadBalancer: {
                localityLbSetting: { distribute: [{ from: 'a/*', to: { 'a/*': 60, 'b/*': 30 } }] },
              },
            },
          },
        }),
      'spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to',
      'sum to 90',
    ],
    [
      'CUSTOM without provider',
      () =>
        validateResource({
          apiVersion: 'security.istio.io/v1',
          kind: 'AuthorizationPolicy',
          metadata: { name: 'ext' },
          spec: { action: 'CUSTOM', rules: [{}] },
        }),
      'spec.provider.name',
      'requires a provider',
    ],
    [
      'AuthorizationPolicy port out of range',
      () =>
        validateResource({
          apiVersion: 'security.istio.io/v1',
          kind: 'AuthorizationPolicy',
          metadata: { name: 'p' },
          spec: { rules: [{ to: [{ operation: { ports: ['99999'] } }] }] },
        }),
      'spec.rules[0].to[0].operation.ports[0]',
      '1..65535',
    ],
    [
      'portLevelMtls without selector',
      () =>
        validateResource({
          apiVersion: 'security.istio.io/v1',
          kind: 'PeerAuthentication',
          metadata: { name: 'p' },
          spec: { portLevelMtls: { '8080': { mode: 'DISABLE' } } },
        }),
      'spec.portLevelMtls',
      'requires a selector',
    ],
    [
      'WorkloadEntry without address or network',
      () =>
        validateResource({
          apiVersion: 'networking.istio.io/v1',
          kind: 'WorkloadEntry',
          metadata: { name: 'vm1' },
          spec: { serviceAccount: 'sa' },
        }),
      'spec.address',
      'required unless network',
    ],
    [
      'WorkloadEntry with an address that is neither IP nor DNS name',
      () =>
        validateResource({
          apiVersion: 'networking.istio.io/v1',
          kind: 'WorkloadEntry',
          metadata: { name: 'vm1' },
          spec: { address: '::::' },
        }),
      'spec.address',
      '"::::" is not an IP address, a DNS name or unix:///path',
    ],
    [
      'ServiceEntry endpoint with a malformed address',
      () =>
        validateResource({
          apiVersion: 'networking.istio.io/v1',
          kind: 'ServiceEntry',
          metadata: { name: 'ext' },
          spec: { hosts: ['ext.example.com'], endpoints: [{ address: 'a b' }] },
        }),
      'spec.endpoints[0].address',
      'is not an IP address',
    ],
    [
      'WorkloadGroup without template',
      () =>
        validateResource({
          apiVersion: 'networking.istio.io/v1',
          kind: 'WorkloadGroup',
          metadata: { name: 'wg' },
          spec: { metadata: { labels: { app: 'x' } } },
        }),
      'spec.template',
      'required',
    ],
  ];

  it.each(cases)('%s', (_name, fn, field, message) => {
    const err = refusal(fn);
    expect(err.code).toBe(ErrorCodes.VALIDATION);
    expect(err.field).toBe(field);
    expect(err.message).toContain(`${field}: `);
    expect(err.message).toContain(message);
  });

  it('takes a workload address as an IP (a zone suffix included), a DNS name or a Unix socket', () => {
    for (const address of [
      '10.0.0.5',
      'fe80::1%eth0',
      '2001:db8::7',
      'VM-1.Example.com',
      'unix:///run/app.sock',
    ]) {
      expect(() =>
        validateResource({
          apiVersion: 'networking.istio.io/v1',
          kind: 'WorkloadEntry',
          metadata: { name: 'vm1' },
          spec: { address },
        }),
      ).not.toThrow();
    }
  });

  it('refuses an unknown kind with UNKNOWN_KIND naming what is accepted', () => {
    const err = refusal(() => validateResource({ ...vs([]), kind: 'VirtualServise' }));
    expect(err.code).toBe(ErrorCodes.UNKNOWN_KIND);
    expect(err.message).toContain('VirtualServise');
    expect(err.message).toContain('DestinationRule');
    const wrongGroup = refusal(() => validateResource({ ...vs([]), apiVersion: 'security.istio.io/v1' }));
    expect(wrongGroup.code).toBe(ErrorCodes.UNKNOWN_KIND);
    expect(wrongGroup.message).toContain('networking.istio.io');
  });

  it('refuses what is not a resource', () => {
    for (const input of [null, 'x', 3, [], { kind: 'VirtualService' }, { apiVersion: 'v1', kind: 5 }]) {
      expect(refusal(() => validateResource(input)).code).toBe(ErrorCodes.VALIDATION);
    }
    const noMeta = refusal(() =>
      validateResource({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService' }),
    );
    expect(noMeta.field).toBe('metadata');
  });

  it('reports the field of a bad duration in a DestinationRule', () => {
    const err = refusal(() =>
      validateYaml(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    outlierDetection:
      interval: 1x
`),
    );
    expect(err.field).toBe('spec.trafficPolicy.outlierDetection.interval');
  });
});

describe('warnings', () => {
  it('warns when failover has no outlierDetection to trigger it', () => {
    const { warnings } = validateYaml(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: helloworld}
spec:
  host: helloworld
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        failover: [{from: region1, to: region2}]
`);
    expect(warnings).toEqual([
      'spec.trafficPolicy.loadBalancer.localityLbSetting.failover: without outlierDetection, meshfed fails over only when endpoints turn unhealthy (readiness, or zone health reported through KDS), not when they answer with errors; add outlierDetection to fail over on errors too',
    ]);
  });

  it('warns about failoverPriority without outlierDetection, and rules under enabled: false', () => {
    const dr = (setting: string, outlier = '') =>
      validateYaml(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: helloworld}
spec:
  host: helloworld
  trafficPolicy:
    ${outlier}
    loadBalancer:
      localityLbSetting: ${setting}
`).warnings;
    expect(dr('{failoverPriority: [topology.istio.io/network=n1]}')).toEqual([
      expect.stringMatching(
        /^spec\.trafficPolicy\.loadBalancer\.localityLbSetting\.failoverPriority: without outlierDetection/,
      ),
    ]);
    expect(
      dr('{failover: [{from: zone-a, to: zone-b}]}', 'outlierDetection: {consecutive5xxErrors: 3}'),
    ).toEqual([]);
    expect(dr('{enabled: false, failover: [{from: zone-a, to: zone-b}]}')).toEqual([
      'spec.trafficPolicy.loadBalancer.localityLbSetting.failover: enabled is false, so locality load balancing is off and these rules never apply (traffic is spread over every zone)',
    ]);
  });

  it('refuses a failoverPriority entry with an empty label or value', () => {
    let err: unknown;
    try {
      validateYaml(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: helloworld}
spec:
  host: helloworld
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3}
    loadBalancer:
      localityLbSetting:
        failoverPriority: [topology.istio.io/network=network1, "topology.istio.io/cluster="]
`);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({
      field: 'spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[1]',
    });
    expect(String(err)).toContain('write label or label=value');
  });

  it('checks Mesh pinnedServices entries', () => {
    const mesh = (pinned: string) =>
      validateYaml(`
apiVersion: meshfed.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec:
  routing: {pinToZone: false, pinnedServices: ${pinned}}
`);
    expect(mesh('[payments.bank, "*.vault", ledger.bank.svc.cluster.local]').resource.spec).toMatchObject({
      routing: {
        preferLocalZone: true,
        pinnedServices: ['payments.bank', '*.vault', 'ledger.bank.svc.cluster.local'],
      },
    });
    let err: unknown;
    try {
      mesh('[payments.bank, payments]');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ field: 'spec.routing.pinnedServices[1]' });
    expect(String(err)).toContain('write name.namespace');
  });

  it('accepts a DENY policy without rules (it matches nothing)', () => {
    const { resource, warnings } = validateResource({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'deny-none' },
      spec: { action: 'DENY' },
    });
    expect(resource.spec).toEqual({ action: 'DENY' });
    expect(warnings).toEqual([]);
  });
});

describe('deprecated fields', () => {
  it('maps LEAST_CONN and consecutiveErrors, with warnings', () => {
    const { resource, warnings } = validateYaml(`
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
    outlierDetection: {consecutiveErrors: 7, interval: 5m}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: LEAST_CONN}
`);
    expect(resource.spec).toEqual({
      host: 'reviews',
      trafficPolicy: {
        loadBalancer: { simple: 'LEAST_REQUEST' },
        outlierDetection: { consecutive5xxErrors: 7, interval: '5m' },
      },
      subsets: [
        {
          name: 'v1',
          labels: { version: 'v1' },
          trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } },
        },
      ],
    });
    expect(warnings).toEqual([
      'spec.trafficPolicy.loadBalancer.simple: LEAST_CONN is deprecated; mapped to LEAST_REQUEST',
      'spec.trafficPolicy.outlierDetection.consecutiveErrors is deprecated; mapped to consecutive5xxErrors',
      'spec.subsets[0].trafficPolicy.loadBalancer.simple: LEAST_CONN is deprecated; mapped to LEAST_REQUEST',
    ]);
  });

  it('maps fault percent and mirror_percent / mirrorPercent', () => {
    const { resource, warnings } = validateResource(
      vs([
        {
          route: [route('v1')],
          fault: {
            delay: { fixedDelay: '5s', percent: 10 },
            abort: { httpStatus: 503, percentage: { value: 1 } },
          },
          mirror: { host: 'reviews', subset: 'v2' },
          mirror_percent: 25,
        },
        { route: [route('v1')], mirror: { host: 'reviews', subset: 'v2' }, mirrorPercent: 40 },
      ]),
    );
    expect(resource.spec.http).toEqual([
      {
        route: [route('v1')],
        fault: {
          delay: { fixedDelay: '5s', percentage: { value: 10 } },
          abort: { httpStatus: 503, percentage: { value: 1 } },
        },
        mirror: { host: 'reviews', subset: 'v2' },
        mirrorPercentage: { value: 25 },
      },
      { route: [route('v1')], mirror: { host: 'reviews', subset: 'v2' }, mirrorPercentage: { value: 40 } },
    ]);
    expect(warnings).toEqual([
      'spec.http[0].fault.delay.percent is deprecated; mapped to spec.http[0].fault.delay.percentage.value',
      'spec.http[0].mirror_percent is deprecated; mapped to spec.http[0].mirrorPercentage.value',
      'spec.http[1].mirrorPercent is deprecated; mapped to spec.http[1].mirrorPercentage.value',
    ]);
  });

  it('maps corsPolicy.allowOrigin to allowOrigins', () => {
    const { resource, warnings } = validateResource(
      vs([{ route: [route('v1')], corsPolicy: { allowOrigin: ['https://a.example'], maxAge: '24h' } }]),
    );
    expect((resource.spec.http as Array<Record<string, unknown>>)[0]?.corsPolicy).toEqual({
      allowOrigins: [{ exact: 'https://a.example' }],
      maxAge: '24h',
    });
    expect(warnings).toHaveLength(1);
  });

  it('drops server-populated metadata with a warning', () => {
    const { resource, warnings } = validateResource({
      ...vs([{ route: [route('v1')] }]),
      metadata: { name: 'r', managedFields: [{}], uid: 'abc', resourceVersion: '7' },
    });
    expect(resource.metadata).toEqual({ name: 'r', namespace: 'default', uid: 'abc', resourceVersion: '7' });
    expect(warnings).toEqual(['metadata.managedFields is ignored by meshfed']);
  });
});

describe('Mesh trust domain', () => {
  const mesh = (trustDomain: unknown): Record<string, unknown> => ({
    apiVersion: 'meshfed.io/v1alpha1',
    kind: 'Mesh',
    metadata: { name: 'default' },
    spec: { trustDomain },
  });

  it.each(['example.org', 'prod_corp-1.internal', 'a'.repeat(255)])('accepts %s', (trustDomain) => {
    expect(validateResource(mesh(trustDomain)).resource.spec.trustDomain).toBe(trustDomain);
  });

  it.each(['', 'Cluster.Local', 'spiffe://cluster.local', 'cluster.local/ns', 'td:8443', 'a'.repeat(256)])(
    'refuses %j as a VALIDATION error on spec.trustDomain',
    (trustDomain) => {
      const err = refusal(() => validateResource(mesh(trustDomain)));
      expect(err.code).toBe(ErrorCodes.VALIDATION);
      expect(err.field).toBe('spec.trustDomain');
      expect(err.httpStatus).toBe(422);
      expect(err.message).toContain('invalid trust domain');
    },
  );
});
