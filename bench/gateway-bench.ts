/**
 * East-west gateway benchmark. In one run, the same mTLS backend (a Node TLS
 * server with a mesh leaf, requiring client certificates) is reached three
 * ways by the same load generator (its own process):
 *
 *   direct   client → backend                                (no middlebox)
 *   gateway  client → meshfed gateway (SNI passthrough) → backend
 *   haproxy  client → HAProxy (Debian; mode tcp, req.ssl_sni) → backend
 *
 * Figures: new mTLS connections/s (full handshakes, 32 in flight), bulk MB/s
 * over 4 long-lived connections, time to first byte of a new connection
 * (sequential, sampled round-robin over the paths: "added" is the difference
 * to direct per percentile), and each middlebox's RSS and CPU cost.
 *
 * Time to first byte is sampled twice: with full handshakes, and resuming the
 * previous TLS session (what mesh proxies do between themselves, and a
 * cheaper handshake whose own jitter hides less of the middlebox's). Each
 * sampling also times the direct path a second time ("direct-again"): its
 * "added" figures are pure measurement noise, the resolution below which a
 * middlebox's added latency cannot be told apart from zero. Both
 * middleboxes run one thread (HAProxy nbthread 1, the gateway is one Node
 * process), unpinned, so the CPU a middlebox burns is CPU the client and
 * backend lose: the rate ratio reflects efficiency, not just latency.
 *
 * The end-to-end samples carry the client's and the backend's own jitter
 * (the noise floor shows how much). So, when tcpdump is installed, a third
 * sampling (resumed, gateway and HAProxy round-robin) runs under a loopback
 * capture and reads the time each middlebox itself adds from kernel packet
 * timestamps (support/pcap-transit.ts): "inPath". For that capture HAProxy
 * fronts its own backend process, identical to the gateway's, so that the
 * two middleboxes' upstream flows can be told apart.
 *
 * Before anything starts, one spinning probe per CPU measures how often the
 * machine itself stops a running process (support/host-stalls.ts):
 * "hostStalls", to read the sub-millisecond p99s against.
 *
 * Prints one JSON line last. Run: npm run bench:gateway
 * Knobs: BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_TTFB_SAMPLES (2000),
 * BENCH_GATEWAY_NODE_ARGS (the gateway's Node flags, space-separated),
 * BENCH_BASELINE_GATEWAY_NODE_ARGS (when set, a second gateway with these
 * flags is measured in the same rounds as "baseline").
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRootCa, generateKeyPair, loadCa } from '../core/pki/ca.js';
import { freePort } from '../core/free-port.js';
import { startCapture, tcpdumpAvailable } from './support/capture.js';
import {
  addedPercentiles,
  ascending,
  median,
  percentile,
  round,
  rssMiB,
  splitNodeArgs,
} from './support/load.js';
import { measureHostStalls } from './support/host-stalls.js';
import { cpuSeconds } from './support/load-tools.js';
import { middleboxTransit } from './support/pcap-transit.js';

const HERE = resolve(fileURLToPath(import.meta.url), '..');
const CLI = resolve(HERE, '../cli/main.js');
const BACKEND = resolve(HERE, 'support/gateway-tls-backend.js');
const CLIENT = resolve(HERE, 'support/gateway-tls-client.js');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const TTFB_SAMPLES = Number(process.env.BENCH_TTFB_SAMPLES ?? 2000);
const RATE_CONCURRENCY = 32;
const BULK_CONNECTIONS = 4;
const SNI = '_.443.bench.bench.svc.mesh';
/** The gateway's Node flags (BENCH_GATEWAY_NODE_ARGS, space-separated; default none, as deployed). */
const GATEWAY_NODE_ARGS = splitNodeArgs(process.env.BENCH_GATEWAY_NODE_ARGS ?? '');
/** BENCH_BASELINE_GATEWAY_NODE_ARGS: a second gateway with these flags ('' = Node's defaults), measured alongside. */
const BASELINE_NODE_ARGS =
  process.env.BENCH_BASELINE_GATEWAY_NODE_ARGS === undefined
    ? undefined
    : splitNodeArgs(process.env.BENCH_BASELINE_GATEWAY_NODE_ARGS);

