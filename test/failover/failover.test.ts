/**
 * Cross-zone failover end to end (issue #7): real global and zone CPs,
 * KDS, east-west gateways, sidecars with zone-issued certificates and real
 * apps. The client in zone-a calls echo.demo, which runs in zone-a, zone-b
 * and zone-c; each test changes health or policy and asserts which app
 * answers.
 */

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { findKind } from '../../core/resource/kinds.js';
import { resourcePath } from '../../cli/connection.js';
import { assertCliBuilt, runCli } from '../common/cli.js';
import { http } from '../common/http.js';
import { waitFor } from '../common/wait.js';
import type { TestZoneCp } from '../common/zone-cp.js';
import { keepAlive, metricValue, scrape } from '../proxy/proxy-harness.js';
import { inspectEcho, startFailoverMesh, type FailoverMesh } from './failover-harness.js';

let mesh: FailoverMesh;

beforeAll(async () => {
  mesh = await startFailoverMesh();
}, 60_000);

afterAll(async () => {
  keepAlive.destroy();
  await mesh?.close();
});

/** Waits until `count` calls in a row satisfy `accept`, and returns the last batch. */
async function settle(
  accept: (seen: Map<string, number>) => boolean,
  what: string,
  count = 20,
): Promise<Map<string, number>> {
  return waitFor(
    async () => {
      const seen = await mesh.calls(count);
      return accept(seen) ? seen : undefined;
    },
    { what, timeoutMs: 15_000 },
  );
}

const only = (name: string) => (seen: Map<string, number>) => seen.size === 1 && seen.has(name);

function drPath(name: string): string {
  const kind = findKind('DestinationRule');
  if (kind === undefined) throw new Error('no DestinationRule kind');
  return resourcePath(kind, { namespace: 'demo', name });
}

async function withRule(yaml: string, body: () => Promise<void>): Promise<void> {
  await mesh.global.apply(yaml);
  try {
    await body();
  } finally {
    await mesh.global.remove(drPath('echo'));
    await settle(only('echo-a'), 'traffic back on zone-a once the rule is gone');
  }
}

describe('default: locality-aware failover through gateways', () => {
  test('local first; when it turns unhealthy, the remote zones; back when it recovers', async () => {
    expect(await settle(only('echo-a'), 'every call answered in zone-a')).toEqual(new Map([['echo-a', 20]]));

    mesh.setEchoHealthy('zone-a', false);
    const failedOver = await settle(
      (seen) => !seen.has('echo-a') && [...seen.keys()].every((k) => k === 'echo-b' || k === 'echo-c'),
      'calls failing over to zone-b and zone-c',
      40,
    );
    // Both remote zones report one healthy endpoint: their gateways share the traffic.
    expect(failedOver.get('echo-b')).toBeGreaterThan(0);
    expect(failedOver.get('echo-c')).toBeGreaterThan(0);

    mesh.setEchoHealthy('zone-a', true);
    await settle(only('echo-a'), 'fail-back to zone-a');
  });

  test('zone health over KDS: a zone reporting 0 healthy endpoints gets nothing; it comes back when healthy', async () => {
    mesh.setEchoHealthy('zone-a', false);
    mesh.setEchoHealthy('zone-b', false);
    try {
      await settle(only('echo-c'), 'every call in zone-c (zone-b reports 0 healthy through KDS)', 30);
      const view = await inspectEcho(mesh.zones.get('zone-a')?.cp ?? fail());
      expect(view.zones.find((z) => z.zone === 'zone-b')).toMatchObject({ healthy: 0, total: 1 });
      mesh.setEchoHealthy('zone-b', true);
      await settle((seen) => (seen.get('echo-b') ?? 0) > 0, 'zone-b back in rotation', 30);
    } finally {
      mesh.setEchoHealthy('zone-a', true);
      mesh.setEchoHealthy('zone-b', true);
    }
    await settle(only('echo-a'), 'fail-back to zone-a');
  });
});

const DR = (trafficPolicy: string) => `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: demo}
spec:
  host: echo.demo.svc.cluster.local
  trafficPolicy:
${trafficPolicy}
`;

