/**
 * A three-zone mesh in one process for the failover suites: a real global
 * CP, zone CPs zone-a, zone-b and zone-c connected to it over KDS, the
 * east-west gateways of zone-b and zone-c fed by their zone over MDS, and
 * real sidecars (certificates from each zone's intermediate, config over
 * MDS) in front of real apps. Service `echo.demo` runs in every zone
 * (app `echo-<zone letter>` answers its own name); `client` in zone-a
 * calls it through its outbound listener.
 */

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startGateway, type GatewayHandle } from '../../eastwest-gateway/index.js';
import { startProxy, type ProxyHandle } from '../../proxy/index.js';
import type { WorkloadEndpoint } from '../../zone-cp/discovery/discovery.js';
import type { ServiceInspection } from '../../zone-cp/api/inspect-service-routes.js';
import { http } from '../common/http.js';
import { freePort } from '../../core/free-port.js';
import { waitFor } from '../common/wait.js';
import { service, startTestZoneCp, workload, type TestZoneCp } from '../common/zone-cp.js';
import { startTestGlobal, type TestGlobal } from '../kds/kds-harness.js';
import { request, startApp, type Answer, type TestApp } from '../proxy/proxy-harness.js';

export const NS = 'demo';
export const ZONES = ['zone-a', 'zone-b', 'zone-c'] as const;
export type ZoneName = (typeof ZONES)[number];

export interface MeshZone {
  name: ZoneName;
  cp: TestZoneCp;
  gatewayPort: number;
  gateway: GatewayHandle | undefined;
  echoApp: TestApp;
  echoProxy: ProxyHandle;
  /** What the echo app answers now: 200 with its name, or this status. */
  failWith: number | undefined;
  echoHealthy: boolean;
}

export interface FailoverMesh {
  global: TestGlobal;
  zones: Map<ZoneName, MeshZone>;
  client: ProxyHandle;
  /** Marks `zone`'s echo endpoint healthy or not in its discovery (a readiness probe would). */
  setEchoHealthy(zone: ZoneName, healthy: boolean): void;
  /** `count` calls from client to echo.demo; answers by app name (or `503 <flag>` for local replies). */
  calls(count: number): Promise<Map<string, number>>;
  call(): Promise<Answer>;
  close(): Promise<void>;
}

function zoneOf(zones: Map<ZoneName, MeshZone>, name: ZoneName): MeshZone {
  const zone = zones.get(name);
  if (zone === undefined) throw new Error(`no zone ${name}`);
  return zone;
}

async function proxyFor(cp: TestZoneCp, name: string): Promise<ProxyHandle> {
  const token = await cp.issueProxyToken({ workload: name, namespace: NS, serviceAccount: name });
  return startProxy({
    workload: name,
    namespace: NS,
    proxyId: `${name}-1`,
    ports: { outbound: 0, inbound: 0, admin: 0, metrics: 0 },
    inboundHost: '127.0.0.1',
    metricsHost: '127.0.0.1',
    zoneCp: { address: cp.cp.grpcAddress, caPem: cp.cp.caPem, token },
  });
}

async function gatewayFor(zone: MeshZone): Promise<GatewayHandle> {
  const token = await zone.cp.issueProxyToken({
    workload: 'eastwest-gateway',
    namespace: 'istio-system',
    serviceAccount: 'eastwest-gateway',
    role: 'gateway',
  });
  const tokenFile = path.join(zone.cp.dir, 'gateway-token');
  writeFileSync(tokenFile, token, { mode: 0o600 });
  return startGateway({
    host: '127.0.0.1',
    port: zone.gatewayPort,
    adminPort: 0,
    processMetrics: false,
    mds: {
      address: zone.cp.cp.grpcAddress,
      caPem: zone.cp.cp.caPem,
      tokenFile,
      proxyId: `gateway-${zone.name}`,
    },
  });
}

