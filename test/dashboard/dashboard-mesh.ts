/**
 * A small mesh for the dashboard tests, all in-process on free ports: a
 * real global CP, zones `zone-a` and `zone-b` connected to it over KDS,
 * and in zone-a a `frontend` sidecar calling a `backend` app through its
 * own sidecar (mTLS, config over MDS). Telemetry intervals are shortened so
 * what the proxies record reaches global within a second or so.
 */

import { startProxy, type ProxyHandle } from '../../proxy/index.js';
import { http } from '../common/http.js';
import { waitFor } from '../common/wait.js';
import { service, startTestZoneCp, workload, type TestZoneCp } from '../common/zone-cp.js';
import { startTestGlobal, type TestGlobal } from '../kds/kds-harness.js';
import { keepAlive, request, startApp, type TestApp } from '../proxy/proxy-harness.js';
import type { DashboardState, GraphEdge } from '../../global-cp/dashboard/dashboard-state.js';

// Read when the proxies, zones and dashboard are built (below).
process.env.MESHFED_TELEMETRY_INTERVAL_MS = '250';
process.env.MESHFED_ZONE_TELEMETRY_INTERVAL_MS = '250';
process.env.MESHFED_DASHBOARD_PUSH_MS = '300';

export const NS = 'shop';
export const EDGE_ID = `zone-a/${NS}/frontend->${NS}/backend`;

export interface DashboardMesh {
  global: TestGlobal;
  zoneA: TestZoneCp;
  zoneB: TestZoneCp;
  frontend: ProxyHandle;
  backend: ProxyHandle;
  app: TestApp;
  /** `count` GET requests frontend → backend, 8 at a time; their statuses. */
  call(count: number): Promise<number[]>;
  /** GET /api/v1/dashboard/state with the admin token. */
  state(): Promise<DashboardState>;
  edge(state: DashboardState): GraphEdge | undefined;
  /** Applies YAML through global's API. */
  apply(yaml: string): Promise<void>;
  close(): Promise<void>;
}

export async function startDashboardMesh(): Promise<DashboardMesh> {
  const global = await startTestGlobal();
  const connect = async (zone: string) => ({
    addresses: [global.cp.kdsAddress],
    caPem: global.cp.caCertPem,
    token: (await global.zoneToken(zone)).token,
  });
  const [zoneA, zoneB] = await Promise.all([
    startTestZoneCp({ zone: 'zone-a', global: await connect('zone-a'), pushDebounceMs: 20 }),
    startTestZoneCp({ zone: 'zone-b', global: await connect('zone-b'), pushDebounceMs: 20 }),
  ]);
  const app = await startApp('backend');
  const proxyFor = async (name: string): Promise<ProxyHandle> => {
    const token = await zoneA.issueProxyToken({ workload: name, namespace: NS, serviceAccount: name });
    return startProxy({
      workload: name,
      namespace: NS,
      proxyId: `${name}-1`,
      ports: { outbound: 0, inbound: 0, admin: 0, metrics: 0 },
      inboundHost: '127.0.0.1',
      metricsHost: '127.0.0.1',
      zoneCp: { address: zoneA.cp.grpcAddress, caPem: zoneA.cp.caPem, token },
    });
  };
  const backend = await proxyFor('backend');
  const frontend = await proxyFor('frontend');
  zoneA.discovery?.set([
    service('backend', NS, [
      workload('backend', NS, {
        inboundPort: backend.ports.inbound,
        ports: { http: app.port },
        labels: { app: 'backend', version: 'v1' },
      }),
    ]),
    service('frontend', NS, [
      workload('frontend', NS, { inboundPort: frontend.ports.inbound, ports: { http: 1 } }),
    ]),
  ]);
  zoneB.discovery?.set([
    service('catalog', NS, [
      workload('catalog-1', NS, { labels: { app: 'catalog' } }),
      // What a VM join leaves: a WorkloadEntry labelled with its WorkloadGroup (here failing its probe).
      workload('catalog-vm-1', NS, {
        address: '192.0.2.10',
        labels: { app: 'catalog', 'meshfed.io/workload-group': 'catalog-vms' },
        healthy: false,
      }),
    ]),
  ]);
  await waitFor(() => (frontend.ready() && backend.ready()) || undefined, {
    what: 'both sidecars ready (certificate + snapshot)',
    timeoutMs: 20_000,
  });

  const mesh: DashboardMesh = {
    global,
    zoneA,
    zoneB,
    frontend,
    backend,
    app,
    async call(count) {
      const statuses: number[] = [];
      for (let i = 0; i < count; i += 8) {
        const batch = Math.min(8, count - i);
        const answers = await Promise.all(
          Array.from({ length: batch }, () => request(frontend.ports.outbound, 'backend', '/items')),
        );
        statuses.push(...answers.map((a) => a.status));
      }
      return statuses;
    },
    async state() {
      const answer = await http(`${global.cp.url}/api/v1/dashboard/state`, { token: global.admin });
      if (answer.status !== 200) throw new Error(`state answered ${answer.status}: ${answer.text}`);
      return answer.json as DashboardState;
    },
    edge(state) {
      return state.edges.find((e) => e.id === EDGE_ID);
    },
    apply: (yaml) => global.apply(yaml),
    async close() {
      keepAlive.destroy();
      await frontend.close();
      await backend.close();
      await app.close();
      await zoneA.close();
      await zoneB.close();
      await global.close();
    },
  };
  return mesh;
}

/** A VirtualService aborting `percent` % of the calls to backend with 503. */
export function faultYaml(percent: number): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: backend-fault
  namespace: ${NS}
spec:
  hosts: [backend]
  http:
    - fault:
        abort:
          percentage:
            value: ${percent}
          httpStatus: 503
      route:
        - destination:
            host: backend
`;
}
