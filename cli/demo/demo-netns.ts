/**
 * `meshfed demo --netns` (root): the same mesh as the loopback demo, but
 * each zone in its own network namespace (netns-topology.ts, as the e2e
 * suite builds it), so the only path between zones is the other zone's
 * east-west gateway. The global CP runs in the demo's process on the host
 * (API on 127.0.0.1, KDS on the bridge address); every zone component is
 * the built CLI in a child process inside its zone (`meshfed zone-cp`,
 * `meshfed gateway`, `meshfed proxy`, `meshfed vm-agent join`/`run`), next
 * to the sample apps. Each zone uses the documented ports (5682, 5678,
 * 15443, …) inside its namespace; a relay makes the zone API reachable from
 * the host on the zone's address.
 */

import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { createLogger, type Logger } from '../../core/log.js';
import { SIDECAR_ENV } from '../../core/sidecar-node-options.js';
import { SIDECAR_BUNDLE } from '../sidecar-entry.js';
import type { ChildProcess } from 'node:child_process';
import { pollUntil, requestOk, waitForHttpOk } from './demo-http.js';
import { DEMO_WORKLOADS, DEMO_ZONES, VM_ZONE_INDEX } from './demo-plan.js';
import { applySamples } from './demo-policies.js';
import { fixedWorkload } from './demo-ports.js';
import { spawnDemoApp, spawnDemoChild, type DemoChild } from './demo-process.js';
import { registerWorkload } from './demo-registration.js';
import type { DemoReadyInfo } from './demo-summary.js';
import { joinToken } from './demo-vm.js';
import { DEMO_NAMESPACE, type DemoWorkloadInfo } from './demo-workloads.js';
import type { NetnsTopology, TopologyZone } from './netns-topology.js';

/** Ports inside every zone namespace: the documented defaults. */
const ZONE_PORTS = { rest: 5682, grpc: 5678, gateway: 15443, gatewayAdmin: 15021 };

export interface NetnsDemoContext {
  dataDir: string;
  globalPort: number;
  samplesDir: string;
  /** The built CLI entry (dist/cli/main.js) the zone processes run. */
  cliMain: string;
  trafficPerSecond: number;
  notice: (line: string) => void;
  /** Register a stop step (run in reverse order on close or on a failed start). */
  onStop: (stop: () => Promise<void> | void) => void;
  startTraffic: (url: string) => void;
}

interface ZoneProcess {
  label: string;
  child: ChildProcess;
  tail(): string;
}

/** Is the netns demo possible here? Throws CONFIG with the reason and what to do otherwise. */
export async function checkNetns(): Promise<void> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      '--netns needs root on Linux (it creates network namespaces): run it with sudo, or without --netns',
    );
  }
  const { isNetnsAvailable } = await import('./netns-topology.js');
  const probe = await isNetnsAvailable();
  if (!probe.available) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `--netns is not possible here (${probe.reason ?? 'unknown reason'}): run meshfed demo without --netns`,
    );
  }
}