describe('DestinationRule localityLbSetting', () => {
  test('failover from zone-a to zone-c (meshfed zones as from/to), with the API warning without outlierDetection', async () => {
    const yaml = DR(`    loadBalancer:
      localityLbSetting:
        failover: [{from: zone-a, to: zone-c}]`);
    const answer = await http(`${mesh.global.cp.url}/api/v1/apply`, {
      method: 'POST',
      token: mesh.global.admin,
      body: yaml,
      contentType: 'application/yaml',
    });
    expect(answer.status).toBe(200);
    expect(JSON.stringify(answer.json)).toContain(
      'localityLbSetting.failover: without outlierDetection, meshfed fails over only when endpoints turn unhealthy',
    );
    await withRule(yaml, async () => {
      await waitFor(
        async () =>
          (await inspectEcho(zoneA(), '?proxy=client-1')).policy.localityLbSetting !== undefined || undefined,
        { what: 'the rule in zone-a' },
      );
      expect(await settle(only('echo-a'), 'zone-a first while healthy')).toEqual(new Map([['echo-a', 20]]));
      mesh.setEchoHealthy('zone-a', false);
      try {
        await settle(only('echo-c'), 'failover to zone-c only');
        // Not luck: 50 more calls, every one in zone-c, none in zone-b.
        expect(await mesh.calls(50)).toEqual(new Map([['echo-c', 50]]));
        const view = await inspectEcho(zoneA(), '?proxy=client-1');
        expect(view.order.map((o) => o.endpoints.map((e) => e.split(' ')[0]))).toEqual([
          ['zone-a'],
          ['zone-c'],
          ['zone-b'],
        ]);
        expect(view.active).toBe(1);
        // The CLI shows the same order: zone-c at priority 1, zone-b at 2.
        assertCliBuilt();
        const table = await runCli([
          'inspect',
          'service',
          'echo.demo',
          '--from-proxy',
          'client-1',
          '--server',
          zoneA().cp.restUrl,
          '--token',
          zoneA().admin,
        ]);
        if (process.env.MESHFED_SHOW_OUTPUT === '1') process.stderr.write(table.stdout);
        expect(table.stdout).toContain('Policy:   DestinationRule demo/echo; priority;');
        expect(table.stdout).toMatch(/^zone-b\s+127\.0\.0\.1:\d+\s+gateway\s+1\/1\s+1\s+2$/m);
        expect(table.stdout).toMatch(/^zone-c\s+127\.0\.0\.1:\d+\s+gateway\s+1\/1\s+1\s+1$/m);
      } finally {
        mesh.setEchoHealthy('zone-a', true);
      }
    });
  });

  test('failoverPriority key=value ranks zone-c first even while zone-a is healthy', async () => {
    await withRule(
      DR(`    outlierDetection: {consecutive5xxErrors: 5}
    loadBalancer:
      localityLbSetting:
        failoverPriority: [topology.istio.io/cluster=zone-c]`),
      async () => {
        await settle(only('echo-c'), 'every call in zone-c');
        expect(await mesh.calls(50)).toEqual(new Map([['echo-c', 50]]));
        // zone-c gone: the remaining level (zone-a and zone-b together) takes over.
        mesh.setEchoHealthy('zone-c', false);
        try {
          await settle(
            (seen) => !seen.has('echo-c') && (seen.get('echo-a') ?? 0) > 0 && (seen.get('echo-b') ?? 0) > 0,
            'zone-a and zone-b sharing once zone-c reports 0 healthy',
            40,
          );
        } finally {
          mesh.setEchoHealthy('zone-c', true);
        }
      },
    );
  });

  test('distribute: 70 % zone-a, 30 % zone-b, nothing to zone-c (within tolerance)', async () => {
    await withRule(
      DR(`    loadBalancer:
      localityLbSetting:
        distribute:
        - from: zone-a
          to: {zone-a: 70, zone-b: 30}`),
      async () => {
        await settle((seen) => (seen.get('echo-b') ?? 0) > 0, 'zone-b getting a share', 30);
        const seen = await mesh.calls(400);
        const a = seen.get('echo-a') ?? 0;
        const b = seen.get('echo-b') ?? 0;
        expect(seen.get('echo-c') ?? 0).toBe(0);
        expect(a + b).toBe(400);
        // 400 draws at p=0.7: the standard deviation is about 9 calls (2.3 %); allow over 4 of them.
        expect(a / 400).toBeGreaterThan(0.6);
        expect(a / 400).toBeLessThan(0.8);
      },
    );
  });

  test('outlier detection: an erroring local endpoint is ejected, traffic fails over, then fails back', async () => {
    await withRule(
      DR(
        `    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1s, maxEjectionPercent: 100}`,
      ),
      async () => {
        await waitFor(
          async () =>
            (await inspectEcho(zoneA(), '?proxy=client-1')).policy.destinationRule !== undefined || undefined,
          { what: 'the rule in zone-a' },
        );
        await settle(only('echo-a'), 'zone-a first');
        const zone = mesh.zones.get('zone-a') ?? fail();
        zone.failWith = 503;
        try {
          await settle(
            (seen) => !seen.has('echo-a') && ![...seen.keys()].some((k) => k.startsWith('503')),
            'the failing zone-a endpoint ejected, calls answered by zone-b/zone-c',
          );
          const metrics = await scrape(`http://127.0.0.1:${mesh.client.ports.metrics}/stats/prometheus`);
          expect(metricValue(metrics, 'meshfed_proxy_outlier_ejections_total')).toBeGreaterThanOrEqual(1);
        } finally {
          zone.failWith = undefined;
        }
        await settle(only('echo-a'), 'fail-back after the ejection ends');
      },
    );
  });
});

