/**
 * The telemetry path end to end, in-process: sidecars report over MDS,
 * zone-a sums and forwards over KDS, global serves the golden signals on
 * /api/v1/dashboard/state and /api/v1/dashboard/events behind the API's
 * token auth.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { MdsClient } from '../../core/mds/mds-client.js';
import { http, openSse } from '../common/http.js';
import { waitFor } from '../common/wait.js';
import { EDGE_ID, NS, faultYaml, startDashboardMesh, type DashboardMesh } from './dashboard-mesh.js';

let mesh: DashboardMesh;

beforeAll(async () => {
  mesh = await startDashboardMesh();
}, 40_000);

afterAll(async () => {
  await mesh?.close();
});

/** An MDS stream of zone-a authenticated as the frontend sidecar, connected: reports go on it. */
async function frontendReporter(proxyId: string): Promise<MdsClient> {
  const token = await mesh.zoneA.issueProxyToken({
    workload: 'frontend',
    namespace: NS,
    serviceAccount: 'frontend',
  });
  const client = new MdsClient({
    address: mesh.zoneA.cp.grpcAddress,
    caPem: mesh.zoneA.cp.caPem,
    credential: () => ({ token }),
    hello: { proxyId, kind: 'sidecar', workload: 'frontend', namespace: NS },
    onSnapshot: () => undefined,
  });
  client.start();
  try {
    await waitFor(() => client.connected || undefined, { what: 'the MDS stream up' });
  } catch (err) {
    client.close();
    throw err;
  }
  return client;
}

