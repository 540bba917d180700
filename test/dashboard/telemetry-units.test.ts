/**
 * The telemetry path's pieces on their own: histogram quantiles, the
 * checks on what a peer sends, the proxy's delta reports and global's
 * sliding window.
 */

import { describe, expect, it } from '@jest/globals';
import { createRegistry } from '../../core/metrics.js';
import { LATENCY_SLOTS, emptyLatency, latencyQuantileMs } from '../../core/telemetry/telemetry-histogram.js';
import {
  emptyCodes,
  parseProxyReport,
  parseZoneTelemetry,
  type EdgeSample,
  type ProxyTelemetryReport,
  type ZoneTelemetrySummary,
} from '../../core/telemetry/telemetry-report.js';
import { GlobalTelemetry } from '../../global-cp/telemetry/global-telemetry.js';
import { EdgeReporter } from '../../proxy/telemetry/edge-report.js';
import { IstioMetrics, UNKNOWN_PEER, type PeerLabels } from '../../proxy/telemetry/istio-metrics.js';
import { ZoneTelemetryCollector } from '../../zone-cp/telemetry/zone-telemetry.js';

function sample(ok: number, failed: number, zone = 'zone-b'): EdgeSample {
  const latency = emptyLatency();
  latency[5] = ok + failed; // 25-50 ms
  return {
    source: { workload: 'web-1', namespace: 'shop', service: 'web', zone: 'zone-a' },
    destination: { service: 'cart', namespace: 'shop', zone },
    codes: { ...emptyCodes(), '2xx': ok, '5xx': failed },
    latency,
    latencySumMs: 30 * (ok + failed),
  };
}

function summary(edges: EdgeSample[], zone = 'zone-a'): ZoneTelemetrySummary {
  return { version: 1, zone, at: new Date().toISOString(), intervalMs: 5000, proxies: 3, edges, vms: [] };
}

describe('latency quantiles', () => {
  it('interpolates inside the bucket the rank falls in, as histogram_quantile does', () => {
    const counts = emptyLatency();
    counts[4] = 90; // 10-25 ms
    counts[6] = 10; // 50-100 ms
    expect(latencyQuantileMs(counts, 0.5)).toBeCloseTo(10 + 15 * (50 / 90), 6);
    expect(latencyQuantileMs(counts, 0.99)).toBeCloseTo(50 + 50 * (9 / 10), 6);
    expect(latencyQuantileMs(emptyLatency(), 0.99)).toBeUndefined();
  });
});

describe('what peers send is checked', () => {
  const good: ProxyTelemetryReport = { version: 1, intervalMs: 5000, edges: [sample(3, 1)] };

  it('accepts a well-formed report and refuses bad ones naming the field', () => {
    expect(parseProxyReport(Buffer.from(JSON.stringify(good)))).toEqual(good);
    expect(() => parseProxyReport(Buffer.from('nope'))).toThrow(/Report is not JSON/);
    const negative = { ...good, edges: [{ ...sample(1, 0), codes: { '2xx': -1 } }] };
    expect(() => parseProxyReport(Buffer.from(JSON.stringify(negative)))).toThrow(
      /Report\.edges\[0\]\.codes\.2xx must be a non-negative integer/,
    );
    const short = { ...good, edges: [{ ...sample(1, 0), latency: [1, 2] }] };
    expect(() => parseProxyReport(Buffer.from(JSON.stringify(short)))).toThrow(
      new RegExp(`latency must be an array of ${LATENCY_SLOTS} counts`),
    );
    expect(() => parseProxyReport(Buffer.from(JSON.stringify({ ...good, version: 9 })))).toThrow(
      /version 9 is not supported/,
    );
  });

  it('refuses a zone summary that speaks for another zone', () => {
    const json = Buffer.from(JSON.stringify(summary([sample(1, 0)], 'zone-b')));
    expect(() => parseZoneTelemetry(json, 'zone-a')).toThrow(/ZoneTelemetry\.zone is "zone-b"/);
    expect(parseZoneTelemetry(json, 'zone-b').edges).toHaveLength(1);
  });
});