describe('data residency', () => {
  const MESH = (routing: string) => `
apiVersion: meshfed.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec:
  routing: ${routing}
`;

  test('a pinned service gets no remote endpoints; with local gone the caller sees 503 UH', async () => {
    await mesh.global.apply(MESH('{pinnedServices: [echo.demo]}'));
    try {
      await waitFor(
        async () => (await inspectEcho(zoneA(), '?proxy=client-1')).policy.pinnedToZone || undefined,
        { what: 'the pin in zone-a' },
      );
      // Compile time: the snapshot the zone pushed holds no gateway endpoint for echo.
      const config = await http(`${zoneA().cp.restUrl}/inspect/proxies/client-1/config`, {
        token: zoneA().admin,
      });
      const echo = (
        config.json as {
          outbound: {
            services: Array<{ name: string; clusters: Array<{ endpoints: Array<{ via: string }> }> }>;
          };
        }
      ).outbound.services.find((s) => s.name === 'echo');
      expect(echo?.clusters.flatMap((c) => c.endpoints.map((e) => e.via))).toEqual(['sidecar']);

      mesh.setEchoHealthy('zone-a', false);
      try {
        const seen = await settle(
          only('503 no healthy upstream'),
          'calls refused locally, not sent to zone-b/c',
        );
        expect(seen.get('503 no healthy upstream')).toBe(20);
        const metrics = await scrape(`http://127.0.0.1:${mesh.client.ports.metrics}/stats/prometheus`);
        expect(
          metricValue(metrics, 'istio_requests_total', { response_code: '503', response_flags: 'UH' }),
        ).toBeGreaterThanOrEqual(20);
        const view = await inspectEcho(zoneA(), '?proxy=client-1');
        expect(view.active).toBe(-1);
        expect(view.zones.filter((z) => !z.local).map((z) => z.excluded)).toEqual([
          'the service is pinned to zone zone-a',
          'the service is pinned to zone zone-a',
        ]);
        const table = await runCli([
          'inspect',
          'service',
          'echo.demo',
          '--server',
          zoneA().cp.restUrl,
          '--token',
          zoneA().admin,
        ]);
        if (process.env.MESHFED_SHOW_OUTPUT === '1') process.stderr.write(table.stdout);
        expect(table.stdout).toContain('Traffic:  no healthy endpoint the caller may use');
        expect(table.stdout).toMatch(
          /^zone-b\s+127\.0\.0\.1:\d+\s+gateway\s+1\/1\s+-\s+excluded: the service is pinned to zone zone-a$/m,
        );
      } finally {
        mesh.setEchoHealthy('zone-a', true);
      }
    } finally {
      await mesh.global.apply(MESH('{preferLocalZone: true}'));
    }
    await waitFor(
      async () => !(await inspectEcho(zoneA(), '?proxy=client-1')).policy.pinnedToZone || undefined,
      { what: 'the pin gone in zone-a' },
    );
  });
});