interface Files {
  dir: string;
  serverKey: string;
  serverCert: string;
  clientKey: string;
  clientCert: string;
  ca: string;
}

function makePki(): Files {
  const dir = mkdtempSync(join(tmpdir(), 'gateway-bench-'));
  const root = createRootCa({ trustDomain: 'cluster.local' });
  const rootCa = loadCa(root.certPem, root.keyPem);
  const zone = (name: string): ReturnType<typeof loadCa> => {
    const { privateKey, publicKey } = generateKeyPair();
    const pem = rootCa.signIntermediate(publicKey, { name, ttlSeconds: 86_400 });
    return loadCa(pem + root.certPem, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  };
  const leaf = (ca: ReturnType<typeof loadCa>, sa: string, prefix: string): [string, string] => {
    const { privateKey, publicKey } = generateKeyPair();
    const cert = ca.signWorkload(publicKey, { spiffeId: `spiffe://cluster.local/ns/bench/sa/${sa}` });
    const keyFile = join(dir, `${prefix}.key`);
    const certFile = join(dir, `${prefix}.crt`);
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    writeFileSync(certFile, cert.chainPem);
    return [keyFile, certFile];
  };
  const [serverKey, serverCert] = leaf(zone('meshfed zone-b CA'), 'bench', 'server');
  const [clientKey, clientCert] = leaf(zone('meshfed zone-a CA'), 'client', 'client');
  const ca = join(dir, 'root.crt');
  writeFileSync(ca, root.certPem);
  return { dir, serverKey, serverCert, clientKey, clientCert, ca };
}

interface Proc {
  child: ChildProcess;
  pid: number;
  stop(): Promise<void>;
}

function track(child: ChildProcess): Proc {
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  return {
    child,
    pid: child.pid ?? 0,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function waitPort(port: number, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ok = await new Promise<boolean>((done) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        done(true);
      });
      s.once('error', () => done(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startBackend(files: Files): Promise<Proc & { port: number }> {
  const config = join(files.dir, 'backend.json');
  writeFileSync(
    config,
    JSON.stringify({ keyFile: files.serverKey, certFile: files.serverCert, caFile: files.ca }),
  );
  const child = spawn(process.execPath, [BACKEND, config], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((done, fail) => {
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) done(Number(m[1]));
    });
    child.once('exit', () => fail(new Error('backend exited')));
  });
  return { ...track(child), port };
}

async function startGateway(
  files: Files,
  backendPort: number,
  nodeArgs: readonly string[],
): Promise<Proc & { port: number }> {
  const snapshot = join(files.dir, 'snapshot.json');
  writeFileSync(
    snapshot,
    JSON.stringify({
      type: 'gateway/v1',
      zone: 'zone-b',
      services: [
        {
          name: 'bench',
          namespace: 'bench',
          ports: [443],
          clusters: [
            {
              subset: '_',
              endpoints: [{ address: '127.0.0.1', port: backendPort, healthy: true, workload: 'b' }],
            },
          ],
        },
      ],
    }),
  );
  const port = await freePort();
  const adminPort = await freePort();
  const child = spawn(
    process.execPath,
    [...nodeArgs, CLI, 'gateway', '--snapshot-file', snapshot, '--host', '127.0.0.1', '--port', String(port)],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, MESHFED_LOG_LEVEL: 'warn', MESHFED_GATEWAY_ADMIN_PORT: String(adminPort) },
    },
  );
  await waitPort(port, 'gateway');
  return { ...track(child), port };
}

function haproxyAvailable(): boolean {
  return spawnSync('haproxy', ['-v']).status === 0;
}

async function startHaproxy(files: Files, backendPort: number): Promise<Proc & { port: number }> {
  const port = await freePort();
  const config = join(files.dir, 'haproxy.cfg');
  writeFileSync(
    config,
    `global
  maxconn 8000
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend mesh
  bind 127.0.0.1:${port}
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend bench if { req.ssl_sni -i ${SNI} }
backend bench
  server s1 127.0.0.1:${backendPort}
`,
  );
  const child = spawn('haproxy', ['-f', config, '-db'], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitPort(port, 'haproxy');
  return { ...track(child), port };
}

function runClient(job: Record<string, unknown>, files: Files): Promise<Record<string, unknown>> {
  return new Promise((done, fail) => {
    const child = spawn(
      process.execPath,
      [
        CLIENT,
        JSON.stringify({
          ...job,
          servername: SNI,
          keyFile: files.clientKey,
          certFile: files.clientCert,
          caFile: files.ca,
        }),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (code) => {
      if (code !== 0) return fail(new Error(`load generator exited ${code}`));
      done(JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, unknown>);
    });
  });
}

interface Target {
  // direct-again: the direct path timed a second time, for the noise floor.
  name: 'direct' | 'gateway' | 'baseline' | 'haproxy' | 'direct-again';
  port: number;
  pid?: number;
}

interface Figures {
  rate: number[];
  bulk: number[];
  cpuMsPer1kConnections: number[];
  cpuSecondsPerGB: number[];
  rss: number;
}

async function main(): Promise<void> {
  // Before anything starts: how often the machine itself stalls a process, to read the p99s against.
  const hostStalls = await measureHostStalls();
  process.stderr.write(`host stalls: ${JSON.stringify(hostStalls)}\n`);
  const files = makePki();
  const procs: Proc[] = [];
  try {
    const backend = await startBackend(files);
    procs.push(backend);
    const gateway = await startGateway(files, backend.port, GATEWAY_NODE_ARGS);
    procs.push(gateway);
    const targets: Target[] = [
      { name: 'direct', port: backend.port },
      { name: 'gateway', port: gateway.port, pid: gateway.pid },
    ];
    if (BASELINE_NODE_ARGS !== undefined) {
      // The same gateway with other Node flags, in the same rounds: a change judged side by side.
      const baseline = await startGateway(files, backend.port, BASELINE_NODE_ARGS);
      procs.push(baseline);
      targets.push({ name: 'baseline', port: baseline.port, pid: baseline.pid });
    }
    // HAProxy's backend: a second process, identical to the gateway's (see the header).
    let haproxyBackendPort = 0;
    if (haproxyAvailable()) {
      const haproxyBackend = await startBackend(files);
      procs.push(haproxyBackend);
      haproxyBackendPort = haproxyBackend.port;
      const haproxy = await startHaproxy(files, haproxyBackendPort);
      procs.push(haproxy);
      targets.push({ name: 'haproxy', port: haproxy.port, pid: haproxy.pid });
    } else {
      process.stderr.write(
        '\n*** haproxy is not installed: NO BASELINE. apt-get install haproxy and run again. ***\n\n',
      );
    }
    const figures = new Map<string, Figures>();
    for (const t of targets) {
      figures.set(t.name, { rate: [], bulk: [], cpuMsPer1kConnections: [], cpuSecondsPerGB: [], rss: 0 });
    }
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round so drift (thermal, other load) spreads over the paths.
      const order = targets.map((_, i) => targets[(i + round) % targets.length] as Target);
      for (const t of order) {
        const f = figures.get(t.name) as Figures;
        const cpu0 = t.pid === undefined ? NaN : cpuSeconds(t.pid);
        const rate = await runClient(
          { mode: 'rate', targets: [t], concurrency: RATE_CONCURRENCY, seconds: SECONDS },
          files,
        );
        const cpu1 = t.pid === undefined ? NaN : cpuSeconds(t.pid);
        f.rate.push(Number(rate.connectionsPerSecond));
        if (t.pid !== undefined) {
          f.cpuMsPer1kConnections.push(((cpu1 - cpu0) * 1000) / (Number(rate.total) / 1000));
          f.rss = Math.max(f.rss, rssMiB(t.pid));
        }
        const bulk = await runClient(
          { mode: 'bulk', targets: [t], concurrency: BULK_CONNECTIONS, seconds: SECONDS },
          files,
        );
        const cpu2 = t.pid === undefined ? NaN : cpuSeconds(t.pid);
        f.bulk.push(Number(bulk.megabytesPerSecond));
        if (t.pid !== undefined) {
          f.cpuSecondsPerGB.push((cpu2 - cpu1) / (Number(bulk.totalBytes) / 1e9));
          f.rss = Math.max(f.rss, rssMiB(t.pid));
        }
        process.stderr.write(
          `round ${round + 1} ${t.name}: ${round1(rate.connectionsPerSecond)} conn/s, ${round1(bulk.megabytesPerSecond)} MB/s\n`,
        );
      }
    }
    const ttfbTargets: Target[] = [...targets, { name: 'direct-again', port: backend.port }];
    const full = await sampleTtfb(ttfbTargets, false, files);
    const resumed = await sampleTtfb(ttfbTargets, true, files);
    const haproxyTarget = targets.find((t) => t.name === 'haproxy');
    let inPath: Record<string, unknown> | undefined;
    if (haproxyTarget === undefined || !tcpdumpAvailable()) {
      process.stderr.write(
        'tcpdump or haproxy is not installed: no in-path figures (apt-get install tcpdump haproxy; capture needs root).\n',
      );
    } else {
      inPath = await sampleInPath(
        [
          { target: { name: 'gateway', port: gateway.port }, backendPort: backend.port },
          { target: haproxyTarget, backendPort: haproxyBackendPort },
        ],
        files,
      );
    }
    const result: Record<string, unknown> = {
      bench: 'gateway',
      rounds: ROUNDS,
      secondsPerPhase: SECONDS,
      rateConcurrency: RATE_CONCURRENCY,
      bulkConnections: BULK_CONNECTIONS,
      ttfbSamples: TTFB_SAMPLES,
      gatewayNodeArgs: GATEWAY_NODE_ARGS,
      ...(BASELINE_NODE_ARGS === undefined ? {} : { baselineNodeArgs: BASELINE_NODE_ARGS }),
    };
    for (const t of targets) {
      const f = figures.get(t.name) as Figures;
      const entry: Record<string, number> = {
        connectionsPerSecond: Math.round(median(f.rate)),
        bulkMBps: round(median(f.bulk)),
        ...ttfbFigures(full, t.name, ''),
        ...ttfbFigures(resumed, t.name, 'Resumed'),
      };
      if (t.name !== 'direct') {
        entry.cpuMsPer1kConnections = round(median(f.cpuMsPer1kConnections));
        entry.cpuSecondsPerGB = round(median(f.cpuSecondsPerGB), 2);
        entry.rssMiB = f.rss;
      }
      result[t.name] = entry;
    }
    result.noiseFloor = {
      addedTtfbP99Ms: ttfbFigures(full, 'direct-again', '').addedTtfbP99Ms,
      addedTtfbResumedP99Ms: ttfbFigures(resumed, 'direct-again', 'Resumed').addedTtfbResumedP99Ms,
    };
    if (inPath !== undefined) result.inPath = inPath;
    result.hostStalls = hostStalls;
    const gw = result.gateway as Record<string, number>;
    const hp = result.haproxy as Record<string, number> | undefined;
    if (hp !== undefined) {
      const ratio = (key: string): number => round(Number(gw[key]) / Number(hp[key]), 2);
      result.ratios = { connectionRate: ratio('connectionsPerSecond'), bulkThroughput: ratio('bulkMBps') };
      if (inPath !== undefined) {
        const p99 = (name: string): number => Number((inPath[name] as Record<string, number>).addedP99Ms);
        (result.ratios as Record<string, number>).inPathAddedP99 = round(p99('gateway') / p99('haproxy'), 2);
      }
      const ratios = result.ratios as Record<string, number>;
      const ttfb = Number(gw.addedTtfbP99Ms);
      result.targets = {
        connectionRate: {
          atLeast: 0.5,
          value: ratios.connectionRate,
          met: Number(ratios.connectionRate) >= 0.5,
        },
        bulkThroughput: {
          atLeast: 0.8,
          value: ratios.bulkThroughput,
          met: Number(ratios.bulkThroughput) >= 0.8,
        },
        // HAProxy's own figure beside it: a target the C baseline misses on this host is the host's limit.
        addedTtfbP99Ms: { atMost: 0.3, value: ttfb, met: ttfb <= 0.3, haproxy: hp.addedTtfbP99Ms },
      };
    }
    printTable(result, targets);
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    for (const p of procs.reverse()) await p.stop();
    rmSync(files.dir, { recursive: true, force: true });
  }
}

type Samples = Record<string, number[]>;

interface CapturedPath {
  target: Target;
  /** The backend behind this middlebox, only its traffic on that port. */
  backendPort: number;
}

/**
 * Resumed samples through each middlebox under a loopback capture; from the
 * capture, the time each middlebox adds per connection (pcap-transit.ts).
 */
async function sampleInPath(paths: CapturedPath[], files: Files): Promise<Record<string, unknown>> {
  const pcap = join(files.dir, 'in-path.pcap');
  // Headers only: the flows are matched by their sequence numbers, not their (encrypted) bytes.
  const capture = await startCapture(
    pcap,
    paths.flatMap((p) => [p.target.port, p.backendPort]),
    128,
  );
  try {
    await runClient(
      { mode: 'ttfb', targets: paths.map((p) => p.target), samples: TTFB_SAMPLES, resume: true },
      files,
    );
  } finally {
    await capture.stop();
  }
  const figures: Record<string, unknown> = {};
  for (const { target, backendPort } of paths) {
    const transit = middleboxTransit(pcap, target.port, backendPort);
    figures[target.name] = {
      connections: transit.perConnection.length,
      ...addedPercentiles(transit.perConnection),
      // hello (with the upstream connect), server flight, client flight, response
      crossingP50Ms: transit.perCrossing.map((c) => round(percentile(ascending(c), 50), 3)),
      crossingP99Ms: transit.perCrossing.map((c) => round(percentile(ascending(c), 99), 3)),
    };
  }
  return figures;
}

/** Sequential time-to-first-byte samples per target, sorted ascending. */
async function sampleTtfb(targets: Target[], resume: boolean, files: Files): Promise<Samples> {
  const raw = (await runClient({ mode: 'ttfb', targets, samples: TTFB_SAMPLES, resume }, files)) as Samples;
  const sorted: Samples = {};
  for (const [name, values] of Object.entries(raw)) sorted[name] = ascending(values);
  return sorted;
}

/** p50/p99 of one target, and (but for direct) their difference to direct's. */
function ttfbFigures(samples: Samples, name: string, suffix: string): Record<string, number> {
  const own = samples[name] ?? [];
  const direct = samples.direct ?? [];
  const figures: Record<string, number> = {
    [`ttfb${suffix}P50Ms`]: round(percentile(own, 50), 3),
    [`ttfb${suffix}P99Ms`]: round(percentile(own, 99), 3),
  };
  if (name !== 'direct') {
    figures[`addedTtfb${suffix}P50Ms`] = round(percentile(own, 50) - percentile(direct, 50), 3);
    figures[`addedTtfb${suffix}P99Ms`] = round(percentile(own, 99) - percentile(direct, 99), 3);
  }
  return figures;
}

function round1(value: unknown): number {
  return round(Number(value));
}

function printTable(result: Record<string, unknown>, targets: Target[]): void {
  const rows = targets.map((t) => {
    const e = result[t.name] as Record<string, number>;
    return `| ${t.name} | ${e.connectionsPerSecond} | ${e.bulkMBps} | ${e.addedTtfbP50Ms ?? '-'} / ${
      e.addedTtfbP99Ms ?? '-'
    } | ${e.addedTtfbResumedP50Ms ?? '-'} / ${e.addedTtfbResumedP99Ms ?? '-'} | ${e.cpuMsPer1kConnections ?? '-'} | ${
      e.cpuSecondsPerGB ?? '-'
    } | ${e.rssMiB ?? '-'} |`;
  });
  const noise = result.noiseFloor as Record<string, number>;
  process.stdout.write(
    [
      '| path | new mTLS conn/s | bulk MB/s | added TTFB p50 / p99 ms | resumed: added p50 / p99 ms | CPU ms per 1k conn | CPU s per GB | RSS MiB |',
      '|---|---|---|---|---|---|---|---|',
      ...rows,
      `noise floor (direct vs direct): added p99 ${noise.addedTtfbP99Ms} ms, resumed ${noise.addedTtfbResumedP99Ms} ms`,
      ...Object.entries((result.inPath ?? {}) as Record<string, Record<string, number>>).map(
        ([name, f]) =>
          `in path (packet capture), ${name}: added p50 ${f.addedP50Ms} / p90 ${f.addedP90Ms} / p99 ${f.addedP99Ms} ms over ${f.connections} connections`,
      ),
      '',
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`gateway bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