/** Start the netns demo; resolves with the ready info once traffic flows. */
export async function startNetnsDemo(
  ctx: NetnsDemoContext,
  started: number,
): Promise<Omit<DemoReadyInfo, 'pid'>> {
  const logger = createLogger('demo');
  const logsDir = path.join(ctx.dataDir, 'logs');
  await fs.mkdir(logsDir, { recursive: true });
  const { createNetnsTopology } = await import('./netns-topology.js');
  const topology: NetnsTopology = await createNetnsTopology({
    prefix: 'mfdemo',
    zones: DEMO_ZONES,
    allowedPorts: [ZONE_PORTS.gateway],
    requireNetns: true,
  });
  ctx.onStop(() => topology.close());
  const processes: ZoneProcess[] = [];
  // Graceful first: SIGTERM every zone process, give them 3 s, then topology.close() kills what is left.
  ctx.onStop(async () => {
    await Promise.all(
      processes.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.child.exitCode !== null || p.child.signalCode !== null || p.child.pid === undefined) {
              resolve();
              return;
            }
            const timer = setTimeout(resolve, 3000);
            p.child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            try {
              process.kill(-p.child.pid, 'SIGTERM');
            } catch {
              resolve();
            }
          }),
      ),
    );
  });

  const meshfed = (zone: TopologyZone, label: string, args: string[]): ZoneProcess => {
    // Sidecars run as deployed: this build's meshfed-proxy bundle (not the one
    // beside `meshfed`, which may be a link elsewhere) in the sidecar's
    // environment; nothing else inherits our NODE_OPTIONS.
    const sidecar = args[0] === 'proxy';
    const entry = sidecar ? [SIDECAR_BUNDLE, ...args.slice(1)] : [ctx.cliMain, ...args];
    const child = topology.spawn(zone.name, process.execPath, entry, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: sidecar ? { ...process.env, ...SIDECAR_ENV } : { ...process.env, NODE_OPTIONS: '' },
    });
    const log = createWriteStream(path.join(logsDir, `${label}.log`), { flags: 'a' });
    let tail = '';
    child.stdout?.pipe(log, { end: false });
    child.stderr?.on('data', (chunk: Buffer) => {
      log.write(chunk);
      tail = (tail + chunk.toString('utf8')).slice(-2000);
    });
    child.once('exit', () => log.end());
    const p = { label, child, tail: () => tail };
    processes.push(p);
    return p;
  };
  /** Poll `probe`, failing at once with the process's stderr when it exits meanwhile. */
  const waitAlive = async (p: ZoneProcess, what: string, probe: () => Promise<boolean>): Promise<void> => {
    await pollUntil(what, async () => {
      if (p.child.exitCode !== null) {
        throw new MeshError(
          ErrorCodes.UNAVAILABLE,
          `${p.label} exited: ${p.tail().trim().split('\n').pop() ?? ''}`,
        );
      }
      return (await probe()) ? true : undefined;
    });
  };
  const netnsPrefix = (zone: TopologyZone): string[] =>
    zone.netns === undefined ? [] : ['ip', 'netns', 'exec', zone.netns];
  const apps: DemoChild[] = [];
  ctx.onStop(async () => {
    await Promise.all(apps.map((a) => a.stop()));
  });

  const { startGlobalCp } = await import('../../global-cp/global-cp.js');
  const global = await startGlobalCp({
    dataDir: path.join(ctx.dataDir, 'global'),
    port: ctx.globalPort,
    kdsHost: topology.hostAddress,
    kdsPort: ctx.globalPort === 0 ? 0 : 5685,
  });
  ctx.onStop(() => global.close());
  await waitForHttpOk(`${global.url}/readyz`);
  const admin = (await fs.readFile(global.adminTokenFile, 'utf8')).trim();
  const caFile = path.join(ctx.dataDir, 'mesh-ca.pem');
  await fs.writeFile(caFile, global.caCertPem);
  const appliedSamples = applySamples(global.url, admin, ctx.samplesDir);

  const zones = await Promise.all(
    DEMO_ZONES.map(async (name) => {
      const tz = topology.zone(name);
      const dir = path.join(ctx.dataDir, name);
      await fs.mkdir(dir, { recursive: true });
      const issued = await requestOk(
        `a zone token for ${name}`,
        'POST',
        `${global.url}/api/v1/tokens`,
        admin,
        {
          kind: 'zone',
          zone: name,
          name,
        },
      );
      const tokenFile = path.join(dir, 'zone-token');
      await fs.writeFile(tokenFile, String(issued.token), { mode: 0o600 });
      const cp = meshfed(tz, `zone-cp-${name}`, [
        'zone-cp',
        '--zone',
        name,
        '--port',
        String(ZONE_PORTS.rest),
        '--grpc-port',
        String(ZONE_PORTS.grpc),
        '--data-dir',
        dir,
        '--global-address',
        global.kdsAddress,
        '--global-ca-file',
        caFile,
        '--global-token-file',
        tokenFile,
        '--gateway-address',
        `${tz.address}:${ZONE_PORTS.gateway}`,
        '--push-debounce',
        '50ms',
      ]);
      const relay = await spawnDemoChild(
        'demo-relay-main.js',
        {
          MESHFED_DEMO_RELAY: JSON.stringify({
            listenHost: tz.address,
            listenPort: ZONE_PORTS.rest,
            targetHost: '127.0.0.1',
            targetPort: ZONE_PORTS.rest,
          }),
        },
        `the ${name} API relay`,
        netnsPrefix(tz),
      );
      apps.push(relay);
      const api = `http://${tz.address}:${ZONE_PORTS.rest}`;
      await waitAlive(cp, `zone-cp ${name} ready`, async () => (await fetch(`${api}/readyz`)).status === 200);
      const gatewayToken = await requestOk(
        `a gateway token from ${name}`,
        'POST',
        `${api}/api/v1/tokens`,
        admin,
        {
          kind: 'proxy',
          workload: 'eastwest-gateway',
          namespace: 'istio-system',
          serviceAccount: 'eastwest-gateway',
          role: 'gateway',
        },
      );
      const gatewayTokenFile = path.join(dir, 'gateway-token');
      await fs.writeFile(gatewayTokenFile, String(gatewayToken.token), { mode: 0o600 });
      meshfed(tz, `gateway-${name}`, [
        'gateway',
        '--host',
        '0.0.0.0',
        '--port',
        String(ZONE_PORTS.gateway),
        '--admin-port',
        String(ZONE_PORTS.gatewayAdmin),
        '--mds-address',
        `127.0.0.1:${ZONE_PORTS.grpc}`,
        '--mds-ca-file',
        caFile,
        '--mds-token-file',
        gatewayTokenFile,
        '--proxy-id',
        `eastwest-gateway-${name}`,
      ]);
      return { name, tz, dir, api };
    }),
  );
  await appliedSamples;

  const workloads: DemoWorkloadInfo[] = [];
  const startWorkload = async (index: number, zoneIndex: number): Promise<void> => {
    const entry = DEMO_WORKLOADS[index];
    const zone = zones[zoneIndex];
    if (entry === undefined || zone === undefined)
      throw new MeshError(ErrorCodes.INTERNAL, 'no such workload');
    const [, spec] = entry;
    const ports = fixedWorkload(index);
    const issued = await requestOk(
      `a proxy token for ${spec.name}`,
      'POST',
      `${zone.api}/api/v1/tokens`,
      admin,
      {
        kind: 'proxy',
        workload: spec.name,
        namespace: DEMO_NAMESPACE,
        serviceAccount: spec.serviceAccount,
      },
    );
    const tokenFile = path.join(zone.dir, `${spec.name}-token`);
    await fs.writeFile(tokenFile, String(issued.token), { mode: 0o600 });
    meshfed(zone.tz, `proxy-${spec.name}`, [
      'proxy',
      '--workload',
      spec.name,
      '--namespace',
      DEMO_NAMESPACE,
      '--proxy-id',
      `${spec.name}.${DEMO_NAMESPACE}-${zone.name}`,
      '--mds-address',
      `127.0.0.1:${ZONE_PORTS.grpc}`,
      '--mds-ca-file',
      caFile,
      '--mds-token-file',
      tokenFile,
      '--outbound-port',
      String(ports.outbound),
      '--inbound-port',
      String(ports.inbound),
      '--admin-port',
      String(ports.admin),
      '--metrics-port',
      String(ports.metrics),
      '--drain-timeout',
      '1s',
    ]);
    const app = await spawnDemoApp(
      {
        service: spec.app,
        version: spec.version,
        zone: zone.name,
        port: ports.app,
        host: '0.0.0.0',
        ...(spec.upstream === undefined
          ? {}
          : { upstream: spec.upstream, outbound: `127.0.0.1:${ports.outbound}` }),
      },
      netnsPrefix(zone.tz),
    );
    apps.push(app);
    const registration = await registerWorkload({
      zoneApi: zone.api,
      zone: zone.name,
      namespace: DEMO_NAMESPACE,
      name: spec.name,
      proxyToken: String(issued.token),
      labels: { app: spec.app, version: spec.version },
      address: '127.0.0.1',
      inboundPort: ports.inbound,
      app,
      probeHost: zone.tz.address,
      logger,
      onAppExit: (code, signal) =>
        ctx.notice(
          `${DEMO_NAMESPACE}/${spec.name} (${zone.name}): app pid ${app.pid} exited (${signal ?? `code ${code}`}); reported unhealthy to ${zone.name}`,
        ),
    });
    ctx.onStop(() => registration.stop());
    workloads.push(
      workloadInfo(spec.name, spec.app, spec.version, false, zone.name, zone.tz, ports, app.pid),
    );
  };

  const startVm = async (): Promise<void> => {
    const zone = zones[VM_ZONE_INDEX];
    if (zone === undefined) throw new MeshError(ErrorCodes.INTERNAL, 'no VM zone');
    const ports = fixedWorkload(DEMO_WORKLOADS.length);
    const token = await joinToken(zone.name, zone.api, admin);
    const app = await spawnDemoApp(
      { service: 'backend', version: 'v1', zone: zone.name, port: ports.app, host: '0.0.0.0', vm: true },
      netnsPrefix(zone.tz),
    );
    apps.push(app);
    const configDir = path.join(ctx.dataDir, 'vm-backend');
    await fs.rm(configDir, { recursive: true, force: true });
    const tokenFile = path.join(zone.dir, 'vm-join-token');
    await fs.writeFile(tokenFile, token, { mode: 0o600 });
    const joined = await topology.exec(
      zone.name,
      process.execPath,
      [
        ctx.cliMain,
        'vm-agent',
        'join',
        '--zone-cp',
        `https://127.0.0.1:${ZONE_PORTS.rest}`,
        '--token-file',
        tokenFile,
        '--address',
        '127.0.0.1',
        '--hostname',
        'demo-vm',
        '--service-port',
        String(app.port),
        '--inbound-port',
        String(ports.inbound),
        '--outbound-port',
        String(ports.outbound),
        '--admin-port',
        String(ports.admin),
        '--metrics-port',
        String(ports.metrics),
        '--no-systemd',
        '--config-dir',
        configDir,
        '-o',
        'json',
      ],
      30_000,
    );
    if (joined.code !== 0) {
      throw new MeshError(ErrorCodes.UNAVAILABLE, `vm-agent join failed: ${joined.stderr.trim()}`);
    }
    const result = JSON.parse(joined.stdout) as {
      config?: { workloadEntry?: string };
      workloadEntry?: string;
    };
    const entry = result.config?.workloadEntry ?? result.workloadEntry ?? 'backend-vm';
    meshfed(zone.tz, 'vm-agent', ['vm-agent', 'run', '--config-dir', configDir, '--drain-timeout', '1s']);
    app.onExit((code, signal) =>
      ctx.notice(
        `${DEMO_NAMESPACE}/${entry} (VM, ${zone.name}): app pid ${app.pid} exited (${signal ?? `code ${code}`}); its probe fails and the agent reports it unhealthy`,
      ),
    );
    workloads.push(workloadInfo(entry, 'backend', 'v1', true, zone.name, zone.tz, ports, app.pid));
  };

  await Promise.all([...DEMO_WORKLOADS.map(([zoneIndex], i) => startWorkload(i, zoneIndex)), startVm()]);
  await waitForProxies(zones, admin, logger);
  const frontend = workloads.find((w) => w.service === 'frontend');
  if (frontend !== undefined) {
    await pollUntil('a first call frontend → backend', async () => {
      const answer = await fetch(`${frontend.app}/`, { signal: AbortSignal.timeout(3000) });
      return answer.status === 200 ? true : undefined;
    });
    if (ctx.trafficPerSecond > 0) ctx.startTraffic(`${frontend.app}/`);
  }
  const order = (w: DemoWorkloadInfo): number =>
    w.service === 'frontend' ? 0 : w.vm ? 3 : w.zone === 'zone-a' ? 1 : 2;
  workloads.sort((a, b) => order(a) - order(b));
  return {
    globalApi: global.url,
    adminTokenFile: global.adminTokenFile,
    dashboard: `${global.url}/`,
    mode: 'netns',
    zones: zones.map((z) => ({
      name: z.name,
      api: z.api,
      mds: `${z.tz.address}:${ZONE_PORTS.grpc}`,
      gateway: `${z.tz.address}:${ZONE_PORTS.gateway}`,
      ...(z.tz.netns === undefined ? {} : { netns: z.tz.netns }),
    })),
    workloads,
    samples: ctx.samplesDir,
    dataDir: ctx.dataDir,
    startupMs: Date.now() - started,
  };
}

