/**
 * Test harness for the sidecar: real apps (node http servers on port 0
 * that record what they see), real proxies (startProxy on free ports) with
 * real certificates from test/common/pki-fixtures, and a builder for the
 * SidecarSnapshots a zone CP would push.
 */

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  SIDECAR_SNAPSHOT_TYPE,
  type AuthorizationPolicyConfig,
  type EndpointConfig,
  type InboundPort,
  type IstioObject,
  type LocalityConfig,
  type MtlsMode,
  type ServicePort,
  type SidecarSnapshot,
} from '../../core/mesh/snapshot.js';
import { startProxy, type ProxyHandle, type ProxyOptions } from '../../proxy/index.js';
import { createTestMesh, type TestMesh, type WorkloadCredentials } from '../common/pki-fixtures.js';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface TestApp {
  port: number;
  name: string;
  requests: RecordedRequest[];
  server: http.Server;
  close(): Promise<void>;
}

export type AppHandler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

/** An app answering `200 <name>` (or running `handler`), recording every request. */
export async function startApp(name: string, handler?: AppHandler): Promise<TestApp> {
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (handler !== undefined) {
        handler(req, res, body);
        return;
      }
      const text = `${name}\n`;
      res.writeHead(200, {
        'content-type': 'text/plain',
        'content-length': Buffer.byteLength(text),
        'x-app': name,
      });
      res.end(text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    name,
    requests,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface WorkloadSpec {
  workload: string;
  namespace: string;
  serviceAccount?: string;
  zone?: string;
  labels?: Record<string, string>;
}

export interface ServiceSpec {
  name: string;
  namespace: string;
  ports?: ServicePort[];
  http?: IstioObject[];
  tcp?: IstioObject[];
  clusters: Array<{ subset: string; trafficPolicy?: IstioObject; endpoints: EndpointConfig[] }>;
  locality?: LocalityConfig;
}

export interface SnapshotSpec extends WorkloadSpec {
  trustDomain?: string;
  roots: string[];
  inboundPorts?: InboundPort[];
  defaultMtls?: MtlsMode;
  authorization?: AuthorizationPolicyConfig[];
  services?: ServiceSpec[];
  accessLog?: boolean;
}

export function fqdn(name: string, namespace: string): string {
  return `${name}.${namespace}.svc.cluster.local`;
}

export function spiffeOf(namespace: string, serviceAccount: string, trustDomain = 'cluster.local'): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

export function sidecarSnapshot(spec: SnapshotSpec): SidecarSnapshot {
  const sa = spec.serviceAccount ?? spec.workload;
  const trustDomain = spec.trustDomain ?? 'cluster.local';
  return {
    type: SIDECAR_SNAPSHOT_TYPE,
    proxy: {
      proxyId: `${spec.workload}.${spec.namespace}`,
      workload: spec.workload,
      namespace: spec.namespace,
      serviceAccount: sa,
      spiffeId: spiffeOf(spec.namespace, sa, trustDomain),
      zone: spec.zone ?? 'zone-a',
      labels: spec.labels ?? { app: spec.workload },
      canonicalService: spec.labels?.app ?? spec.workload,
    },
    trust: { trustDomain, roots: spec.roots },
    inbound: {
      ports: spec.inboundPorts ?? [],
      defaultMtls: spec.defaultMtls ?? 'PERMISSIVE',
      authorization: spec.authorization ?? [],
    },
    outbound: {
      services: (spec.services ?? []).map((s) => ({
        host: fqdn(s.name, s.namespace),
        name: s.name,
        namespace: s.namespace,
        aliases: [s.name, `${s.name}.${s.namespace}`, `${s.name}.${s.namespace}.svc`],
        ports: s.ports ?? [{ name: 'http', port: 80, protocol: 'http' }],
        http: s.http ?? [],
        tcp: s.tcp ?? [],
        clusters: s.clusters.map((c) => ({
          subset: c.subset,
          trafficPolicy: c.trafficPolicy ?? {},
          endpoints: c.endpoints,
        })),
        locality: s.locality ?? { preferLocalZone: true, pinnedToZone: false },
      })),
    },
    telemetry: { accessLog: spec.accessLog ?? false },
  };
}

/** An endpoint entry for a server proxy's inbound listener. */
export function sidecarEndpoint(
  inboundPort: number,
  w: {
    workload: string;
    namespace: string;
    serviceAccount?: string;
    zone?: string;
    labels?: Record<string, string>;
  },
  extra: Partial<EndpointConfig> = {},
): EndpointConfig {
  return {
    address: '127.0.0.1',
    port: inboundPort,
    via: 'sidecar',
    zone: w.zone ?? 'zone-a',
    weight: 1,
    healthy: true,
    labels: { app: w.workload, ...(w.labels ?? {}), 'topology.istio.io/cluster': w.zone ?? 'zone-a' },
    workload: w.workload,
    identities: [spiffeOf(w.namespace, w.serviceAccount ?? w.workload)],
    ...extra,
  };
}

export interface TestProxy {
  handle: ProxyHandle;
  credentials: WorkloadCredentials;
  outbound: string;
  admin: string;
  metrics: string;
  close(): Promise<void>;
}

/** A proxy on free ports with a real workload certificate; `snapshot` may come later via handle.applySnapshot. */
export async function startTestProxy(
  mesh: TestMesh,
  w: WorkloadSpec,
  snapshot: SidecarSnapshot | undefined,
  options: Partial<ProxyOptions> = {},
): Promise<TestProxy> {
  const credentials = mesh.workload({
    namespace: w.namespace,
    serviceAccount: w.serviceAccount ?? w.workload,
    zone: w.zone ?? 'zone-a',
  });
  const handle = await startProxy({
    workload: w.workload,
    namespace: w.namespace,
    ports: { outbound: 0, inbound: 0, admin: 0, metrics: 0 },
    inboundHost: '127.0.0.1',
    metricsHost: '127.0.0.1',
    credentials,
    ...(snapshot === undefined ? {} : { snapshot }),
    ...options,
  });
  return {
    handle,
    credentials,
    outbound: `http://127.0.0.1:${handle.ports.outbound}`,
    admin: `http://127.0.0.1:${handle.ports.admin}`,
    metrics: `http://127.0.0.1:${handle.ports.metrics}/stats/prometheus`,
    close: () => handle.close(),
  };
}

export { createTestMesh };

/** A proxy for workload `w` trusting `mesh`'s root, with the rest of its snapshot from `spec`. */
export function startMeshProxy(
  mesh: TestMesh,
  w: WorkloadSpec,
  spec: Omit<SnapshotSpec, keyof WorkloadSpec | 'roots'>,
  options: Partial<ProxyOptions> = {},
): Promise<TestProxy> {
  return startTestProxy(mesh, w, sidecarSnapshot({ ...w, roots: [mesh.rootPem], ...spec }), options);
}

/** A service whose only cluster (subset `_`) is the inbound listener of `server` (workload `serverW`). */
export function serviceVia(
  name: string,
  namespace: string,
  server: TestProxy,
  serverW: WorkloadSpec,
  extra: Omit<ServiceSpec, 'name' | 'namespace' | 'clusters'> = {},
): ServiceSpec {
  return {
    name,
    namespace,
    ...extra,
    clusters: [{ subset: '_', endpoints: [sidecarEndpoint(server.handle.ports.inbound, serverW)] }],
  };
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP/1.1 request through a proxy's outbound port with the Host header naming the service. */
export function request(
  proxyPort: number,
  host: string,
  path = '/',
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    agent?: http.Agent | false;
  } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: proxyPort,
        path,
        method: options.method ?? 'GET',
        headers: { host, ...(options.headers ?? {}) },
        agent: options.agent ?? keepAlive,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.body !== undefined) req.end(options.body);
    else req.end();
  });
}

/** Shared keep-alive agent for test clients (destroy in afterAll). */
export const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** Reads one metric's value (sum over series matching every label given) from Prometheus text. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    const close = rest.lastIndexOf('}');
    const labelText = rest[0] === '{' ? rest.slice(1, close) : '';
    const value = Number(
      rest
        .slice(close + 1)
        .trim()
        .split(' ')[0],
    );
    const parsed: Record<string, string> = {};
    for (const m of labelText.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      parsed[m[1] ?? ''] = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => parsed[k] === v)) total += value;
  }
  return total;
}

export async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  return res.text();
}
