/**
 * One sample workload of the demo: its app (a child process, so that
 * "kill an endpoint" is a real kill), its sidecar (proxy/ `startProxy`,
 * certificate from the zone CA with a proxy token, config over MDS), and
 * its registration in the zone (demo-registration.ts).
 */

import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { ProxyHandle } from '../../proxy/index.js';
import { requestOk } from './demo-http.js';
import type { WorkloadPorts } from './demo-ports.js';
import { spawnDemoApp, type DemoChild } from './demo-process.js';
import { registerWorkload } from './demo-registration.js';
import type { DemoZone } from './demo-zones.js';

/** The namespace of every demo workload. */
export const DEMO_NAMESPACE = 'demo';

export interface DemoWorkloadSpec {
  /** Workload (and WorkloadEntry) name, e.g. `backend-v1`. */
  name: string;
  /** The `app` label: the service it belongs to (deploy/samples/00-services.yaml). */
  app: string;
  version: string;
  serviceAccount: string;
  /** A service the app calls on `GET /` through its sidecar, e.g. `backend.demo`. */
  upstream?: string;
}

/** One ready-file `workloads` entry (DESIGN.md keys, plus what a user needs to kill it). */
export interface DemoWorkloadInfo {
  name: string;
  namespace: string;
  zone: string;
  service: string;
  version: string;
  vm: boolean;
  app: string;
  outbound: string;
  admin: string;
  metrics: string;
  inbound: string;
  /** The app's process: `kill <pid>` takes this endpoint down. */
  pid: number;
  /** With --netns: the network namespace the workload runs in (its loopback addresses are inside it). */
  netns?: string;
}

export interface DemoWorkload {
  readonly info: DemoWorkloadInfo;
  /** True once the sidecar has a certificate and a config. */
  ready(): boolean;
  /** Stop probing, stop the app and the sidecar. Idempotent. */
  close(): Promise<void>;
}

export function portsInfo(
  zone: string,
  appPort: number,
  proxy: ProxyHandle,
): Pick<DemoWorkloadInfo, 'zone' | 'app' | 'outbound' | 'admin' | 'metrics' | 'inbound'> {
  return {
    zone,
    app: `http://127.0.0.1:${appPort}`,
    outbound: `http://127.0.0.1:${proxy.ports.outbound}`,
    admin: `http://127.0.0.1:${proxy.ports.admin}`,
    metrics: `http://127.0.0.1:${proxy.ports.metrics}/metrics`,
    inbound: `127.0.0.1:${proxy.ports.inbound}`,
  };
}

/** Start a workload in `zone`; resolves once its sidecar has a certificate and a config. */
export async function startDemoWorkload(
  spec: DemoWorkloadSpec,
  zone: DemoZone,
  adminToken: string,
  ports: WorkloadPorts,
  logger: Logger,
  notice: (line: string) => void,
): Promise<DemoWorkload> {
  const zoneApi = zone.cp.restUrl;
  const issued = await requestOk(
    `a proxy token for ${spec.name}`,
    'POST',
    `${zoneApi}/api/v1/tokens`,
    adminToken,
    {
      kind: 'proxy',
      workload: spec.name,
      namespace: DEMO_NAMESPACE,
      serviceAccount: spec.serviceAccount,
    },
  );
  const proxyToken = String(issued.token);
  const { startProxy } = await import('../../proxy/index.js');
  const proxy = await startProxy({
    workload: spec.name,
    namespace: DEMO_NAMESPACE,
    proxyId: `${spec.name}.${DEMO_NAMESPACE}-${zone.name}`,
    ports: { outbound: ports.outbound, inbound: ports.inbound, admin: ports.admin, metrics: ports.metrics },
    inboundHost: '127.0.0.1',
    metricsHost: '127.0.0.1',
    limits: { drainTimeoutMs: 1000 },
    zoneCp: { address: zone.cp.grpcAddress, caPem: zone.cp.caPem, token: proxyToken },
  });
  let child: DemoChild | undefined;
  let stopRegistration: (() => void) | undefined;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      stopRegistration?.();
      await child?.stop();
      await proxy.close();
    })();
    return closing;
  };
  try {
    child = await spawnDemoApp({
      service: spec.app,
      version: spec.version,
      zone: zone.name,
      port: ports.app,
      ...(spec.upstream === undefined
        ? {}
        : { upstream: spec.upstream, outbound: `127.0.0.1:${proxy.ports.outbound}` }),
    });
    const appChild = child;
    const registration = await registerWorkload({
      zoneApi,
      zone: zone.name,
      namespace: DEMO_NAMESPACE,
      name: spec.name,
      proxyToken,
      labels: { app: spec.app, version: spec.version },
      address: '127.0.0.1',
      inboundPort: proxy.ports.inbound,
      app: appChild,
      probeHost: '127.0.0.1',
      logger,
      onAppExit: (code, signal) =>
        notice(
          `${DEMO_NAMESPACE}/${spec.name} (${zone.name}): app pid ${appChild.pid} exited (${signal ?? `code ${code}`}); reported unhealthy to ${zone.name}`,
        ),
    });
    stopRegistration = () => registration.stop();
    return {
      info: {
        name: spec.name,
        namespace: DEMO_NAMESPACE,
        service: spec.app,
        version: spec.version,
        vm: false,
        ...portsInfo(zone.name, appChild.port, proxy),
        pid: appChild.pid,
      },
      ready: () => proxy.ready(),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Resolves once every proxy has a certificate and a config (or throws naming the laggards). */
export async function waitForProxiesReady(
  proxies: Array<{ name: string; ready(): boolean }>,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const waiting = proxies.filter((p) => !p.ready()).map((p) => p.name);
    if (waiting.length === 0) return;
    if (Date.now() > deadline) {
      throw new MeshError(
        ErrorCodes.UNAVAILABLE,
        `sidecars not ready within ${timeoutMs / 1000} s (no certificate or no config yet): ${waiting.join(', ')}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