describe('dashboard state', () => {
  it('refuses requests without a valid token, and serves the page to browsers', async () => {
    const url = mesh.global.cp.url;
    for (const path of ['/api/v1/dashboard/state', '/api/v1/dashboard/events']) {
      const none = await http(`${url}${path}`);
      expect(none.status).toBe(401);
      const wrong = await http(`${url}${path}`, { token: 'mf1.bogus.token' });
      expect(wrong.status).toBe(401);
    }
    const page = await fetch(`${url}/`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(await page.text()).toContain('/dashboard/app.js');
    const script = await fetch(`${url}/dashboard/app.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toContain('javascript');
    // API clients asking for JSON still get the index document.
    const index = await http(`${url}/`);
    expect(index.status).toBe(200);
    expect((index.json as { name: string }).name).toBe('meshfed global control plane');
  });

  it('lists both zones as connected, with their proxies', async () => {
    const state = await waitFor(
      async () => {
        const s = await mesh.state();
        const a = s.zones.find((z) => z.name === 'zone-a');
        const b = s.zones.find((z) => z.name === 'zone-b');
        const catalogued = s.services.some((n) => n.id === `zone-b/${NS}/catalog`);
        return a?.connected === true && b?.connected === true && a.proxies === 2 && catalogued
          ? s
          : undefined;
      },
      { what: 'both zones connected, zone-a with 2 proxies, zone-b’s service catalogued', timeoutMs: 15_000 },
    );
    const a = state.zones.find((z) => z.name === 'zone-a');
    expect(a?.configRevision).toEqual(expect.any(Number));
    expect(a?.lastSync).toEqual(expect.any(String));
    expect(state.services.map((s) => s.id)).toEqual(
      expect.arrayContaining([`zone-a/${NS}/backend`, `zone-a/${NS}/frontend`, `zone-b/${NS}/catalog`]),
    );
  });

  it('shows the edge with the exact request count and success rate, then the drop under a 50 % abort fault', async () => {
    const before = (await mesh.call(20)).filter((s) => s === 200).length;
    expect(before).toBe(20);
    const healthy = await waitFor(
      async () => {
        const e = mesh.edge(await mesh.state());
        return e !== undefined && e.totalRequests === 20 ? e : undefined;
      },
      { what: 'the edge frontend → backend with 20 requests', timeoutMs: 15_000 },
    );
    expect(healthy.successRate).toBe(1);
    expect(healthy.codes['2xx']).toBe(20);
    expect(healthy.destination.zone).toBe('zone-a');
    expect(healthy.from).toBe(`zone-a/${NS}/frontend`);
    expect(healthy.to).toBe(`zone-a/${NS}/backend`);
    expect(healthy.p99Ms).toEqual(expect.any(Number));
    expect(healthy.rps).toBeGreaterThan(0);

    await mesh.apply(faultYaml(50));
    // Wait for the fault to reach the frontend's sidecar, counting every call made meanwhile.
    const statuses: number[] = [];
    await waitFor(
      async () => {
        const s = await mesh.call(8);
        statuses.push(...s);
        return s.includes(503) || undefined;
      },
      { what: 'the abort fault to reach the frontend sidecar', timeoutMs: 15_000 },
    );
    statuses.push(...(await mesh.call(200)));
    const failed = statuses.filter((s) => s === 503).length;
    expect(statuses.filter((s) => s !== 200 && s !== 503)).toEqual([]);
    // Half of 200+ aborted, give or take chance.
    expect(failed / statuses.length).toBeGreaterThan(0.3);
    const total = 20 + statuses.length;
    const faulty = await waitFor(
      async () => {
        const e = mesh.edge(await mesh.state());
        return e !== undefined && e.totalRequests === total ? e : undefined;
      },
      { what: `the edge with ${total} requests`, timeoutMs: 15_000 },
    );
    expect(faulty.totalFailures).toBe(failed);
    expect(faulty.codes['5xx']).toBe(failed);
    expect(faulty.requests).toBe(total);
    expect(faulty.successRate).toBeCloseTo((total - failed) / total, 3);
    expect(faulty.successRate ?? 1).toBeLessThan(0.8);
  }, 60_000);

  it('lists the policy with its per-zone status', async () => {
    const policy = await waitFor(
      async () => {
        const p = (await mesh.state()).policies.find(
          (x) => x.kind === 'VirtualService' && x.name === 'backend-fault',
        );
        return p?.state === 'applied' ? p : undefined;
      },
      { what: 'the VirtualService applied in both zones', timeoutMs: 15_000 },
    );
    expect(policy.zones.map((z) => `${z.zone}:${z.state}`).sort()).toEqual([
      'zone-a:applied',
      'zone-b:applied',
    ]);
  });

  it('streams the state over SSE with the bearer token', async () => {
    const sse = await openSse(`${mesh.global.cp.url}/api/v1/dashboard/events`, mesh.global.admin);
    try {
      const first = await sse.next();
      const second = await sse.next();
      expect([first.event, second.event]).toEqual(['state', 'state']);
      const state = second.data as { edges: Array<{ id: string }> };
      expect(state.edges.map((e) => e.id)).toContain(EDGE_ID);
    } finally {
      sse.close();
    }
  });

  it('lists the VMs the zones report, with their health', async () => {
    const vm = await waitFor(async () => (await mesh.state()).vms.find((v) => v.name === 'catalog-vm-1'), {
      what: 'zone-b’s VM in the state',
    });
    expect(vm).toEqual({
      zone: 'zone-b',
      name: 'catalog-vm-1',
      namespace: NS,
      address: '192.0.2.10',
      group: 'catalog-vms',
      healthy: false,
      proxyConnected: false,
    });
  });

  it('takes a report’s calling side from the proxy’s authenticated session and zone, not from the report', async () => {
    const { emptyCodes, encodeTelemetry, TELEMETRY_FORMAT_VERSION } =
      await import('../../core/telemetry/telemetry-report.js');
    const { emptyLatency } = await import('../../core/telemetry/telemetry-histogram.js');
    const client = await frontendReporter('spoofing-reporter');
    try {
      // A sidecar of zone-a claims its requests came from another namespace in another zone.
      const report = encodeTelemetry({
        version: TELEMETRY_FORMAT_VERSION,
        intervalMs: 5000,
        edges: [
          {
            source: { workload: 'intruder', namespace: 'kube-system', service: 'spoofed', zone: 'zone-b' },
            destination: { service: 'backend', namespace: NS, zone: 'zone-a' },
            codes: { ...emptyCodes(), '2xx': 7 },
            latency: emptyLatency(),
            latencySumMs: 0,
          },
        ],
      });
      expect(client.sendReport(report)).toBe(true);
      const edge = await waitFor(
        async () => (await mesh.state()).edges.find((e) => e.from.endsWith('/spoofed')),
        { what: 'the reported edge on the dashboard', timeoutMs: 15_000 },
      );
      expect(edge.from).toBe(`zone-a/${NS}/spoofed`);
      expect(edge.totalRequests).toBe(7);
      const state = await mesh.state();
      expect(
        state.edges.filter((e) => e.from.startsWith('zone-b/') || e.from.includes('kube-system')),
      ).toEqual([]);
    } finally {
      client.close();
    }
  });

  it('counts a malformed proxy report as invalid and keeps the proxy connected', async () => {
    const client = await frontendReporter('garbage-reporter');
    try {
      expect(client.sendReport(Buffer.from('{"version":1,"intervalMs":-5,"edges":[]}'))).toBe(true);
      expect(client.sendReport(Buffer.from('not json'))).toBe(true);
      const metrics = await waitFor(
        async () => {
          const text = await (await fetch(`${mesh.zoneA.cp.restUrl}/metrics`)).text();
          return /meshfed_zone_telemetry_reports_total\{outcome="invalid"[^}]*\} 2\b/.test(text)
            ? text
            : undefined;
        },
        { what: 'two invalid reports counted' },
      );
      expect(metrics).toMatch(/meshfed_zone_telemetry_reports_total\{outcome="accepted"[^}]*\} [1-9]/);
      expect(client.connected).toBe(true);
    } finally {
      client.close();
    }
  });
});
