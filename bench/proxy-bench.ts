/**
 * Data-plane benchmark (`npm run bench:proxy`), all in one run on one
 * machine, against the same app (single-process nginx `return 200`):
 *   direct:  load generator → app
 *   meshfed: load generator → client proxy → mTLS → server proxy → app
 *            (two `meshfed-proxy` processes, the lean sidecar entry)
 *   nginx:   the same chain built from two single-process nginx with mTLS
 * At a fixed 1,000 rps (an open-loop generator, support/fixed-rate-client) it measures p50/p90/p99 and the
 * latency each chain adds over direct, and CPU seconds per 1,000 requests
 * of each proxy; at saturation (wrk) the maximum rps and proxy RSS, and the
 * RSS's anonymous part (the process's own memory; the rest is executable
 * pages shared by every process of the binary). Idle RSS is taken after
 * start-up and a few requests, then how many times a
 * second each idle proxy wakes (its main thread's context switches over
 * 3 s). Medians over rounds.
 * Before anything starts, one spinning probe per CPU measures how often the
 * machine itself stops a running process (support/host-stalls.ts):
 * "hostStalls", to read the sub-millisecond p99s against.
 * The last line printed is the JSON of all figures.
 *
 * Environment: BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_RATE (1000),
 * BENCH_CONNECTIONS (64, wrk), BENCH_PROXY_NODE_ARGS (the proxies' node
 * flags, space-separated; default core/sidecar-node-options, what a deployed
 * sidecar runs with; '' for Node's defaults), BENCH_H2_UPGRADE_POLICY (the
 * client's DestinationRule h2UpgradePolicy: unset, the mesh default, HTTP/2
 * between sidecars since session 15; DO_NOT_UPGRADE for HTTP/1.1; each
 * chain's JSON says what its proxies spoke, read from the client's admin),
 * BENCH_PROXY_CLI (the proxies' entry: default dist/cli/meshfed-proxy.cjs,
 * the sidecar bundle; a cli/main.js runs `meshfed proxy`),
 * BENCH_BASELINE_CLI (the entry of another build, e.g. a copy of the
 * previous dist/: a fourth chain "baseline" from those proxies, measured in
 * the same rounds, so a change is judged side by side on a noisy machine),
 * BENCH_BASELINE_NODE_ARGS (node flags of the baseline proxies; default
 * BENCH_PROXY_NODE_ARGS), BENCH_PROXY_CONFIG (`mds`, the default: the
 * proxies get their snapshots over an open MDS stream from a fixed MDS
 * server in this process, support/fixed-mds.ts, as deployed sidecars do;
 * `file`: from --snapshot-file, without the MDS client).
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { SIDECAR_SNAPSHOT_TYPE, type SidecarSnapshot } from '../core/mesh/snapshot.js';
import { SIDECAR_ENV } from '../core/sidecar-node-options.js';
import { SIDECAR_BUNDLE } from '../cli/sidecar-entry.js';
import { createTestMesh, zoneCpServerCredentials } from '../test/common/pki-fixtures.js';
import { addedPercentiles, median, residentMiB, round, splitNodeArgs } from './support/load.js';
import { startCapture, tcpdumpAvailable } from './support/capture.js';
import { measureHostStalls } from './support/host-stalls.js';
import {
  FIXED_RATE_WARMUP_SECONDS,
  cpuSeconds,
  fixedRate,
  idleWakeupsPerSecond,
  peakResident,
  wrk,
  type LatencyResult,
} from './support/load-tools.js';
import { startFixedMds, type FixedMds } from './support/fixed-mds.js';
import { chainTransit } from './support/pcap-http-transit.js';
import { freePort } from '../core/free-port.js';
import { startNginxApp, startNginxChain } from './support/nginx-mtls-chain.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const RATE = Number(process.env.BENCH_RATE ?? 1000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
/** The proxies' node flags: by default those a deployed sidecar runs with. */
const NODE_ARGS = splitNodeArgs(process.env.BENCH_PROXY_NODE_ARGS ?? SIDECAR_ENV.NODE_OPTIONS ?? '');
/** The client's DestinationRule h2UpgradePolicy; unset: the mesh default. */
const H2_UPGRADE_POLICY = process.env.BENCH_H2_UPGRADE_POLICY ?? '';
/** The sidecar bundle (meshfed-proxy) by default; BENCH_PROXY_CLI=<path to cli/main.js> runs `meshfed proxy`. */
const CLI = process.env.BENCH_PROXY_CLI ?? SIDECAR_BUNDLE;
/** The rest of a deployed sidecar's environment (its node flags are NODE_ARGS), for every meshfed proxy here. */
const PROXY_ENV = Object.fromEntries(Object.entries(SIDECAR_ENV).filter(([name]) => name !== 'NODE_OPTIONS'));
const BASELINE_CLI = process.env.BENCH_BASELINE_CLI ?? '';
/** The baseline proxies' node flags: by default the same as the measured ones, so only the build differs. */
const BASELINE_NODE_ARGS =
  process.env.BENCH_BASELINE_NODE_ARGS === undefined
    ? NODE_ARGS
    : splitNodeArgs(process.env.BENCH_BASELINE_NODE_ARGS);