describe('meshfed inspect service', () => {
  const cli = (...args: string[]) =>
    runCli(['inspect', 'service', ...args, '--server', zoneA().cp.restUrl, '--token', zoneA().admin]);

  test('shows per zone the endpoints, health and the order client-1 would use', async () => {
    assertCliBuilt();
    mesh.setEchoHealthy('zone-a', false);
    try {
      await waitFor(async () => (await inspectEcho(zoneA(), '?proxy=client-1')).active === 1 || undefined, {
        what: 'zone-a echo unhealthy in the zone view',
      });
      const table = await cli('echo.demo', '--from-proxy', 'client-1');
      expect(table.stderr).toBe('');
      expect(table.code).toBe(0);
      if (process.env.MESHFED_SHOW_OUTPUT === '1') process.stderr.write(table.stdout);
      const gatewayB = `127.0.0.1:${mesh.zones.get('zone-b')?.gatewayPort ?? 0}`;
      const lines = table.stdout.split('\n');
      expect(lines[0]).toBe('Service:  echo.demo (echo.demo.svc.cluster.local)');
      expect(table.stdout).toContain('Caller:   demo/client (zone zone-a)');
      expect(table.stdout).toContain('Traffic:  goes to priority 1 now');
      const row = (zone: string) => lines.find((l) => l.startsWith(zone))?.split(/\s{2,}/);
      expect(row('zone-a (local)')).toEqual([
        'zone-a (local)',
        `127.0.0.1:${mesh.zones.get('zone-a')?.echoProxy.ports.inbound ?? 0}`,
        'sidecar echo',
        'no',
        '1',
        '0',
      ]);
      expect(row('zone-b')).toEqual(['zone-b', gatewayB, 'gateway', '1/1', '1', '1']);
      expect(row('zone-c')?.slice(2)).toEqual(['gateway', '1/1', '1', '1']);

      const json = await cli('echo', '-n', 'demo', '--from-workload', 'demo/client', '-o', 'json');
      expect(json.code).toBe(0);
      const parsed = JSON.parse(json.stdout) as { order: Array<{ endpoints: string[] }>; active: number };
      expect(parsed.active).toBe(1);
      expect(parsed.order[1]?.endpoints).toContain(`zone-b ${gatewayB}`);
    } finally {
      mesh.setEchoHealthy('zone-a', true);
    }
  });

  test('bad input answers with what was wrong', async () => {
    assertCliBuilt();
    const missing = await cli('nope.demo');
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('no service nope.demo.svc.cluster.local in zone zone-a');
    const wrongZone = await cli('echo.demo', '--zone', 'zone-b');
    expect(wrongZone.code).not.toBe(0);
    expect(wrongZone.stderr).toContain(
      "the server is zone zone-a, not zone-b: point --server at zone-b's API",
    );
    const badWorkload = await cli('echo.demo', '--from-workload', 'client');
    expect(badWorkload.code).not.toBe(0);
    expect(badWorkload.stderr).toContain('workload must be namespace/name');
    const noProxy = await cli('echo.demo', '--from-proxy', 'ghost-1');
    expect(noProxy.stderr).toContain('no proxy with id ghost-1');
    // The REST route names an empty parameter instead of looking up a service in namespace ''.
    const emptyNamespace = await http(`${zoneA().cp.restUrl}/inspect/services/echo?namespace=`, {
      token: zoneA().admin,
    });
    expect(emptyNamespace.status).toBe(422);
    expect(emptyNamespace.text).toContain('namespace is empty');
  });
});

function zoneA(): TestZoneCp {
  return mesh.zones.get('zone-a')?.cp ?? fail();
}

function fail(): never {
  throw new Error('missing zone');
}
