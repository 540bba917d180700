/**
 * Telemetry a user relies on: Istio's standard metrics with Istio's labels
 * on both sides (values checked), JSON access log lines, trace headers
 * forwarded and x-request-id added, spans exported over OTLP/HTTP, the
 * admin endpoints.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger } from '../../core/log.js';
import { freePort } from '../../core/free-port.js';
import { resolveProxyOptions } from '../../proxy/proxy-options.js';
import { OtlpExporter, type FinishedSpan } from '../../proxy/telemetry/otlp-exporter.js';
import { waitFor } from '../common/wait.js';
import {
  createTestMesh,
  keepAlive,
  metricValue,
  request,
  scrape,
  sidecarEndpoint,
  sidecarSnapshot,
  spiffeOf,
  startApp,
  startTestProxy,
  type TestApp,
  type TestProxy,
} from './proxy-harness.js';

const mesh = createTestMesh();
const NS = 'bookinfo';
const serverW = {
  workload: 'ratings-v1',
  namespace: NS,
  serviceAccount: 'bookinfo-ratings',
  zone: 'zone-a',
  labels: { app: 'ratings', version: 'v1' },
};
const clientW = {
  workload: 'reviews-v2',
  namespace: NS,
  serviceAccount: 'bookinfo-reviews',
  zone: 'zone-a',
  labels: { app: 'reviews', version: 'v2' },
};

let app: TestApp;
let server: TestProxy;
let client: TestProxy;
const clientLog: string[] = [];
const serverLog: string[] = [];
let collector: http.Server;
const spans: unknown[] = [];

beforeAll(async () => {
  collector = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        const parsed = JSON.parse(body) as {
          resourceSpans: Array<{ scopeSpans: Array<{ spans: unknown[] }> }>;
        };
        for (const rs of parsed.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      }
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  const otlp = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
  app = await startApp('ratings', (req, res) => {
    const body = 'x'.repeat(1234);
    const status =
      req.url === '/missing' ? 404 : req.url?.startsWith('/status/') ? Number(req.url.slice(8)) : 200;
    res.writeHead(status, { 'content-length': body.length });
    res.end(body);
  });
  server = await startTestProxy(
    mesh,
    serverW,
    sidecarSnapshot({
      ...serverW,
      roots: [mesh.rootPem],
      inboundPorts: [{ port: 9080, targetPort: app.port, protocol: 'http', mtls: 'STRICT' }],
      defaultMtls: 'STRICT',
      accessLog: true,
    }),
    { accessLogSink: (lines) => serverLog.push(...lines.trim().split('\n')), otlpEndpoint: otlp },
  );
  client = await startTestProxy(
    mesh,
    clientW,
    sidecarSnapshot({
      ...clientW,
      roots: [mesh.rootPem],
      accessLog: true,
      services: [
        {
          name: 'ratings',
          namespace: NS,
          ports: [{ name: 'http', port: 9080, protocol: 'http' }],
          clusters: [{ subset: '_', endpoints: [sidecarEndpoint(server.handle.ports.inbound, serverW)] }],
        },
      ],
    }),
    { accessLogSink: (lines) => clientLog.push(...lines.trim().split('\n')), otlpEndpoint: otlp },
  );
});

afterAll(async () => {
  keepAlive.destroy();
  await client?.close();
  await server?.close();
  await app?.close();
  await new Promise<void>((resolve) => collector.close(() => resolve()));
});

describe('Istio standard metrics', () => {
  it('counts requests with the standard labels on the source and destination side', async () => {
    for (let i = 0; i < 7; i++)
      expect(
        (
          await request(client.handle.ports.outbound, 'ratings:9080', '/ratings/0', {
            method: 'POST',
            body: 'abcdefghij',
          })
        ).status,
      ).toBe(200);
    for (let i = 0; i < 3; i++)
      expect((await request(client.handle.ports.outbound, 'ratings:9080', '/missing')).status).toBe(404);
    const source = await scrape(client.metrics);
    const labels = {
      reporter: 'source',
      source_workload: 'reviews-v2',
      source_workload_namespace: NS,
      source_principal: spiffeOf(NS, 'bookinfo-reviews'),
      source_app: 'reviews',
      source_version: 'v2',
      source_canonical_service: 'reviews',
      source_canonical_revision: 'v2',
      source_cluster: 'zone-a',
      destination_workload: 'ratings-v1',
      destination_workload_namespace: NS,
      destination_principal: spiffeOf(NS, 'bookinfo-ratings'),
      destination_app: 'ratings',
      destination_version: 'v1',
      destination_service: `ratings.${NS}.svc.cluster.local`,
      destination_service_name: 'ratings',
      destination_service_namespace: NS,
      destination_canonical_service: 'ratings',
      destination_cluster: 'zone-a',
      request_protocol: 'http',
      response_flags: '-',
    };
    expect(metricValue(source, 'istio_requests_total', { ...labels, response_code: '200' })).toBe(7);
    expect(metricValue(source, 'istio_requests_total', { ...labels, response_code: '404' })).toBe(3);
    expect(
      metricValue(source, 'istio_request_duration_milliseconds_count', { ...labels, response_code: '200' }),
    ).toBe(7);
    expect(metricValue(source, 'istio_request_bytes_sum', { ...labels, response_code: '200' })).toBe(70);
    expect(metricValue(source, 'istio_response_bytes_sum', { ...labels, response_code: '200' })).toBe(
      7 * 1234,
    );
    expect(
      metricValue(source, 'istio_request_duration_milliseconds_bucket', {
        ...labels,
        response_code: '200',
        le: '+Inf',
      }),
    ).toBe(7);

    const destination = await scrape(server.metrics);
    const dest = {
      reporter: 'destination',
      source_workload: 'reviews-v2',
      source_principal: spiffeOf(NS, 'bookinfo-reviews'),
      source_app: 'reviews',
      destination_workload: 'ratings-v1',
      destination_service_name: 'ratings',
      connection_security_policy: 'mutual_tls',
    };
    expect(metricValue(destination, 'istio_requests_total', { ...dest, response_code: '200' })).toBe(7);
    expect(metricValue(destination, 'istio_requests_total', { ...dest, response_code: '404' })).toBe(3);
  });
});

describe('access log', () => {
  it('writes one JSON line per request on each side, with flags, upstream and request id', async () => {
    const before = clientLog.length;
    const answer = await request(client.handle.ports.outbound, 'ratings:9080', '/logged?x=1', {
      headers: { 'x-request-id': 'req-42', 'user-agent': 'jest' },
    });
    expect(answer.status).toBe(200);
    const line = await waitFor(() => clientLog.slice(before).find((l) => l.includes('/logged')), {
      what: 'the outbound access log line',
    });
    const entry = JSON.parse(line) as Record<string, unknown>;
    expect(entry).toMatchObject({
      direction: 'outbound',
      method: 'GET',
      path: '/logged?x=1',
      response_code: 200,
      response_flags: '-',
      request_id: 'req-42',
      user_agent: 'jest',
      upstream_cluster: `outbound|9080||ratings.${NS}.svc.cluster.local`,
      upstream_host: `127.0.0.1:${server.handle.ports.inbound}`,
      upstream_peer: spiffeOf(NS, 'bookinfo-ratings'),
      bytes_sent: 1234,
    });
    const serverLine = await waitFor(() => serverLog.find((l) => l.includes('/logged')), {
      what: 'the inbound access log line',
    });
    expect(JSON.parse(serverLine)).toMatchObject({
      direction: 'inbound',
      response_code: 200,
      downstream_peer: spiffeOf(NS, 'bookinfo-reviews'),
      requested_server_name: `_.9080.ratings.${NS}.svc.mesh`,
      request_id: 'req-42',
    });
    const notFound = await request(client.handle.ports.outbound, 'nowhere:80', '/');
    expect(notFound.status).toBe(404);
    const nr = await waitFor(() => clientLog.find((l) => l.includes('"response_flags":"NR"')), {
      what: 'an NR line',
    });
    expect(JSON.parse(nr)).toMatchObject({ response_code: 404, response_flags: 'NR' });
  });
});

describe('tracing', () => {
  it('forwards traceparent and B3 headers and adds x-request-id', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    await request(client.handle.ports.outbound, 'ratings:9080', '/traced', {
      headers: {
        traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
        tracestate: 'vendor=1',
        'x-b3-traceid': traceId,
        'x-b3-spanid': '00f067aa0ba902b7',
        'x-b3-sampled': '1',
      },
    });
    const seen = app.requests.find((r) => r.url === '/traced');
    expect(seen?.headers.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    expect(seen?.headers.tracestate).toBe('vendor=1');
    expect(seen?.headers['x-b3-traceid']).toBe(traceId);
    expect(seen?.headers['x-b3-sampled']).toBe('1');
    expect(seen?.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    // The proxies' spans (client and server) reach the collector, in the caller's trace.
    const ours = await waitFor(
      () => {
        const inTrace = spans.filter((s) => (s as { traceId: string }).traceId === traceId);
        return inTrace.length >= 2 ? inTrace : undefined;
      },
      { what: 'two spans of the trace at the collector', timeoutMs: 5000 },
    );
    const kinds = ours.map((s) => (s as { kind: number }).kind).sort();
    expect(kinds).toEqual([2, 3]);
    const clientSpan = ours.find((s) => (s as { kind: number }).kind === 3) as {
      spanId: string;
      parentSpanId: string;
    };
    const serverSpan = ours.find((s) => (s as { kind: number }).kind === 2) as { parentSpanId: string };
    expect(clientSpan.parentSpanId).toBe('00f067aa0ba902b7');
    expect(serverSpan.parentSpanId).toBe(clientSpan.spanId);
  });

  it('counts a batch the collector refuses or cannot take as dropped, and refuses an endpoint that is no URL', async () => {
    const refusing = http.createServer((req, res) => {
      req.resume();
      res.writeHead(503).end();
    });
    await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
    const span = {
      ctx: {
        traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
        spanId: '00f067aa0ba902b7',
        parentSpanId: '',
        sampled: true,
      },
      name: 'x',
      kind: 3 as const,
      startMs: Date.now(),
      endMs: Date.now() + 1,
      attributes: {},
      error: false,
    } satisfies FinishedSpan;
    const logger = createLogger('test-otlp');
    try {
      const toRefusing = new OtlpExporter(
        `http://127.0.0.1:${(refusing.address() as AddressInfo).port}`,
        'svc',
        logger,
      );
      toRefusing.add(span);
      await toRefusing.close();
      const toNobody = new OtlpExporter(`http://127.0.0.1:${await freePort()}`, 'svc', logger);
      toNobody.add(span);
      await toNobody.close();
      expect([toRefusing.dropped, toRefusing.exported, toNobody.dropped, toNobody.exported]).toEqual([
        1, 0, 1, 0,
      ]);
    } finally {
      await new Promise((resolve) => refusing.close(resolve));
    }
    for (const endpoint of ['http://', 'ftp://collector:4318', 'collector:4318']) {
      expect(() => resolveProxyOptions({ otlpEndpoint: endpoint })).toThrow(
        `otlpEndpoint must be an http(s) URL, got ${JSON.stringify(endpoint)}`,
      );
    }
  });

  it('keeps an x-request-id the app sent', async () => {
    await request(client.handle.ports.outbound, 'ratings:9080', '/rid', {
      headers: { 'x-request-id': 'mine-1' },
    });
    expect(app.requests.find((r) => r.url === '/rid')?.headers['x-request-id']).toBe('mine-1');
  });
});

describe('admin', () => {
  it('serves /ready, /config_dump, /stats, /certs and /clusters on loopback', async () => {
    const ready = await fetch(`${client.admin}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe('LIVE\n');
    const dump = (await (await fetch(`${client.admin}/config_dump`)).json()) as {
      version: string;
      snapshot: { proxy: { workload: string } };
    };
    expect(dump.snapshot.proxy.workload).toBe('reviews-v2');
    const stats = await (await fetch(`${client.admin}/stats`)).text();
    expect(stats).toContain(`cluster.outbound|9080||ratings.${NS}.svc.cluster.local.membership_healthy: 1`);
    const certs = (await (await fetch(`${client.admin}/certs`)).json()) as {
      spiffeId: string;
      chain: unknown[];
    };
    expect(certs.spiffeId).toBe(spiffeOf(NS, 'bookinfo-reviews'));
    expect(certs.chain.length).toBeGreaterThanOrEqual(2);
    const clusters = (await (await fetch(`${client.admin}/clusters`)).json()) as Array<{
      name: string;
      endpoints: unknown[];
    }>;
    expect(clusters[0]?.endpoints).toHaveLength(1);
    expect((await fetch(`${client.admin}/nope`)).status).toBe(404);
    expect(
      metricValue(await scrape(client.metrics), 'meshfed_proxy_cert_expiry_timestamp_seconds'),
    ).toBeGreaterThan(Date.now() / 1000);
  });

  it('/ready answers 503 until a config and a certificate are installed', async () => {
    const bare = await startTestProxy(mesh, { workload: 'bare', namespace: NS }, undefined);
    try {
      const res = await fetch(`${bare.admin}/ready`);
      expect(res.status).toBe(503);
      expect(await res.text()).toContain('no configuration');
      expect(bare.handle.ready()).toBe(false);
    } finally {
      await bare.close();
    }
  });
});

describe('metric cardinality', () => {
  it('folds series beyond the cap into one overflow series', async () => {
    const capped = await startTestProxy(
      mesh,
      { workload: 'capped', namespace: NS },
      sidecarSnapshot({
        workload: 'capped',
        namespace: NS,
        roots: [mesh.rootPem],
        services: [
          {
            name: 'ratings',
            namespace: NS,
            ports: [{ name: 'http', port: 9080, protocol: 'http' }],
            http: [{ route: [{ destination: { host: 'ratings' } }], retries: { attempts: 0 } }],
            clusters: [{ subset: '_', endpoints: [sidecarEndpoint(server.handle.ports.inbound, serverW)] }],
          },
        ],
      }),
      { limits: { maxSeries: 3 } },
    );
    try {
      for (const status of [200, 201, 202, 203, 204, 205])
        await request(capped.handle.ports.outbound, 'ratings:9080', `/status/${status}`);
      const text = await scrape(capped.metrics);
      const series = text.split('\n').filter((l) => l.startsWith('istio_requests_total{'));
      expect(series).toHaveLength(4);
      expect(metricValue(text, 'istio_requests_total', { response_code: 'overflow' })).toBe(3);
      expect(metricValue(text, 'istio_requests_total')).toBe(6);
    } finally {
      await capped.close();
    }
  });
});

// Keep the http import used for the collector type.
void http;