const NS = 'bench';
const CONFIG_SOURCE = process.env.BENCH_PROXY_CONFIG ?? 'mds';
if (CONFIG_SOURCE !== 'mds' && CONFIG_SOURCE !== 'file') {
  throw new Error(`BENCH_PROXY_CONFIG must be mds or file, got ${CONFIG_SOURCE}`);
}

function snapshot(
  workload: string,
  mesh: { rootPem: string },
  extra: Partial<SidecarSnapshot>,
): SidecarSnapshot {
  return {
    type: SIDECAR_SNAPSHOT_TYPE,
    proxy: {
      proxyId: workload,
      workload,
      namespace: NS,
      serviceAccount: workload,
      spiffeId: `spiffe://cluster.local/ns/${NS}/sa/${workload}`,
      zone: 'zone-a',
      labels: { app: workload },
      canonicalService: workload,
    },
    trust: { trustDomain: 'cluster.local', roots: [mesh.rootPem] },
    inbound: { ports: [], defaultMtls: 'STRICT', authorization: [] },
    outbound: { services: [] },
    telemetry: { accessLog: false },
    ...extra,
  };
}

function configFlags(
  name: string,
  snapshot: SidecarSnapshot,
  source: ConfigSource,
  write: (file: string, content: string) => string,
): string[] {
  if ('file' in source) return ['--snapshot-file', write('snapshot.json', JSON.stringify(snapshot))];
  source.mds.register(name, snapshot);
  return ['--mds-address', source.mds.address, '--mds-ca-file', write('mds-ca.pem', source.caPem)];
}

