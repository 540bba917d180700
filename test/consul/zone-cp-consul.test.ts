/**
 * A zone control plane discovering its workloads from Consul: services
 * registered in the (fake) Consul catalog appear in the zone's inventory
 * with their health, follow check changes, and their problems show in the
 * zone's `/inspect/errors`.
 */

import { afterEach, describe, expect, it } from '@jest/globals';

import type { ServiceInventory, ZoneInventory } from '../../core/mesh/inventory.js';
// Registers the 'consul' source (the zone CP loads its built-in sources the same way).
import '../../zone-cp/discovery/discovery-consul.js';
import { FakeConsul } from '../common/fake-consul.js';
import { http } from '../common/http.js';
import { waitFor } from '../common/wait.js';
import { startTestZoneCp } from '../common/zone-cp.js';
import type { TestZoneCp } from '../common/zone-cp.js';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function inventory(zone: TestZoneCp): Promise<ServiceInventory | undefined> {
  const answer = await http(`${zone.cp.restUrl}/inspect/inventory`, { token: zone.admin });
  expect(answer.status).toBe(200);
  return (answer.json as ZoneInventory).services.find((s) => s.name === 'billing' && s.namespace === 'shop');
}

function healthy(svc: ServiceInventory | undefined): number {
  return (svc?.endpointGroups ?? []).reduce((n, g) => n + g.healthy, 0);
}

describe('zone CP with Consul discovery', () => {
  it('reports Consul services with their health in its inventory, and Consul problems in /inspect/errors', async () => {
    const consul = await FakeConsul.start();
    closers.push(() => consul.close());
    for (const n of [1, 2]) {
      consul.register({
        Node: `billing-vm-${n}`,
        Address: `10.0.0.${n}`,
        Service: {
          ID: `billing-${n}`,
          Service: 'billing',
          Port: 8080,
          Tags: ['mesh', `version=v${n}`],
          Meta: { 'meshfed-namespace': 'shop', 'meshfed-inbound-port': '15006' },
        },
        Check: { CheckID: `billing-${n}-http`, ServiceID: `billing-${n}`, Status: 'passing' },
      });
    }
    const zone = await startTestZoneCp({
      discovery: [{ name: 'consul', options: { address: consul.url, tagFilter: ['mesh'], debounceMs: 5 } }],
    });
    closers.push(() => zone.close());

    const billing = await waitFor(
      async () => {
        const svc = await inventory(zone);
        return svc !== undefined && healthy(svc) === 2 ? svc : undefined;
      },
      { what: 'billing in the inventory' },
    );
    expect(billing.ports).toEqual([expect.objectContaining({ port: 8080, protocol: 'http' })]);
    expect(billing.endpointGroups.flatMap((g) => g.identities)).toContain(
      'spiffe://cluster.local/ns/shop/sa/billing',
    );

    consul.setCheckStatus('billing-vm-1', 'billing-1-http', 'critical');
    await waitFor(async () => healthy(await inventory(zone)) === 1, {
      what: 'billing-1 unhealthy in the inventory',
    });

    consul.register({
      Node: 'billing-vm-3',
      Address: '10.0.0.3',
      Service: {
        ID: 'billing-3',
        Service: 'billing',
        Port: 8080,
        Tags: ['mesh'],
        Meta: { 'meshfed-namespace': 'Shop!' },
      },
    });
    const errors = await waitFor(
      async () => {
        const answer = await http(`${zone.cp.restUrl}/inspect/errors`, { token: zone.admin });
        const discovery = (answer.json as { discovery: Array<{ resource: string; reason: string }> })
          .discovery;
        return discovery.find((p) => p.resource === 'Consul/billing/billing-vm-3/billing-3');
      },
      { what: 'the bad registration in /inspect/errors' },
    );
    expect(errors.reason).toMatch(/consul: meshfed-namespace "Shop!" is not a DNS-1123 label/);
  });
});