function workloadInfo(
  name: string,
  service: string,
  version: string,
  vm: boolean,
  zone: string,
  tz: TopologyZone,
  ports: ReturnType<typeof fixedWorkload>,
  pid: number,
): DemoWorkloadInfo {
  return {
    name,
    namespace: DEMO_NAMESPACE,
    zone,
    service,
    version,
    vm,
    // The app listens on every address of its namespace: the host reaches it on the zone's address.
    app: `http://${tz.address}:${ports.app}`,
    // The sidecar's outbound and admin listen on the namespace's loopback: `ip netns exec <netns> curl …`.
    outbound: `http://127.0.0.1:${ports.outbound}`,
    admin: `http://127.0.0.1:${ports.admin}`,
    metrics: `http://${tz.address}:${ports.metrics}/metrics`,
    inbound: `127.0.0.1:${ports.inbound}`,
    pid,
    ...(tz.netns === undefined ? {} : { netns: tz.netns }),
  };
}

/** Waits until each zone lists its gateway and sidecars as connected with an ACKed config. */
async function waitForProxies(
  zones: Array<{ name: string; api: string }>,
  admin: string,
  logger: Logger,
): Promise<void> {
  await Promise.all(
    zones.map((zone) =>
      pollUntil(
        `the gateway and sidecars of ${zone.name} to get their config`,
        async () => {
          const answer = await fetch(`${zone.api}/inspect/proxies`, {
            headers: { authorization: `Bearer ${admin}` },
            signal: AbortSignal.timeout(5000),
          });
          // The answer is the list, or (newer zones) {zone, connected, proxies: [...]}.
          const body = (await answer.json()) as unknown;
          const list: unknown =
            typeof body === 'object' && body !== null && 'proxies' in body ? body.proxies : body;
          const acked = Array.isArray(list)
            ? list.filter(
                (p: { connected?: unknown; lastAck?: unknown }) =>
                  p.connected === true && p.lastAck !== undefined,
              )
            : [];
          logger.debug('proxies acked', { zone: zone.name, count: acked.length });
          // A gateway and two sidecars per zone (zone-b's second is the VM's).
          return acked.length >= 3 ? true : undefined;
        },
        30_000,
      ),
    ),
  );
}
