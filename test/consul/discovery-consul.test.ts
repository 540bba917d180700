/**
 * The Consul discovery source end to end: the real `consul` client against
 * the fake Consul, services registered as Consul's catalog API registers
 * them. Blocking waits are long (5 min) so that every change a test sees
 * must have come through a blocked query waking, not a poll timing out.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, describe, expect, it } from '@jest/globals';

import { ErrorCodes, isMeshError } from '../../core/errors.js';
import { validateResource } from '../../core/resource/validate.js';
import { createDiscoverySource } from '../../zone-cp/discovery/discovery.js';
import type { LocalService, WorkloadEndpoint } from '../../zone-cp/discovery/discovery.js';
import { ConsulSource } from '../../zone-cp/discovery/discovery-consul.js';
import type { ConsulSourceOptions } from '../../zone-cp/discovery/discovery-consul.js';
import { resolveConsulSettings } from '../../zone-cp/discovery/discovery-consul-options.js';
import { FakeConsul } from '../common/fake-consul.js';
import type { FakeConsulOptions } from '../common/fake-consul.js';
import { freePort } from '../../core/free-port.js';
import { waitFor } from '../common/wait.js';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function startFake(options: FakeConsulOptions = {}): Promise<FakeConsul> {
  const fake = await FakeConsul.start(options);
  closers.push(() => fake.close());
  return fake;
}

interface Harness {
  source: ConsulSource;
  notifications: () => number;
}

async function startSource(fake: { url: string }, options: ConsulSourceOptions = {}): Promise<Harness> {
  const source = new ConsulSource({
    address: fake.url,
    pollWait: '5m',
    debounceMs: 5,
    retryInitialMs: 20,
    retryMaxMs: 200,
    startTimeoutMs: 5000,
    ...options,
  });
  closers.push(() => source.close());
  let count = 0;
  source.onChange(() => count++);
  await source.start();
  return { source, notifications: () => count };
}

function register(
  fake: FakeConsul,
  node: string,
  id: string,
  service: Record<string, unknown> = {},
  checks: Array<Record<string, unknown>> = [
    { CheckID: `${id}-check`, Name: `check ${id}`, ServiceID: id, Status: 'passing' },
  ],
  nodeAddress = `10.0.0.${node.replace(/\D/g, '') || '1'}`,
): void {
  fake.register({
    Node: node,
    Address: nodeAddress,
    Service: { ID: id, Service: 'web', Port: 8080, ...service },
    Checks: [...checks, { CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing' }],
  });
}

function service(source: ConsulSource, name = 'web', namespace = 'default'): LocalService | undefined {
  return source.services().find((s) => s.name === name && s.namespace === namespace);
}

function endpoint(source: ConsulSource, name: string): WorkloadEndpoint | undefined {
  return source.workloads().find((w) => w.name === name);
}

function problem(source: ConsulSource, resource: string): string | undefined {
  return source.errors().find((p) => p.resource === resource)?.reason;
}

describe('Consul discovery: import', () => {
  it('maps services and instances to LocalServices, endpoints and valid WorkloadEntries', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'web-1', {
      Tags: ['v1', 'version=v1', 'mesh'],
      Meta: { team: 'shop', 'meshfed-protocol': 'http' },
    });
    register(fake, 'vm-2', 'web-2', {
      Address: '10.0.1.2',
      Tags: ['version=v2', 'mesh'],
      Meta: { 'meshfed-inbound-port': '15006', 'meshfed-service-account': 'web-sa' },
      Weights: { Passing: 5, Warning: 1 },
    });
    const { source } = await startSource(fake);

    // The servers' own `consul` service is not imported.
    expect(source.services().map((s) => `${s.namespace}/${s.name}`)).toEqual(['default/web']);
    const web = service(source);
    expect(web).toMatchObject({
      ports: [{ name: 'http', port: 8080, targetPort: 'http', protocol: 'http' }],
      exportTo: ['*'],
      source: 'consul',
    });
    expect(web?.endpoints.map((e) => e.name)).toEqual(['web-vm-1-web-1', 'web-vm-2-web-2']);
    expect(endpoint(source, 'web-vm-1-web-1')).toEqual({
      name: 'web-vm-1-web-1',
      namespace: 'default',
      address: '10.0.0.1',
      inboundPort: 8080,
      labels: { version: 'v1', team: 'shop' },
      serviceAccount: 'web',
      locality: 'dc1',
      weight: 1,
      healthy: true,
      sidecar: false,
      ports: { http: 8080 },
      source: 'consul',
      annotations: {
        'meshfed.io/consul-service-id': 'web-1',
        'meshfed.io/consul-node': 'vm-1',
        'meshfed.io/consul-datacenter': 'dc1',
      },
    });
    // A VM already running the meshfed sidecar: mTLS at its inbound port, its own identity.
    expect(endpoint(source, 'web-vm-2-web-2')).toMatchObject({
      address: '10.0.1.2',
      sidecar: true,
      inboundPort: 15006,
      serviceAccount: 'web-sa',
      weight: 5,
      labels: { version: 'v2' },
    });

    const entries = source.workloadEntries();
    expect(entries).toHaveLength(2);
    for (const entry of entries) expect(() => validateResource(entry)).not.toThrow();
    expect(entries[1]).toMatchObject({
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: {
        name: 'web-vm-2-web-2',
        namespace: 'default',
        labels: { version: 'v2', 'meshfed.io/service': 'web' },
        annotations: { 'meshfed.io/inbound-port': '15006', 'meshfed.io/service-ports': 'http=8080' },
      },
      spec: {
        address: '10.0.1.2',
        ports: { http: 8080 },
        serviceAccount: 'web-sa',
        locality: 'dc1',
        weight: 5,
      },
      status: { conditions: [{ type: 'Healthy', status: 'True', reason: 'ConsulPassing' }] },
    });
    expect(entries[0]?.metadata.annotations?.['meshfed.io/sidecar']).toBe('false');
    expect(source.errors()).toEqual([]);
    expect(source.status()).toMatchObject({ synced: true, services: [{ name: 'web', instances: 2 }] });
  });

  it('is created through the discovery registry with the options the zone CP adds', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'web-1');
    const source = createDiscoverySource('consul', {
      address: fake.url,
      zone: 'zone-a',
      store: {},
      debounceMs: 5,
    } satisfies ConsulSourceOptions);
    closers.push(() => source.close());
    expect(source.name).toBe('consul');
    await source.start();
    expect(source.workloads().map((w) => w.name)).toEqual(['web-vm-1-web-1']);
  });

  it('takes protocol, service port and exportTo from meta or tags, and reports instances that disagree', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'api-1', {
      Service: 'api',
      Port: 9001,
      Tags: ['meshfed-protocol=grpc'],
      Meta: { 'meshfed-export-to': '.' },
    });
    register(fake, 'vm-2', 'api-2', {
      Service: 'api',
      Port: 9002,
      Meta: { 'meshfed-protocol': 'tcp', 'meshfed-service-port': '9000' },
    });
    const { source } = await startSource(fake);
    const api = service(source, 'api');
    expect(api?.ports).toEqual([{ name: 'grpc', port: 9000, targetPort: 'grpc', protocol: 'grpc' }]);
    expect(api?.exportTo).toEqual(['.']);
    // Each instance keeps its own port behind the service port.
    expect(api?.endpoints.map((e) => e.ports)).toEqual([{ grpc: 9001 }, { grpc: 9002 }]);
    expect(problem(source, 'Consul/api/vm-2/api-2')).toMatch(/meshfed-protocol "tcp" disagrees with "grpc"/);
  });

  it('refuses a service whose name is not a DNS-1123 label, and reports bad control values', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'x-1', { Service: 'Billing_API' });
    register(fake, 'vm-1', 'web-1', { Meta: { 'meshfed-inbound-port': 'sidecar' } });
    register(fake, 'vm-2', 'web-2');
    const { source } = await startSource(fake);
    expect(problem(source, 'Consul/Billing_API')).toMatch(/not a DNS-1123 label/);
    expect(problem(source, 'Consul/web/vm-1/web-1')).toMatch(
      /meshfed-inbound-port "sidecar" is not a port number/,
    );
    expect(service(source)?.endpoints.map((e) => e.name)).toEqual(['web-vm-2-web-2']);
    // Fixing the registration clears the problem and brings the instance in.
    register(fake, 'vm-1', 'web-1', { Meta: { 'meshfed-inbound-port': '15006' } });
    await waitFor(() => service(source)?.endpoints.length === 2, { what: 'the fixed instance' });
    expect(problem(source, 'Consul/web/vm-1/web-1')).toBeUndefined();
  });

  it('makes node and service IDs that are not DNS-1123 into distinct valid names', async () => {
    const fake = await startFake();
    register(fake, 'ip-10-0-0-7.ec2.internal', 'web:8080');
    register(fake, 'ip-10-0-0-7.ec2.internal', 'web:8081', { Port: 8081 });
    const { source } = await startSource(fake);
    const names = source.workloads().map((w) => w.name);
    expect(names).toHaveLength(2);
    expect(new Set(names).size).toBe(2);
    for (const name of names) expect(name).toMatch(/^web-ip-10-0-0-7-ec2-internal-web-808[01]-[0-9a-f]{8}$/);
  });
});

describe('Consul discovery: following changes', () => {
  it('marks an endpoint unhealthy within one blocking round when its check goes critical', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'web-1');
    register(fake, 'vm-2', 'web-2');
    const { source, notifications } = await startSource(fake);
    expect(endpoint(source, 'web-vm-1-web-1')?.healthy).toBe(true);
    await waitFor(() => fake.blockedQueries() === 2, { what: 'the catalog and web queries to block' });
    const before = notifications();
    const answered = fake.requests().length;

    fake.setCheckStatus('vm-1', 'web-1-check', 'critical', 'connection refused');
    await waitFor(() => endpoint(source, 'web-vm-1-web-1')?.healthy === false, { what: 'web-1 unhealthy' });
    // The held query answered it: no poll or retry came in between.
    const delivered = fake
      .requests()
      .slice(answered)
      .find((r) => r.path === '/v1/health/service/web');
    expect(delivered).toMatchObject({ status: 200, blocking: true });
    expect(notifications()).toBe(before + 1);
    expect(endpoint(source, 'web-vm-2-web-2')?.healthy).toBe(true);
    const entry = source.workloadEntries().find((e) => e.metadata.name === 'web-vm-1-web-1');
    expect(entry?.status).toEqual({
      conditions: [
        {
          type: 'Healthy',
          status: 'False',
          reason: 'ConsulCritical',
          message: 'check web-1: critical: connection refused',
        },
      ],
    });
    expect(entry?.metadata.annotations?.['meshfed.io/healthy']).toBe('false');

    // A failing node check takes down every instance on the node.
    fake.setCheckStatus('vm-2', 'serfHealth', 'critical');
    await waitFor(() => endpoint(source, 'web-vm-2-web-2')?.healthy === false, { what: 'web-2 unhealthy' });
    fake.setCheckStatus('vm-2', 'serfHealth', 'passing');
    await waitFor(() => endpoint(source, 'web-vm-2-web-2')?.healthy === true, {
      what: 'web-2 healthy again',
    });
  });

  it('treats warning as healthy by default, unhealthy when configured, and uses the warning weight', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'web-1', { Weights: { Passing: 10, Warning: 2 } }, [
      { CheckID: 'web-1-check', ServiceID: 'web-1', Status: 'warning' },
    ]);
    register(fake, 'vm-2', 'web-2', { Weights: { Passing: 10, Warning: 0 } }, [
      { CheckID: 'web-2-check', ServiceID: 'web-2', Status: 'warning' },
    ]);
    const lenient = (await startSource(fake)).source;
    expect(endpoint(lenient, 'web-vm-1-web-1')).toMatchObject({ healthy: true, weight: 2 });
    // Weights.Warning 0 is Consul's way to say "no traffic while warning".
    expect(endpoint(lenient, 'web-vm-2-web-2')?.healthy).toBe(false);
    const strict = (await startSource(fake, { warningHealthy: false })).source;
    expect(endpoint(strict, 'web-vm-1-web-1')?.healthy).toBe(false);
  });

  it('removes instances, services and whole nodes that leave Consul', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'web-1');
    register(fake, 'vm-2', 'web-2');
    register(fake, 'vm-2', 'db-1', { Service: 'db', Port: 5432 });
    const { source } = await startSource(fake);
    expect(
      source
        .services()
        .map((s) => s.name)
        .sort(),
    ).toEqual(['db', 'web']);

    fake.deregister({ Node: 'vm-1', ServiceID: 'web-1' });
    await waitFor(() => endpoint(source, 'web-vm-1-web-1') === undefined, { what: 'web-1 gone' });
    expect(service(source)?.endpoints.map((e) => e.name)).toEqual(['web-vm-2-web-2']);

    fake.deregister({ Node: 'vm-2' });
    await waitFor(() => source.services().length === 0, { what: 'every service gone' });
    expect(source.workloads()).toEqual([]);
    expect(source.workloadEntries()).toEqual([]);
    // The source stops following services that left the catalog.
    await waitFor(() => source.status().services.length === 0, { what: 'the service queries to stop' });

    register(fake, 'vm-3', 'web-3');
    await waitFor(() => endpoint(source, 'web-vm-3-web-3'), { what: 'a new service' });
  });

  it('imports only instances with every filter tag', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'web-1', { Tags: ['mesh', 'prod'] });
    register(fake, 'vm-2', 'web-2', { Tags: ['mesh'] });
    register(fake, 'vm-3', 'db-1', { Service: 'db', Tags: ['prod'] });
    const { source } = await startSource(fake, { tagFilter: ['mesh', 'prod'] });
    expect(source.workloads().map((w) => w.name)).toEqual(['web-vm-1-web-1']);
    // A service none of whose instances carries the tags is not even followed.
    expect(source.status().services.map((s) => s.name)).toEqual(['web']);
    register(fake, 'vm-2', 'web-2', { Tags: ['mesh', 'prod'] });
    await waitFor(() => source.workloads().length === 2, { what: 'web-2 tagged' });
    expect(source.errors()).toEqual([]);
  });

  it('maps namespaces from meta or tags, with a configurable key and default', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'web-1', { Meta: { 'meshfed-namespace': 'shop' } });
    register(fake, 'vm-2', 'web-2', { Tags: ['meshfed-namespace=billing'] });
    register(fake, 'vm-3', 'web-3');
    register(fake, 'vm-4', 'web-4', { Meta: { team: 'payments' } });
    register(fake, 'vm-5', 'web-5', { Meta: { 'meshfed-namespace': 'Not_Valid' } });
    const byMeta = (await startSource(fake, { namespaceMapping: { default: 'legacy' } })).source;
    expect(byMeta.services().map((s) => `${s.namespace}/${s.name}:${s.endpoints.length}`)).toEqual([
      'billing/web:1',
      'legacy/web:2',
      'shop/web:1',
    ]);
    expect(problem(byMeta, 'Consul/web/vm-5/web-5')).toMatch(
      /meshfed-namespace "Not_Valid" is not a DNS-1123 label/,
    );

    const byTeam = (await startSource(fake, { namespaceMapping: { key: 'team' } })).source;
    expect(byTeam.workloads().map((w) => `${w.namespace}/${w.name}`)).toEqual([
      'default/web-vm-1-web-1',
      'default/web-vm-2-web-2',
      'default/web-vm-3-web-3',
      'default/web-vm-5-web-5',
      'payments/web-vm-4-web-4',
    ]);
  });
});

describe('Consul discovery: failures', () => {
  it('keeps the last view while Consul is unreachable, reports it, and recovers when it returns', async () => {
    // A port outside the ephemeral range: while Consul is away, no outgoing socket can take it.
    const port = await freePort();
    const fake = await startFake({ port });
    register(fake, 'vm-1', 'web-1');
    const { source } = await startSource(fake);
    await fake.close();

    // The held query ends first with a reset connection; the retries then find nothing listening.
    await waitFor(() => /ECONNREFUSED/.test(problem(source, 'ConsulCatalog/services') ?? ''), {
      what: 'the outage to be reported',
    });
    expect(problem(source, 'ConsulCatalog/services')).toMatch(
      /ECONNREFUSED.*serving the last view \(1 services\)/,
    );
    expect(source.status().catalog.lastError).toMatch(/ECONNREFUSED/);
    expect(endpoint(source, 'web-vm-1-web-1')?.healthy).toBe(true);

    // Consul comes back on the same address, a new server without the old index.
    const back = await startFake({ port });
    register(back, 'vm-1', 'web-1');
    register(back, 'vm-2', 'web-2');
    await waitFor(() => source.workloads().length === 2, { what: 'the view of the new server' });
    await waitFor(() => source.errors().length === 0, { what: 'the outage to be cleared' });
    expect(source.status().catalog.lastError).toBeUndefined();
  });

  it('follows the index going backwards (a snapshot restore) with a fresh read', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'web-1');
    const snapshot = fake.snapshot();
    register(fake, 'vm-2', 'web-2');
    const { source } = await startSource(fake);
    expect(source.workloads()).toHaveLength(2);
    await waitFor(() => fake.blockedQueries() === 2, { what: 'the queries to block' });
    const answered = fake.requests().length;

    fake.restore(snapshot);
    await waitFor(() => source.workloads().length === 1, { what: 'the restored view' });
    // After seeing the lower index, each query read afresh (index 0) instead of waiting on the old one.
    await waitFor(
      () =>
        ['/v1/catalog/services', '/v1/health/service/web'].every((path) =>
          fake
            .requests()
            .slice(answered)
            .some((r) => r.path === path && !r.blocking),
        ),
      { what: 'fresh reads after the restore' },
    );
    register(fake, 'vm-3', 'web-3');
    await waitFor(() => endpoint(source, 'web-vm-3-web-3'), { what: 'a change after the restore' });
  });

  it('waits on index 1, not 0, when Consul answers index 0', async () => {
    const zero = await startFake();
    register(zero, 'vm-1', 'web-1');
    zero.injectFault({ path: '/v1/catalog/services', index: '0' });
    const { source } = await startSource(zero);
    expect(source.workloads()).toHaveLength(1);
    await waitFor(() => zero.requests().filter((r) => r.path === '/v1/catalog/services').length >= 2, {
      what: 'the second catalog read',
    });
    const [first, second] = zero.requests().filter((r) => r.path === '/v1/catalog/services');
    expect(first?.index).toBe('0');
    expect(second?.query.get('index')).toBe('1');
  });

  it('reports a malformed answer, keeps the last view, and recovers', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'web-1');
    register(fake, 'vm-2', 'web-2');
    const { source } = await startSource(fake);
    await waitFor(() => fake.blockedQueries() === 2, { what: 'the queries to block' });

    // Each fault stays until cleared, so the test sees the source's state while it lasts.
    const faults: Array<[Parameters<FakeConsul['injectFault']>[0], string, RegExp]> = [
      [
        { path: '/v1/health/service/web', body: '{"not": "a list"}' },
        'Consul/web',
        /not a JSON list.*serving its last view \(2 instances\)/,
      ],
      [{ path: '/v1/health/service/web', body: '[{"Node": ' }, 'Consul/web', /JSON/],
      [{ path: '/v1/catalog/services', body: '["web"]' }, 'ConsulCatalog/services', /not a JSON object/],
      [{ path: '/v1/health/service/web', index: null }, 'Consul/web', /no X-Consul-Index/],
      [{ path: '/v1/health/service/web', status: 500, body: 'rpc error' }, 'Consul/web', /rpc error/],
    ];
    for (const [fault, resource, reason] of faults) {
      fake.injectFault({ ...fault, times: Infinity });
      await waitFor(() => problem(source, resource), { what: `${resource} reported` });
      expect(problem(source, resource)).toMatch(reason);
      expect(source.workloads()).toHaveLength(2);
      fake.clearFaults();
      await waitFor(() => problem(source, resource) === undefined, { what: `${resource} recovered` });
    }
    expect(source.errors()).toEqual([]);
  });

  it('skips one malformed instance and keeps the others', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'web-1');
    const { source } = await startSource(fake);
    const good = (await (await fetch(`${fake.url}/v1/health/service/web`)).json()) as unknown[];
    const bad = {
      Node: { Node: 'vm-2', Address: '10.0.0.2' },
      Service: { ID: 'web-2', Service: 'web', Port: 'http' },
      Checks: [],
    };
    fake.injectFault({
      path: '/v1/health/service/web',
      body: JSON.stringify([...good, bad, 'junk']),
      times: Infinity,
    });
    await waitFor(() => problem(source, 'Consul/web/vm-2/web-2'), { what: 'the bad instance reported' });
    expect(problem(source, 'Consul/web/vm-2/web-2')).toMatch(/Service.Port is not a port number/);
    expect(problem(source, 'Consul/web/#2')).toMatch(/not an object/);
    expect(source.workloads().map((w) => w.name)).toEqual(['web-vm-1-web-1']);
  });

  it('reads with an ACL token, and reports a token that is refused or sees nothing', async () => {
    const fake = await startFake({ aclTokens: ['s3cret'] });
    register(fake, 'vm-1', 'web-1');
    expect((await startSource(fake, { token: 's3cret' })).source.workloads()).toHaveLength(1);

    const anonymous = (await startSource(fake)).source;
    expect(anonymous.workloads()).toEqual([]);
    expect(problem(anonymous, 'ConsulCatalog/acl')).toMatch(/filtered the service list by ACLs/);

    const wrong = new ConsulSource({
      address: fake.url,
      token: 'nope',
      startTimeoutMs: 1000,
      retryInitialMs: 20,
    });
    closers.push(() => wrong.close());
    await expect(wrong.start()).rejects.toThrow(/not synced after 1000 ms \(.*ACL not found/);
    expect(problem(wrong, 'ConsulCatalog/services')).toMatch(/ACL not found/);
  });

  it('fails start when Consul is unreachable, then goes live once it answers', async () => {
    const port = await freePort();
    const source = new ConsulSource({
      address: `127.0.0.1:${port}`,
      startTimeoutMs: 1000,
      retryInitialMs: 20,
      retryMaxMs: 100,
      debounceMs: 5,
    });
    closers.push(() => source.close());
    let notified = 0;
    source.onChange(() => notified++);
    const err = await source.start().catch((e: unknown) => e);
    expect(isMeshError(err, ErrorCodes.UNAVAILABLE)).toBe(true);
    expect((err as Error).message).toMatch(
      new RegExp(`Consul at http://127.0.0.1:${port} not synced after 1000 ms \\(.*ECONNREFUSED`),
    );

    const fake = await startFake({ port });
    register(fake, 'vm-1', 'web-1');
    await waitFor(() => source.workloads().length === 1, { what: 'the late sync' });
    // Listeners are told after a short debounce, so the view can be ahead of the notification.
    await waitFor(() => notified > 0, { what: 'listeners to be told of the late sync' });
  });

  it('checks its options up front, naming the bad one', () => {
    const bad: Array<[ConsulSourceOptions, string]> = [
      [{ address: 'ftp://consul:21' }, 'address'],
      [{ address: 'http://consul:8500/v1' }, 'address'],
      [{ pollWait: '20m' }, 'pollWait'],
      [{ pollWait: 'soon' }, 'pollWait'],
      [{ tagFilter: 5 as unknown as string[] }, 'tagFilter'],
      [{ namespaceMapping: { default: 'Shop' } }, 'namespaceMapping.default'],
      [
        { namespaceMapping: { namespace: 'x' } as unknown as { default: string } },
        'namespaceMapping.namespace',
      ],
      [{ warningHealthy: 'yes' as unknown as boolean }, 'warningHealthy'],
      [{ tokenFile: '/nonexistent/consul-token' }, 'tokenFile'],
      [{ caPem: 'x', address: 'http://consul:8500' }, 'caPem'],
    ];
    for (const [options, field] of bad) {
      let caught: unknown;
      try {
        createDiscoverySource('consul', options);
      } catch (err) {
        caught = err;
      }
      expect(isMeshError(caught, ErrorCodes.CONFIG) ? caught.field : caught).toBe(field);
    }
  });

  it("defaults to Consul's own environment variables", () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'consul-env-'));
    try {
      writeFileSync(path.join(dir, 'token'), 'from-file\n');
      writeFileSync(path.join(dir, 'ca.pem'), 'PEM');
      const settings = resolveConsulSettings(
        {},
        {
          CONSUL_HTTP_ADDR: 'consul.service.dc1:8501',
          CONSUL_HTTP_SSL: 'true',
          CONSUL_HTTP_TOKEN: 'from-env',
          CONSUL_HTTP_TOKEN_FILE: path.join(dir, 'token'),
          CONSUL_CACERT: path.join(dir, 'ca.pem'),
        },
      );
      expect([settings.address.href, settings.token, settings.caPem]).toEqual([
        'https://consul.service.dc1:8501/',
        'from-file',
        'PEM',
      ]);
      // Explicit options win over the environment; without either, the local agent.
      expect(
        resolveConsulSettings({ token: 'explicit' }, { CONSUL_HTTP_TOKEN_FILE: path.join(dir, 'token') })
          .token,
      ).toBe('explicit');
      expect(resolveConsulSettings({}, {}).address.href).toBe('http://127.0.0.1:8500/');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('closes idempotently, releasing its blocked queries', async () => {
    const fake = await startFake();
    register(fake, 'vm-1', 'web-1');
    const { source } = await startSource(fake);
    await waitFor(() => fake.blockedQueries() === 2, { what: 'the queries to block' });
    await source.close();
    await source.close();
    await waitFor(() => fake.blockedQueries() === 0, { what: 'the blocked queries to end' });
    await expect(source.start()).resolves.toBeUndefined();
    const closed = new ConsulSource({ address: fake.url });
    await closed.close();
    await expect(closed.start()).rejects.toThrow(/closed/);
  });
});
