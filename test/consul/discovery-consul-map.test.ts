/** The pure mapping from Consul's JSON to the zone model: names, labels, health, malformed entries. */

import { describe, expect, it } from '@jest/globals';

import { isDns1123Label } from '../../core/resource/dns-name.js';
import {
  assembleService,
  endpointName,
  labelsOf,
  mapInstance,
  meshServiceName,
  parseCatalogServices,
  parseHealthEntry,
} from '../../zone-cp/discovery/discovery-consul-map.js';
import type {
  ConsulInstance,
  MappedInstance,
  MappingSettings,
} from '../../zone-cp/discovery/discovery-consul-map.js';

const settings: MappingSettings = {
  defaultNamespace: 'default',
  namespaceKey: 'meshfed-namespace',
  warningHealthy: true,
};

function entry(overrides: {
  node?: Record<string, unknown>;
  service?: Record<string, unknown>;
  checks?: unknown;
}): unknown {
  return {
    Node: { Node: 'vm-1', Address: '10.0.0.1', Datacenter: 'dc1', ...overrides.node },
    Service: { ID: 'web-1', Service: 'web', Port: 8080, Tags: [], Meta: null, ...overrides.service },
    Checks: overrides.checks ?? [],
  };
}

function instance(overrides: Parameters<typeof entry>[0] = {}): ConsulInstance {
  const parsed = parseHealthEntry(entry(overrides), 'web', 0);
  if ('reason' in parsed) throw new Error(parsed.reason);
  return parsed.value;
}

function mapped(overrides: Parameters<typeof entry>[0] = {}): MappedInstance {
  const m = mapInstance(instance(overrides), 'Consul/web/x', 'web', settings);
  if ('reason' in m) throw new Error(m.reason);
  return m.value;
}

describe('Consul mapping', () => {
  it('names endpoints <service>-<node>-<id>, made DNS-1123 with a hash only when needed', () => {
    expect(endpointName('web', 'vm-1', 'web-1')).toBe('web-vm-1-web-1');
    const cleaned = endpointName('web', 'Node_1.example.com', 'web:8080');
    expect(cleaned).toMatch(/^web-node-1-example-com-web-8080-[0-9a-f]{8}$/);
    // Different originals that clean to the same text keep different names.
    expect(endpointName('web', 'node.1', 'a')).not.toBe(endpointName('web', 'node_1', 'a'));
    const long = endpointName('web', 'n'.repeat(80), 'id');
    expect(long.length).toBeLessThanOrEqual(63);
    for (const name of [cleaned, long, endpointName('-', '_', '.')]) expect(isDns1123Label(name)).toBe(true);
  });

  it('refuses service names that cannot be mesh services', () => {
    expect(meshServiceName('Web')).toEqual({ value: 'web' });
    expect(meshServiceName('web_api')).toHaveProperty('reason');
    expect(meshServiceName('web.api')).toHaveProperty('reason');
  });

  it('takes labels from k=v tags and meta (meta wins), leaving out control keys and non-labels', () => {
    const inst = instance({
      service: {
        Tags: ['primary', 'version=v1', 'tier=web', 'meshfed-namespace=shop', 'bad key=x', 'k=has space'],
        Meta: { version: 'v2', 'meshfed-protocol': 'grpc', team: 'payments' },
      },
    });
    expect(labelsOf(inst)).toEqual({ version: 'v2', tier: 'web', team: 'payments' });
  });

  it('derives health from the worst check, node checks included', () => {
    const checks = (statuses: string[]): unknown =>
      statuses.map((s, i) => ({ CheckID: `c${i}`, Name: `check ${i}`, Status: s, Output: `out ${i}` }));
    expect(instance({ checks: checks(['passing', 'passing']) }).status).toBe('passing');
    expect(instance({ checks: checks(['passing', 'warning']) }).status).toBe('warning');
    const critical = instance({ checks: checks(['warning', 'critical', 'maintenance']) });
    expect(critical.status).toBe('critical');
    expect(critical.failing).toEqual([
      'check 0: warning: out 0',
      'check 1: critical: out 1',
      'check 2: critical: out 2',
    ]);
    expect(instance({ checks: null }).status).toBe('passing');
    expect(mapped({ checks: checks(['critical']) }).healthy).toBe(false);
  });

  it('reports malformed entries with the reason instead of throwing', () => {
    const reasons: Array<[unknown, string]> = [
      [null, 'the entry is not an object'],
      [{ Node: {}, Service: {} }, 'Node.Node is missing'],
      [entry({ service: { ID: '' } }), 'Service.ID is missing'],
      [entry({ service: { Service: 'api' } }), 'Service.Service is "api", not "web"'],
      [entry({ service: { Port: 0 } }), 'Service.Port is 0: the instance registered no port'],
      [entry({ service: { Port: 70000 } }), 'Service.Port is not a port number'],
      [entry({ node: { Address: '' } }), 'neither Service.Address nor Node.Address is set'],
      [entry({ service: { Tags: 'a,b' } }), 'Service.Tags is not a list of strings'],
      [entry({ service: { Meta: { a: 1 } } }), 'Service.Meta.a is not a string'],
      [entry({ service: { Weights: { Passing: -1 } } }), 'Service.Weights.Passing is not a count'],
      [entry({ checks: [{ CheckID: 'x' }] }), 'Checks[0].Status is missing'],
    ];
    for (const [raw, reason] of reasons) {
      const parsed = parseHealthEntry(raw, 'web', 3);
      expect('reason' in parsed ? parsed.reason : 'parsed').toBe(reason);
    }
    expect(parseHealthEntry(null, 'web', 3).resource).toBe('Consul/web/#3');
    expect(parseHealthEntry(entry({ service: { Port: 0 } }), 'web', 3).resource).toBe(
      'Consul/web/vm-1/web-1',
    );
    expect(() => parseCatalogServices(['web'])).toThrow(/not a JSON object/);
    expect(() => parseCatalogServices({ web: 'a' })).toThrow(/tags of service "web"/);
    expect(parseCatalogServices({ web: null, db: ['x'] })).toEqual(
      new Map([
        ['web', []],
        ['db', ['x']],
      ]),
    );
  });

  it('prefers the service address over the node address', () => {
    expect(instance({ service: { Address: '192.168.1.5' } }).address).toBe('192.168.1.5');
    expect(instance().address).toBe('10.0.0.1');
  });

  it('gives colliding names distinct hashes and splits namespaces into separate services', () => {
    const a = mapped({ node: { Node: 'b-c' }, service: { ID: 'd' } });
    const b = mapped({ node: { Node: 'b' }, service: { ID: 'c-d' } });
    expect(a.name).toBe(b.name);
    const shop = mapped({
      node: { Node: 'vm-9' },
      service: { ID: 'web-9', Meta: { 'meshfed-namespace': 'shop' } },
    });
    const view = assembleService('web', [a, b, shop]);
    const names = view.workloads.map((w) => w.name);
    expect(new Set(names).size).toBe(3);
    expect(view.services.map((s) => `${s.namespace}:${s.endpoints.length}`)).toEqual(['default:2', 'shop:1']);
  });
});
