/**
 * The zone compiler's side of failover, without a network: remote zones'
 * gateways weighted by the healthy count they report (and unhealthy at 0),
 * data residency enforced at compile time (no remote endpoint in the
 * snapshot) by every way of pinning, and the inspect answer built from
 * the same view.
 */

import { describe, expect, it } from '@jest/globals';
import { createLogger } from '../../core/log.js';
import type { ServiceCatalog } from '../../core/mesh/inventory.js';
import type { EndpointConfig, SidecarSnapshot } from '../../core/mesh/snapshot.js';
import type { StoredResource } from '../../core/resource/resource.js';
import { inspectService } from '../../zone-cp/api/inspect-service-routes.js';
import { ConfigCompiler } from '../../zone-cp/compiler/config-compiler.js';
import type { PolicyKind } from '../../zone-cp/compiler/policy-index.js';
import { storedFromYaml } from '../common/stored-resources.js';
import { service, workload } from '../common/zone-cp.js';

function stored(yaml: string): StoredResource[] {
  return storedFromYaml(yaml, 'shop');
}

function catalog(healthyB: number, totalB = 2): ServiceCatalog {
  return {
    zones: [
      {
        zone: 'zone-b',
        connected: true,
        lastSeen: new Date().toISOString(),
        gateway: { address: '192.0.2.2', port: 15443 },
        services: ['cart', 'ledger'].map((name) => ({
          name,
          namespace: 'shop',
          ports: [{ name: 'http', port: 80, protocol: 'http' as const }],
          endpointGroups: [
            {
              labels: { app: name },
              healthy: healthyB,
              total: totalB,
              identities: [`spiffe://cluster.local/ns/shop/sa/${name}`],
            },
          ],
        })),
      },
    ],
  };
}

function compilerWith(policies: string, remote: ServiceCatalog): ConfigCompiler {
  const objects = stored(policies);
  const services = [
    service('web', 'shop', [workload('web-1', 'shop')]),
    service('cart', 'shop', [workload('cart-1', 'shop')]),
    service('ledger', 'shop', [workload('ledger-1', 'shop')]),
  ];
  return new ConfigCompiler({
    zone: 'zone-a',
    logger: createLogger('test-failover-compile'),
    sources: {
      services: () => services,
      workloads: () => services.flatMap((s) => s.endpoints),
      resources: (kind: PolicyKind) => objects.filter((o) => o.kind === kind),
      catalog: () => remote,
      trust: () => ({ trustDomain: 'cluster.local', roots: ['ROOT'] }),
      gateway: () => ({ address: '192.0.2.1', port: 15443 }),
    },
  });
}

function endpointsOf(compiler: ConfigCompiler, name: string): EndpointConfig[] {
  const compiled = compiler.compileSidecar('web-1', 'shop', 'web-1');
  if (compiled === undefined) throw new Error('no snapshot for web-1');
  const snapshot = JSON.parse(compiled.json) as SidecarSnapshot;
  const svc = snapshot.outbound.services.find((s) => s.name === name);
  return svc?.clusters.find((c) => c.subset === '_')?.endpoints ?? [];
}

const vias = (endpoints: EndpointConfig[]) => endpoints.map((e) => `${e.zone}/${e.via}`);

const MESH = (routing: string) => `
apiVersion: meshfed.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec:
  routing: ${routing}
`;

describe('zone health from the catalog', () => {
  it('weights a remote gateway by its healthy count and marks it unhealthy at 0', () => {
    const gateway = (healthy: number) =>
      endpointsOf(compilerWith('', catalog(healthy, 3)), 'cart').find((e) => e.via === 'gateway');
    expect(gateway(3)).toMatchObject({ zone: 'zone-b', address: '192.0.2.2', weight: 3, healthy: true });
    expect(gateway(1)).toMatchObject({ weight: 1, healthy: true });
    expect(gateway(0)).toMatchObject({ weight: 0, healthy: false });
  });
});

describe('data residency at compile time', () => {
  it('without a pin, both zones; each way of pinning leaves only the local sidecar', () => {
    expect(vias(endpointsOf(compilerWith('', catalog(2)), 'cart'))).toEqual([
      'zone-a/sidecar',
      'zone-b/gateway',
    ]);
    for (const routing of [
      '{pinToZone: true}',
      '{pinnedServices: [cart.shop]}',
      '{pinnedServices: ["*.shop"]}',
    ]) {
      const compiler = compilerWith(MESH(routing), catalog(2));
      expect(vias(endpointsOf(compiler, 'cart'))).toEqual(['zone-a/sidecar']);
    }
    const fqdn = compilerWith(MESH('{pinnedServices: [cart.shop.svc.cluster.local]}'), catalog(2));
    expect(vias(endpointsOf(fqdn, 'cart'))).toEqual(['zone-a/sidecar']);
    // Only the listed service: ledger still reaches zone-b.
    expect(vias(endpointsOf(fqdn, 'ledger'))).toEqual(['zone-a/sidecar', 'zone-b/gateway']);
    const annotated = compilerWith(
      `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: cart
  annotations: {meshfed.io/pinned-to-zone: "true"}
spec:
  host: cart
`,
      catalog(2),
    );
    expect(vias(endpointsOf(annotated, 'cart'))).toEqual(['zone-a/sidecar']);
  });
});

describe('inspectService', () => {
  const mds = { record: () => undefined };

  it('answers per zone and the plan, and refuses what it cannot answer with the reason', () => {
    const compiler = compilerWith('', catalog(1, 2));
    const sources = { zone: 'zone-a', mds, view: () => compiler.view() };
    const answer = inspectService(sources, { name: 'cart.shop', workload: 'shop/web-1' });
    expect(answer.zones.map((z) => [z.zone, z.local, z.healthy, z.total])).toEqual([
      ['zone-a', true, 1, 1],
      ['zone-b', false, 1, 2],
    ]);
    expect(answer.order.map((o) => o.endpoints)).toEqual([
      [expect.stringMatching(/^zone-a 127\.0\.0\.1:/)],
      ['zone-b 192.0.2.2:15443'],
    ]);
    expect(answer.active).toBe(0);
    expect(() => inspectService(sources, { name: 'cart' })).toThrow(
      'no service cart.default.svc.cluster.local in zone zone-a or in the catalog of other zones (name it as name.namespace)',
    );
    expect(() => inspectService(sources, { name: 'cart.shop', proxy: 'ghost' })).toThrow(
      'no proxy with id ghost is or was connected to this zone',
    );
    expect(() => inspectService(sources, { name: 'cart.shop', workload: 'shop/nobody' })).toThrow(
      'no workload shop/nobody in zone zone-a',
    );
  });
});