interface ProxyProcess {
  pid: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Where a bench proxy gets its snapshot: a file, or the fixed MDS server (with its CA). */
type ConfigSource = { file: true } | { mds: FixedMds; caPem: string };

async function startMeshfedProxy(
  dir: string,
  name: string,
  snapshot: SidecarSnapshot,
  files: Record<string, string>,
  ports: Record<string, number>,
  source: ConfigSource,
  cli = CLI,
  nodeArgs = NODE_ARGS,
): Promise<ProxyProcess> {
  const write = (file: string, content: string): string => {
    const p = path.join(dir, `${name}-${file}`);
    writeFileSync(p, content);
    return p;
  };
  const args = [
    ...nodeArgs,
    cli,
    // The full CLI needs the command; the lean entry implies it.
    ...(path.basename(cli) === 'main.js' ? ['proxy'] : []),
    '--workload',
    name,
    '--namespace',
    NS,
    ...configFlags(name, snapshot, source, write),
    '--cert-file',
    write('cert.pem', files.cert ?? ''),
    '--key-file',
    write('key.pem', files.key ?? ''),
    '--trust-bundle-file',
    write('roots.pem', files.roots ?? ''),
    '--outbound-port',
    String(ports.outbound ?? 0),
    '--inbound-port',
    String(ports.inbound ?? 0),
    '--inbound-host',
    '127.0.0.1',
    '--admin-port',
    String(ports.admin ?? 0),
    '--metrics-port',
    '0',
    '--metrics-host',
    '127.0.0.1',
  ];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, MESHFED_LOG_LEVEL: 'warn', ...PROXY_ENV },
  });
  const admin = ports.admin ?? 0;
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${admin}/ready`);
      if (res.status === 200) break;
    } catch {
      // not yet
    }
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`meshfed proxy ${name} did not become ready`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    pid: child.pid ?? 0,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) {
          resolve();
          return;
        }
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      }),
  };
}

interface ChainFigures {
  fixed: LatencyResult[];
  saturation: LatencyResult[];
  /** Per proxy (client, server): CPU seconds per 1,000 requests at the fixed rate, and at saturation. */
  cpuFixed: number[][];
  cpuSaturation: number[][];
  rssLoad: number[][];
  /** Per proxy: the peak of the RSS's anonymous part at saturation (support/load.ts residentMiB). */
  anonLoad: number[][];
}

/** `items` starting at index `by` (mod its length), the ones before it moved to the end. */
function rotated<T>(items: readonly T[], by: number): T[] {
  const k = items.length === 0 ? 0 : by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** Lets the host settle after the previous target's saturation run before a fixed-rate pass is timed. */
const SETTLE_MS = 2000;

async function measure(
  name: string,
  url: string,
  host: string | undefined,
  pids: number[],
  figures: ChainFigures,
): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  const before = pids.map(cpuSeconds);
  const fixed = await fixedRate(url, host, RATE, SECONDS);
  const after = pids.map(cpuSeconds);
  figures.fixed.push(fixed);
  figures.cpuFixed.push(
    // The CPU window spans the generator's warm-up too: per request answered in it.
    pids.map(
      (_, i) =>
        (((after[i] ?? 0) - (before[i] ?? 0)) / Math.max(1, fixed.totalRequests ?? fixed.requests)) * 1000,
    ),
  );
  await new Promise((resolve) => setTimeout(resolve, 500));
  const before2 = pids.map(cpuSeconds);
  const {
    result: sat,
    rss: peaks,
    anon: anonPeaks,
  } = await peakResident(pids, () => wrk(url, host, SECONDS, CONNECTIONS));
  const after2 = pids.map(cpuSeconds);
  figures.saturation.push(sat);
  figures.cpuSaturation.push(
    pids.map((_, i) => (((after2[i] ?? 0) - (before2[i] ?? 0)) / Math.max(1, sat.requests)) * 1000),
  );
  figures.rssLoad.push(peaks);
  figures.anonLoad.push(anonPeaks);
  process.stderr.write(
    `${name}: fixed ${round(fixed.rps, 0)} rps p50 ${round(fixed.p50, 3)} p90 ${round(fixed.p90, 3)} p99 ${round(fixed.p99, 3)} ms (errors ${fixed.errors}); ` +
      `saturation ${round(sat.rps, 0)} rps (errors ${sat.errors}); RSS ${peaks.join('/')} MiB (anonymous ${anonPeaks.join('/')})\n`,
  );
}

interface CapturedChain {
  name: string;
  /** Where the generator sends its requests: the chain's first hop. */
  url: string;
  host: string | undefined;
}

/**
 * One fixed-rate run per chain under a loopback capture of its front port
 * and the app's port, requests tagged so the capture can follow each; from
 * it, what the chain itself adds per request (pcap-http-transit.ts), with
 * neither the generator's nor the app's jitter in it.
 */
async function sampleInPath(
  dir: string,
  appPort: number,
  chains: CapturedChain[],
): Promise<Record<string, Record<string, number>>> {
  const figures: Record<string, Record<string, number>> = {};
  for (const chain of chains) {
    const file = path.join(dir, `${chain.name}.pcap`);
    const frontPort = Number(new URL(chain.url).port);
    // Request and status lines sit in the first bytes of their segments' payloads.
    const capture = await startCapture(file, [frontPort, appPort], 256);
    try {
      await fixedRate(chain.url, chain.host, RATE, SECONDS, true);
    } finally {
      await capture.stop();
    }
    const added = chainTransit(file, frontPort, appPort, RATE * FIXED_RATE_WARMUP_SECONDS);
    figures[chain.name] = { requests: added.length, ...addedPercentiles(added) };
    process.stderr.write(`in path ${chain.name}: ${JSON.stringify(figures[chain.name])}\n`);
  }
  return figures;
}

/** One GET (fetch cannot set Host). */
/**
 * The protocol between the proxies from the client's `/clusters`: the
 * endpoint's `protocol` (builds since session 15), else the cluster's
 * `h2` flag (older builds, whose default was HTTP/1.1).
 */
async function spokenBetweenProxies(adminPort: number): Promise<string> {
  const clusters = (await (await fetch(`http://127.0.0.1:${adminPort}/clusters`)).json()) as Array<{
    h2?: boolean;
    endpoints?: Array<{ protocol?: string }>;
  }>;
  const cluster = clusters.find((c) => (c.endpoints?.length ?? 0) > 0);
  return cluster?.endpoints?.[0]?.protocol ?? (cluster?.h2 === true ? 'h2' : 'http/1.1');
}