describe('the proxy reports deltas of its source-side series', () => {
  it('reports what happened since the previous report, and nothing when idle', () => {
    const registry = createRegistry('proxy-test', 'off');
    const metrics = new IstioMetrics(registry);
    const self: PeerLabels = {
      ...UNKNOWN_PEER,
      workload: 'web-1',
      workload_namespace: 'shop',
      canonical_service: 'web',
      cluster: 'zone-a',
    };
    const cart: PeerLabels = { ...UNKNOWN_PEER, cluster: 'zone-b' };
    const base = metrics.base({
      reporter: 'source',
      source: self,
      destination: cart,
      service: 'cart.shop.svc.cluster.local',
      serviceName: 'cart',
      serviceNamespace: 'shop',
      security: 'unknown',
    });
    const inbound = metrics.base({
      reporter: 'destination',
      source: cart,
      destination: self,
      service: 'web.shop.svc.cluster.local',
      serviceName: 'web',
      serviceNamespace: 'shop',
      security: 'mutual_tls',
    });
    const sent: ProxyTelemetryReport[] = [];
    const reporter = new EdgeReporter({
      metrics,
      intervalMs: 60_000,
      send: (json) => {
        sent.push(parseProxyReport(json));
        return true;
      },
    });
    for (let i = 0; i < 3; i++) metrics.recordHttp(base, 200, '-', '', 'http', 12, 0, 0);
    metrics.recordHttp(base, 503, 'FI', '', 'http', 0.2, 0, 0);
    metrics.recordHttp(inbound, 200, '-', '', 'http', 5, 0, 0);
    expect(reporter.flush()).toBe(true);
    expect(sent).toHaveLength(1);
    const edges = sent[0]?.edges ?? [];
    // The inbound (destination-reported) request is not an edge of this proxy.
    expect(edges).toHaveLength(1);
    expect(edges[0]?.codes).toEqual({ ...emptyCodes(), '2xx': 3, '5xx': 1 });
    expect(edges[0]?.destination).toEqual({ service: 'cart', namespace: 'shop', zone: 'zone-b' });
    expect(edges[0]?.source).toEqual({
      workload: 'web-1',
      namespace: 'shop',
      service: 'web',
      zone: 'zone-a',
    });
    expect(edges[0]?.latency.reduce((a, b) => a + b, 0)).toBe(4);

    expect(reporter.flush()).toBe(false);
    metrics.recordHttp(base, 200, '-', '', 'http', 12, 0, 0);
    expect(reporter.flush()).toBe(true);
    expect(sent[1]?.edges[0]?.codes['2xx']).toBe(1);
    reporter.close();
  });

  it('keeps the counts when the stream is down and sends them with the next report', () => {
    const metrics = new IstioMetrics(createRegistry('proxy-test', 'off'));
    const base = metrics.base({
      reporter: 'source',
      source: UNKNOWN_PEER,
      destination: UNKNOWN_PEER,
      service: 'cart',
      serviceName: 'cart',
      serviceNamespace: 'shop',
      security: 'unknown',
    });
    let up = false;
    const sent: ProxyTelemetryReport[] = [];
    const reporter = new EdgeReporter({
      metrics,
      send: (json) => {
        if (up) sent.push(parseProxyReport(json));
        return up;
      },
    });
    metrics.recordHttp(base, 200, '-', '', 'http', 1, 0, 0);
    expect(reporter.flush()).toBe(false);
    metrics.recordHttp(base, 200, '-', '', 'http', 1, 0, 0);
    up = true;
    expect(reporter.flush()).toBe(true);
    expect(sent[0]?.edges[0]?.codes['2xx']).toBe(2);
  });
});

describe('zone sums and global window', () => {
  it('the zone sums proxies per edge until the summary is cut', () => {
    const zone = new ZoneTelemetryCollector();
    zone.receive({ version: 1, intervalMs: 5000, edges: [sample(10, 0)] });
    zone.receive({ version: 1, intervalMs: 5000, edges: [sample(5, 5)] });
    const cut = zone.cut('zone-a', 2, []);
    expect(cut.edges).toHaveLength(1);
    expect(cut.edges[0]?.codes).toEqual({ ...emptyCodes(), '2xx': 15, '5xx': 5 });
    expect(zone.cut('zone-a', 2, []).edges).toEqual([]);
  });

  it('computes rate, success and p99 over the window and forgets what left it', () => {
    let now = 1_000_000;
    const global = new GlobalTelemetry({ windowMs: 30_000, now: () => now });
    global.report('zone-a', summary([sample(90, 0), sample(0, 10, 'unknown')]));
    now += 5000;
    global.report('zone-a', summary([sample(100, 0)]));
    let [edge] = global.edges();
    expect(edge?.id).toBe('zone-a/shop/web->shop/cart');
    expect(edge?.requests).toBe(200);
    expect(edge?.successRate).toBe(0.95);
    // Requests nobody answered (zone unknown) join the edge; it points at where the others went.
    expect(edge?.destination.zone).toBe('zone-b');
    expect(edge?.rps).toBeCloseTo(200 / 10, 3);
    expect(edge?.p99Ms).toBeGreaterThan(25);
    expect(edge?.p99Ms).toBeLessThanOrEqual(50);
    now += 26_000; // the first summary is now 31 s old
    [edge] = global.edges();
    expect(edge?.requests).toBe(100);
    expect(edge?.successRate).toBe(1);
    expect(edge?.totalRequests).toBe(200);
    expect(edge?.totalFailures).toBe(10);
    now += 10_000;
    expect(global.edges()).toEqual([]);
  });

  it('puts an edge’s calling side in the zone whose stream reported it, whatever the edge claims', () => {
    const global = new GlobalTelemetry({ windowMs: 30_000 });
    const claimed = sample(5, 0);
    claimed.source.zone = 'zone-c';
    global.report('zone-a', summary([claimed]));
    const [edge] = global.edges();
    expect(edge?.id).toBe('zone-a/shop/web->shop/cart');
    expect(edge?.source.zone).toBe('zone-a');
    expect(edge?.totalRequests).toBe(5);
  });
});
