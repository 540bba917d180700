/**
 * `meshfed demo` (what `npm start` runs): the embedded default of DESIGN.md
 * on one machine, no Kubernetes, no Docker:
 *
 *   global CP (file store) ─KDS─ zone-a CP + gateway    zone-b CP + gateway
 *                                  frontend  (sidecar)    backend v1 ("VM", vm-agent join)
 *                                  backend v1 (sidecar)   backend v2 (sidecar)
 *
 * The sample resources of deploy/samples are applied to global (mTLS
 * STRICT, an AuthorizationPolicy, a 90/10 canary, a failover
 * DestinationRule, the VM's WorkloadGroup) and light traffic flows
 * frontend → backend. The ready file is written only once everything
 * answers, and removed again on close so a script never reads a stale one.
 */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createLogger } from '../../core/log.js';
import type { GlobalCpHandle } from '../../global-cp/options.js';
import { redirectLogs, writeJsonAtomic } from './demo-files.js';
import { waitForHttpOk } from './demo-http.js';
import { DEMO_WORKLOADS as WORKLOADS, DEMO_ZONES as ZONES } from './demo-plan.js';
import { checkNetns, startNetnsDemo } from './demo-netns.js';
import { applySamples, defaultSamplesDir } from './demo-policies.js';
import { freePort } from '../../core/free-port.js';
import { checkPortsFree, planPorts, type DemoPortPlan } from './demo-ports.js';
import type { DemoHandle, DemoReadyInfo } from './demo-summary.js';
import { startTraffic } from './demo-traffic.js';
import { startDemoVm } from './demo-vm.js';
import { startDemoWorkload, waitForProxiesReady, type DemoWorkload } from './demo-workloads.js';
import {
  readAdminToken,
  startDemoGateway,
  startDemoZone,
  waitForGatewayReady,
  waitForZonesConnected,
  type DemoZone,
} from './demo-zones.js';

export { formatDemoSummary, type DemoHandle, type DemoReadyInfo } from './demo-summary.js';
export { writeJsonAtomic } from './demo-files.js';
export { waitForHttpOk } from './demo-http.js';

export interface DemoOptions {
  /** Everything the demo keeps (stores, tokens, logs, the VM's config). Default `.meshfed/demo`. */
  dataDir: string;
  /** Global API port; 0 puts every component of the demo on a free port. Default 5681. */
  port?: number;
  /** Written (atomically) once everything serves; removed on close. */
  readyFile?: string;
  /**
   * Component logs go to this file (warnings and errors are echoed to
   * stderr) so the terminal shows the summary, not a wall of JSON.
   * Default `<dataDir>/demo.log`; `-` keeps them on stderr.
   */
  logFile?: string;
  /** Sample resources to apply. Default the checkout's deploy/samples. */
  samplesDir?: string;
  /** Calls per second frontend → backend; 0 = no traffic. Default 4. */
  trafficPerSecond?: number;
  /** How the VM's systemd unit would run the agent (vm-agent.yaml records it). */
  cliCommand?: string[];
  /** Lines for the user while the demo runs (failover notices, the traffic report). Default stdout. */
  notice?: (line: string) => void;
  /** Each zone in its own network namespace (root; demo-netns.ts). Needs `cliMain`. */
  netns?: boolean;
  /** The built CLI entry the zone processes run with --netns. */
  cliMain?: string;
}

/** Every fixed port with what it is, for the up-front check. */
function describePorts(globalPort: number, plan: DemoPortPlan): Array<[string, number]> {
  const named: Array<[string, number]> = [
    ['global API', globalPort],
    ['global KDS', globalPort === 5681 ? 5685 : 0],
  ];
  plan.zones.forEach((z, i) => {
    const zone = ZONES[i] ?? `zone ${i}`;
    named.push([`${zone} API`, z.rest], [`${zone} MDS`, z.grpc], [`${zone} gateway`, z.gateway]);
    named.push([`${zone} gateway admin`, z.gatewayAdmin]);
  });
  const names = [...WORKLOADS.map(([, w]) => w.name), 'backend VM'];
  plan.workloads.forEach((w, i) => {
    const name = names[i] ?? `workload ${i}`;
    named.push([`${name} app`, w.app], [`${name} sidecar outbound`, w.outbound]);
    named.push([`${name} sidecar inbound`, w.inbound], [`${name} sidecar admin`, w.admin]);
    named.push([`${name} sidecar metrics`, w.metrics]);
  });
  return named;
}