export async function startFailoverMesh(): Promise<FailoverMesh> {
  const global = await startTestGlobal();
  const zones = new Map<ZoneName, MeshZone>();
  let client: ProxyHandle | undefined;
  const closeAll = async (): Promise<void> => {
    await client?.close();
    for (const zone of zones.values()) {
      await zone.echoProxy.close();
      await zone.gateway?.close();
      await zone.echoApp.close();
    }
    for (const zone of zones.values()) await zone.cp.close();
    await global.close();
  };
  try {
    for (const name of ZONES) {
      const gatewayPort = await freePort();
      const cp = await startTestZoneCp({
        zone: name,
        global: {
          addresses: [global.cp.kdsAddress],
          caPem: global.cp.caCertPem,
          token: (await global.zoneToken(name)).token,
        },
        gatewayAddress: `127.0.0.1:${gatewayPort}`,
        pushDebounceMs: 20,
      });
      const letter = name.slice(-1);
      const entry: Partial<MeshZone> = { name, cp, gatewayPort, failWith: undefined, echoHealthy: true };
      entry.echoApp = await startApp(`echo-${letter}`, (_req, res) => {
        const status = entry.failWith ?? 200;
        const text = status === 200 ? `echo-${letter}\n` : `echo-${letter} failing\n`;
        res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      });
      entry.echoProxy = await proxyFor(cp, 'echo');
      entry.gateway = undefined;
      zones.set(name, entry as MeshZone);
    }
    client = await proxyFor(zoneOf(zones, 'zone-a').cp, 'client');
    const mesh: FailoverMesh = {
      global,
      zones,
      client,
      setEchoHealthy(name, healthy) {
        const zone = zoneOf(zones, name);
        zone.echoHealthy = healthy;
        publish(zone, name === 'zone-a' ? client : undefined);
      },
      async calls(count) {
        const seen = new Map<string, number>();
        for (let i = 0; i < count; i++) {
          const answer = await mesh.call();
          const key = answer.status === 200 ? answer.body.trim() : `${answer.status} ${answer.body.trim()}`;
          seen.set(key, (seen.get(key) ?? 0) + 1);
        }
        return seen;
      },
      call() {
        return request(clientOf(mesh).ports.outbound, 'echo.demo', '/');
      },
      close: closeAll,
    };
    for (const zone of zones.values()) publish(zone, zone.name === 'zone-a' ? client : undefined);
    // Gateways start once their zone knows the echo endpoints, so their first table is complete.
    for (const name of ['zone-b', 'zone-c'] as const) {
      const zone = zoneOf(zones, name);
      zone.gateway = await gatewayFor(zone);
    }
    await waitFor(
      () => [client, ...[...zones.values()].map((z) => z.echoProxy)].every((p) => p?.ready()) || undefined,
      {
        what: 'every sidecar ready (certificate + snapshot)',
        timeoutMs: 20_000,
      },
    );
    // The catalog has reached zone-a once both remote zones report a healthy echo there.
    await waitFor(
      async () => {
        const answer = await inspectEcho(zoneOf(zones, 'zone-a').cp);
        const remote = answer.zones.filter((z) => !z.local && z.healthy > 0 && z.gateway !== undefined);
        return remote.length === 2 || undefined;
      },
      { what: "zone-b and zone-c in zone-a's view of echo (catalog over KDS)", timeoutMs: 20_000 },
    );
    return mesh;
  } catch (err) {
    await closeAll().catch(() => undefined);
    throw err;
  }
}

/** GET /inspect/services/echo.demo on a zone (query: proxy or workload), as parsed JSON. */
export async function inspectEcho(cp: TestZoneCp, query = ''): Promise<ServiceInspection> {
  const answer = await http(`${cp.cp.restUrl}/inspect/services/echo.demo${query}`, { token: cp.admin });
  if (answer.status !== 200) throw new Error(`inspect answered ${answer.status}: ${answer.text}`);
  return answer.json as ServiceInspection;
}

function clientOf(mesh: FailoverMesh): ProxyHandle {
  return mesh.client;
}

/** Sets a zone's discovery: echo (and, in zone-a, the client workload). */
function publish(zone: MeshZone, client: ProxyHandle | undefined): void {
  const echo = workload('echo', NS, {
    inboundPort: zone.echoProxy.ports.inbound,
    ports: { http: zone.echoApp.port },
    healthy: zone.echoHealthy,
  });
  const extra: WorkloadEndpoint[] =
    client === undefined
      ? []
      : [
          workload('client', NS, {
            inboundPort: client.ports.inbound,
            ports: { http: 1 },
            labels: { app: 'client' },
          }),
        ];
  zone.cp.discovery?.set([service('echo', NS, [echo])], extra);
}