function probe(url: string, host: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: host === undefined ? {} : { host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
  });
}

function medianOf(list: LatencyResult[], key: 'rps' | 'requests' | 'p50' | 'p90' | 'p99'): number {
  return median(list.map((r) => r[key]));
}

function addedMedian(chain: ChainFigures, direct: ChainFigures, key: 'p50' | 'p90' | 'p99'): number {
  return median(chain.fixed.map((r, i) => r[key] - (direct.fixed[i]?.[key] ?? NaN)));
}

function perProxy(list: number[][], i: number): number {
  return median(list.map((row) => row[i] ?? NaN));
}

async function main(): Promise<void> {
  // Before anything starts: how often the machine itself stalls a process, to read the p99s against.
  const hostStalls = await measureHostStalls();
  process.stderr.write(`host stalls: ${JSON.stringify(hostStalls)}\n`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-proxy-bench-'));
  const mesh = createTestMesh();
  const client = mesh.workload({ namespace: NS, serviceAccount: 'client' });
  const server = mesh.workload({ namespace: NS, serviceAccount: 'app', dnsNames: ['app.bench.svc'] });
  const stops: Array<() => Promise<void>> = [];
  try {
    const app = await startNginxApp(dir);
    stops.push(() => app.stop());
    let source: ConfigSource = { file: true };
    if (CONFIG_SOURCE === 'mds') {
      const mds = await startFixedMds(zoneCpServerCredentials(mesh));
      stops.push(async () => mds.close());
      source = { mds, caPem: mesh.rootPem };
    }
    const startPair = async (
      cli: string,
      prefix: string,
      nodeArgs: string[],
    ): Promise<{ client: ProxyProcess; server: ProxyProcess; outbound: number; admin: number }> => {
      const serverPorts = { inbound: await freePort(), admin: await freePort(), outbound: await freePort() };
      const clientPorts = { inbound: await freePort(), admin: await freePort(), outbound: await freePort() };
      const serverProxy = await startMeshfedProxy(
        dir,
        `${prefix}app`,
        snapshot('app', mesh, {
          inbound: {
            ports: [{ port: 80, targetPort: app.port, protocol: 'http', mtls: 'STRICT' }],
            defaultMtls: 'STRICT',
            authorization: [],
          },
        }),
        { cert: server.certChainPem, key: server.keyPem, roots: mesh.rootPem },
        serverPorts,
        source,
        cli,
        nodeArgs,
      );
      stops.push(() => serverProxy.stop());
      const clientProxy = await startMeshfedProxy(
        dir,
        `${prefix}client`,
        snapshot('client', mesh, {
          outbound: {
            services: [
              {
                host: `app.${NS}.svc.cluster.local`,
                name: 'app',
                namespace: NS,
                aliases: ['app'],
                ports: [{ name: 'http', port: 80, protocol: 'http' }],
                http: [],
                tcp: [],
                locality: { preferLocalZone: true, pinnedToZone: false },
                clusters: [
                  {
                    subset: '_',
                    trafficPolicy:
                      H2_UPGRADE_POLICY === ''
                        ? {}
                        : { connectionPool: { http: { h2UpgradePolicy: H2_UPGRADE_POLICY } } },
                    endpoints: [
                      {
                        address: '127.0.0.1',
                        port: serverPorts.inbound,
                        via: 'sidecar',
                        zone: 'zone-a',
                        weight: 1,
                        healthy: true,
                        labels: { app: 'app' },
                        workload: 'app',
                        identities: [`spiffe://cluster.local/ns/${NS}/sa/app`],
                      },
                    ],
                  },
                ],
              },
            ],
          },
        }),
        { cert: client.certChainPem, key: client.keyPem, roots: mesh.rootPem },
        clientPorts,
        source,
        cli,
        nodeArgs,
      );
      stops.push(() => clientProxy.stop());
      return {
        client: clientProxy,
        server: serverProxy,
        outbound: clientPorts.outbound,
        admin: clientPorts.admin,
      };
    };
    const pair = await startPair(CLI, '', NODE_ARGS);
    const clientProxy = pair.client;
    const serverProxy = pair.server;
    const clientPorts = { outbound: pair.outbound };
    const baseline =
      BASELINE_CLI === '' ? undefined : await startPair(BASELINE_CLI, 'base-', BASELINE_NODE_ARGS);
    const chain = await startNginxChain(dir, app.port, {
      rootPem: mesh.rootPem,
      client,
      server,
      serverName: 'app.bench.svc',
    });
    stops.push(() => chain.stop());

    const targets = [
      { name: 'direct', url: `http://127.0.0.1:${app.port}/`, host: undefined, pids: [] as number[] },
      {
        name: 'meshfed',
        url: `http://127.0.0.1:${clientPorts.outbound}/`,
        host: 'app',
        pids: [clientProxy.pid, serverProxy.pid],
      },
      ...(baseline === undefined
        ? []
        : [
            {
              name: 'baseline',
              url: `http://127.0.0.1:${baseline.outbound}/`,
              host: 'app',
              pids: [baseline.client.pid, baseline.server.pid],
            },
          ]),
      {
        name: 'nginx',
        url: `http://127.0.0.1:${chain.client.port}/`,
        host: undefined,
        pids: [chain.client.pid, chain.server.pid],
      },
    ];
    for (const t of targets) {
      const status = await probe(t.url, t.host);
      if (status !== 200) throw new Error(`${t.name} answers ${status}`);
    }
    // What the two proxies of each chain speak to each other, as the client proxy reports it.
    const proxyToProxy = {
      meshfed: await spokenBetweenProxies(pair.admin),
      baseline: baseline === undefined ? undefined : await spokenBetweenProxies(baseline.admin),
    };
    const proxyPids: Record<'meshfed' | 'baseline' | 'nginx', number[]> = {
      meshfed: [clientProxy.pid, serverProxy.pid],
      baseline: baseline === undefined ? [] : [baseline.client.pid, baseline.server.pid],
      nginx: [chain.client.pid, chain.server.pid],
    };
    const residentIdle = {
      meshfed: proxyPids.meshfed.map(residentMiB),
      baseline: proxyPids.baseline.map(residentMiB),
      nginx: proxyPids.nginx.map(residentMiB),
    };
    // What an idle proxy costs the node it runs on: its wake-ups, all proxies in one quiet window.
    const wakeups = await idleWakeupsPerSecond([
      ...proxyPids.meshfed,
      ...proxyPids.baseline,
      ...proxyPids.nginx,
    ]);
    const idleWakeups = {
      meshfed: wakeups.slice(0, 2),
      baseline: wakeups.slice(2, 2 + proxyPids.baseline.length),
      nginx: wakeups.slice(-2),
    };
    // Memory at the fixed rate from fresh processes, before any saturation
    // run (the warm-up included): the conditions Istio quotes its sidecar's
    // memory under. Only the RSS of this pass is kept.
    const rssFresh: Record<string, number[]> = {};
    for (const t of targets) {
      if (t.pids.length === 0) continue;
      rssFresh[t.name] = (await peakResident(t.pids, () => fixedRate(t.url, t.host, RATE, SECONDS))).rss;
      process.stderr.write(`fresh ${t.name} at ${RATE} rps: RSS ${rssFresh[t.name]?.join('/')} MiB\n`);
    }
    // Warm-up: JIT, connection pools, TLS sessions.
    for (const t of targets) await wrk(t.url, t.host, 3, CONNECTIONS);

    const figures: Record<string, ChainFigures> = {};
    for (const t of targets)
      figures[t.name] = {
        fixed: [],
        saturation: [],
        cpuFixed: [],
        cpuSaturation: [],
        rssLoad: [],
        anonLoad: [],
      };
    for (let r = 0; r < ROUNDS; r++) {
      // The direct path first, then the chains in an order that turns one step each round: a chain's
      // fixed-rate pass right after the direct path's saturation run (115–145k rps through the loopback)
      // had a p99 0.3–0.6 ms worse than the same build one slot later (docs/performance.md, session
      // 13), so that slot goes to each chain in turn.
      for (const t of [...targets.slice(0, 1), ...rotated(targets.slice(1), r)]) {
        const f = figures[t.name];
        if (f !== undefined) await measure(`round ${r + 1} ${t.name}`, t.url, t.host, t.pids, f);
      }
    }

    const inPath = tcpdumpAvailable()
      ? await sampleInPath(
          dir,
          app.port,
          targets.filter((t) => t.name === 'meshfed' || t.name === 'nginx'),
        )
      : undefined;
    if (inPath === undefined) process.stderr.write('tcpdump is not installed: no in-path figures.\n');

    const direct = figures.direct as ChainFigures;
    const chainFigures = (name: 'meshfed' | 'baseline' | 'nginx'): Record<string, unknown> => {
      const f = figures[name] as ChainFigures;
      const idle = residentIdle[name];
      const wakeupsPerSecond = idleWakeups[name];
      return {
        p50Ms: round(medianOf(f.fixed, 'p50'), 3),
        p90Ms: round(medianOf(f.fixed, 'p90'), 3),
        p99Ms: round(medianOf(f.fixed, 'p99'), 3),
        // Added latency is taken round by round (chain minus direct, measured minutes apart at most), then the median.
        addedP50Ms: round(addedMedian(f, direct, 'p50'), 3),
        addedP90Ms: round(addedMedian(f, direct, 'p90'), 3),
        addedP99Ms: round(addedMedian(f, direct, 'p99'), 3),
        fixedRateErrors: f.fixed.reduce((s, x) => s + x.errors, 0),
        maxRps: round(medianOf(f.saturation, 'rps'), 0),
        saturationErrors: f.saturation.reduce((s, x) => s + x.errors, 0),
        cpuSecondsPer1kRequests: {
          client: round(perProxy(f.cpuFixed, 0), 4),
          server: round(perProxy(f.cpuFixed, 1), 4),
        },
        cpuSecondsPer1kRequestsAtSaturation: {
          client: round(perProxy(f.cpuSaturation, 0), 4),
          server: round(perProxy(f.cpuSaturation, 1), 4),
        },
        rssIdleMiB: { client: idle[0]?.rss, server: idle[1]?.rss },
        idleWakeupsPerSecond: { client: wakeupsPerSecond[0], server: wakeupsPerSecond[1] },
        rssLoadMiB: { client: perProxy(f.rssLoad, 0), server: perProxy(f.rssLoad, 1) },
        rssFixedRateFreshMiB: { client: rssFresh[name]?.[0] ?? NaN, server: rssFresh[name]?.[1] ?? NaN },
        // Of those, the process's own (anonymous) memory; the rest is shared executable pages.
        anonIdleMiB: { client: idle[0]?.anon, server: idle[1]?.anon },
        anonLoadMiB: { client: perProxy(f.anonLoad, 0), server: perProxy(f.anonLoad, 1) },
        ...(name === 'nginx' ? {} : { proxyToProxy: proxyToProxy[name] }),
        name,
      };
    };
    const meshfed = chainFigures('meshfed');
    const nginx = chainFigures('nginx');
    const saturationRatio = round((meshfed.maxRps as number) / (nginx.maxRps as number), 3);
    const cpu = meshfed.cpuSecondsPer1kRequests as { client: number; server: number };
    const rssLoad = meshfed.rssLoadMiB as { client: number; server: number };
    const rssFixedFresh = meshfed.rssFixedRateFreshMiB as { client: number; server: number };
    const result = {
      bench: 'proxy',
      node: process.version,
      cpus: os.cpus().length,
      rounds: ROUNDS,
      secondsPerRun: SECONDS,
      fixedRateRps: RATE,
      wrkConnections: CONNECTIONS,
      proxyNodeArgs: NODE_ARGS,
      proxyEnv: PROXY_ENV,
      proxyEntry: path.relative(process.cwd(), CLI),
      h2UpgradePolicy: H2_UPGRADE_POLICY || 'unset',
      proxyConfig: CONFIG_SOURCE,
      loadAverage: os.loadavg().map((l) => round(l, 2)),
      hostStalls,
      direct: {
        p50Ms: round(medianOf(direct.fixed, 'p50'), 3),
        p90Ms: round(medianOf(direct.fixed, 'p90'), 3),
        p99Ms: round(medianOf(direct.fixed, 'p99'), 3),
        maxRps: round(medianOf(direct.saturation, 'rps'), 0),
      },
      meshfed,
      ...(baseline === undefined
        ? {}
        : {
            baseline: {
              cli: BASELINE_CLI,
              nodeArgs: BASELINE_NODE_ARGS,
              ...chainFigures('baseline'),
            },
          }),
      nginx,
      ...(inPath === undefined ? {} : { inPath }),
      saturationVsNginx: saturationRatio,
      targets: {
        addedP99Ms: { target: 1, value: meshfed.addedP99Ms, met: (meshfed.addedP99Ms as number) <= 1 },
        cpuPer1kRpsPerProxy: {
          target: 0.2,
          value: Math.max(cpu.client, cpu.server),
          met: Math.max(cpu.client, cpu.server) <= 0.2,
        },
        rssUnderLoadMiB: {
          target: 60,
          value: Math.max(rssLoad.client, rssLoad.server),
          met: Math.max(rssLoad.client, rssLoad.server) <= 60,
        },
        rssAt1kRpsFreshMiB: {
          target: 60,
          value: Math.max(rssFixedFresh.client, rssFixedFresh.server),
          met: Math.max(rssFixedFresh.client, rssFixedFresh.server) <= 60,
        },
        saturationVsNginx: { target: 0.5, value: saturationRatio, met: saturationRatio >= 0.5 },
      },
    };
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `proxy bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