/** Start the demo and resolve once everything it started is serving. */
export async function startDemo(options: DemoOptions): Promise<DemoHandle> {
  const started = Date.now();
  const dataDir = path.resolve(options.dataDir);
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const readyFile = options.readyFile === undefined ? undefined : path.resolve(options.readyFile);
  // A ready file left by a killed run must not be mistaken for this one.
  if (readyFile) await fs.rm(readyFile, { force: true });
  const samplesDir = path.resolve(options.samplesDir ?? defaultSamplesDir());
  const notice = options.notice ?? ((line: string) => process.stdout.write(`${line}\n`));

  const globalPort = options.port ?? 5681;
  if (options.netns === true) {
    await checkNetns();
    if (globalPort !== 0)
      await checkPortsFree([
        ['global API', globalPort],
        ['global KDS', 5685],
      ]);
  }
  const plan = planPorts(globalPort !== 0, ZONES.length, WORKLOADS.length + 1);
  // Nothing starts when a fixed port is taken: one line naming it.
  if (options.netns === true) {
    // Zones have their own port spaces: only the global CP's ports are on the host.
  } else if (plan.fixed) await checkPortsFree(describePorts(globalPort, plan));
  else {
    // The zone announces its gateway before the gateway starts; a VM registers its ports at join.
    for (const z of plan.zones) z.gateway = await freePort();
    const vm = plan.workloads[WORKLOADS.length];
    if (vm)
      for (const key of ['inbound', 'outbound', 'admin', 'metrics'] as const) vm[key] = await freePort();
  }

  const logFile =
    options.logFile === '-' ? undefined : path.resolve(options.logFile ?? path.join(dataDir, 'demo.log'));
  const restoreLogs = logFile ? redirectLogs(logFile) : undefined;
  const logger = createLogger('demo');

  const stops: Array<() => Promise<void> | void> = [];
  const stopAll = async (): Promise<void> => {
    // Reverse start order: traffic, workloads, gateways, zones, global.
    let first: unknown;
    for (const stop of stops.reverse()) {
      try {
        await stop();
      } catch (err) {
        first ??= err;
      }
    }
    stops.length = 0;
    if (restoreLogs) await restoreLogs();
    if (first !== undefined) throw first;
  };

  const perSecond = options.trafficPerSecond ?? 4;
  const traffic = (url: string): void => {
    const t = startTraffic({ url, intervalMs: 1000 / perSecond, report: notice });
    stops.push(() => t.close());
  };
  const handleFor = async (info: DemoReadyInfo): Promise<DemoHandle> => {
    if (readyFile) await writeJsonAtomic(readyFile, info);
    let closing: Promise<void> | undefined;
    return {
      info,
      close() {
        closing ??= (async () => {
          if (readyFile) await fs.rm(readyFile, { force: true });
          await stopAll();
        })();
        return closing;
      },
    };
  };

  if (options.netns === true) {
    try {
      const partial = await startNetnsDemo(
        {
          dataDir,
          globalPort,
          samplesDir,
          cliMain: options.cliMain ?? process.argv[1] ?? '',
          trafficPerSecond: perSecond,
          notice,
          onStop: (stop) => stops.push(stop),
          startTraffic: traffic,
        },
        started,
      );
      return await handleFor({ ...partial, ...(logFile ? { logFile } : {}), pid: process.pid });
    } catch (err) {
      await stopAll().catch(() => undefined);
      throw err;
    }
  }

  try {
    const { startGlobalCp } = await import('../../global-cp/global-cp.js');
    const global: GlobalCpHandle = await startGlobalCp({
      dataDir: path.join(dataDir, 'global'),
      port: globalPort,
    });
    stops.push(() => global.close());
    await waitForHttpOk(`${global.url}/readyz`);
    const admin = await readAdminToken(global);

    // Policies first: zones get them in their first sync, and the VM's group is there to join.
    const appliedSamples = applySamples(global.url, admin, samplesDir);

    const zones: DemoZone[] = await Promise.all(
      ZONES.map(async (name, i) => {
        const ports = plan.zones[i];
        if (ports === undefined) throw new Error(`no ports for ${name}`);
        const zone = await startDemoZone(global, admin, dataDir, name, ports);
        stops.push(() => zone.cp.close());
        const gateway = await startDemoGateway(zone, admin, dataDir, ports, createLogger('eastwest-gateway'));
        stops.push(() => gateway.close());
        return zone;
      }),
    );
    await appliedSamples;
    await waitForZonesConnected(
      global,
      admin,
      zones.map((z) => z.name),
    );

    const workloads: DemoWorkload[] = [];
    const started_ = await Promise.all([
      ...WORKLOADS.map(async ([zoneIndex, spec], i) => {
        const zone = zones[zoneIndex];
        const ports = plan.workloads[i];
        if (zone === undefined || ports === undefined) throw new Error(`no zone or ports for ${spec.name}`);
        const w = await startDemoWorkload(spec, zone, admin, ports, logger, notice);
        stops.push(() => w.close());
        return w;
      }),
      (async () => {
        const zone = zones[1];
        const ports = plan.workloads[WORKLOADS.length];
        if (zone === undefined || ports === undefined) throw new Error('no zone or ports for the VM');
        const vm = await startDemoVm({
          zone,
          adminToken: admin,
          dataDir,
          ports,
          command: options.cliCommand ?? [process.execPath, 'meshfed', 'vm-agent', 'run'],
          logger: createLogger('vm-agent'),
          notice,
        });
        stops.push(() => vm.close());
        return vm;
      })(),
    ]);
    workloads.push(...started_);
    await waitForProxiesReady(workloads.map((w) => ({ name: w.info.name, ready: () => w.ready() })));
    await Promise.all(
      zones.map((z) => (z.gateway === undefined ? Promise.resolve() : waitForGatewayReady(z, z.gateway))),
    );

    const frontend = workloads.find((w) => w.info.service === 'frontend');
    const perSecond = options.trafficPerSecond ?? 4;
    if (frontend !== undefined && perSecond > 0) {
      const traffic = startTraffic({
        url: `${frontend.info.app}/`,
        intervalMs: 1000 / perSecond,
        report: notice,
      });
      stops.push(() => traffic.close());
    }

    const info: DemoReadyInfo = {
      globalApi: global.url,
      adminTokenFile: global.adminTokenFile,
      dashboard: `${global.url}/`,
      zones: zones.map((z) => ({
        name: z.name,
        api: z.cp.restUrl,
        mds: z.cp.grpcAddress,
        gateway: z.gatewayAddress,
        ...(z.gateway === undefined ? {} : { gatewayAdmin: `http://127.0.0.1:${z.gateway.adminPort}` }),
      })),
      workloads: workloads.map((w) => w.info),
      mode: 'loopback',
      samples: samplesDir,
      dataDir,
      ...(logFile ? { logFile } : {}),
      pid: process.pid,
      startupMs: Date.now() - started,
    };
    return await handleFor(info);
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
}
