/**
 * Control-plane benchmark: a zone CP (its own process) with 1,000 services
 * and 2,000 simulated proxies on real MDS streams (another process). One
 * policy change at a time; the figure is the time from the change to the
 * last affected proxy applying (and ACKing) its new snapshot:
 *   - route: a VirtualService on one service (reaches the 6 proxies that call it);
 *   - mesh-wide: a root-namespace PeerAuthentication (reaches all 2,000).
 * Also: time for 2,000 proxies to connect and get their first snapshot,
 * zone CP RSS, and CA signatures/s through gRPC.
 * Baselines in the same run: an MDS server that compiles nothing pushing a
 * snapshot of the same size to the same 2,000 streams, and
 * CertificateAuthority.signWorkload in-process.
 *
 * Prints one JSON line last. Run: npm run bench:cp
 * (BENCH_SERVICES, BENCH_PROXIES, BENCH_CHANGES override the sizes.)
 */

import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRootCa, generateKeyPair, loadCa } from '../core/pki/ca.js';
import { percentile, round } from './support/load.js';
import { callersOf } from './support/cp-world.js';

const SERVICES = Number(process.env.BENCH_SERVICES ?? 1000);
const PROXIES = Number(process.env.BENCH_PROXIES ?? 2000);
const DEPS = 3;
const CHANGES = Number(process.env.BENCH_CHANGES ?? 10);
const SIGN_SECONDS = Number(process.env.BENCH_SIGN_SECONDS ?? 5);
const SIGN_CONCURRENCY = Number(process.env.BENCH_SIGN_CONCURRENCY ?? 64);
/** BENCH_ONLY=ca: only the CA part (pool and main-thread baseline). */
const ONLY_CA = process.env.BENCH_ONLY === 'ca';
const here = fileURLToPath(new URL('.', import.meta.url));
const support = (name: string) => resolve(here, 'support', name);

interface Child {
  proc: ChildProcess;
  /** The first stdout line, parsed. */
  ready: Promise<Record<string, unknown>>;
  /** Next IPC message of `type`. */
  next(type: string): Promise<Record<string, unknown>>;
  send(message: unknown): void;
  stop(): Promise<void>;
}

function start(script: string, args: string[], env: Record<string, string> = {}): Child {
  const proc = fork(support(script), args, {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    execArgv: [
      '--max-old-space-size=2048',
      // BENCH_ZONE_PROF_DIR: a V8 CPU profile of each zone CP process, for finding the next cost.
      ...(script === 'cp-zone.js' && process.env.BENCH_ZONE_PROF_DIR
        ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_ZONE_PROF_DIR}`]
        : []),
    ],
    env: { ...process.env, ...env },
  });
  const queue: Array<Record<string, unknown>> = [];
  const waiting: Array<{ type: string; resolve: (m: Record<string, unknown>) => void }> = [];
  proc.on('message', (message: Record<string, unknown>) => {
    const i = waiting.findIndex((w) => w.type === message.type);
    const waiter = i >= 0 ? waiting.splice(i, 1)[0] : undefined;
    if (waiter) waiter.resolve(message);
    else queue.push(message);
  });
  const ready = new Promise<Record<string, unknown>>((resolveReady, reject) => {
    let buffer = '';
    proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl >= 0) resolveReady(JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>);
    });
    proc.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  // Children that print nothing (the proxies) end by being stopped: not an error.
  ready.catch(() => undefined);
  return {
    proc,
    ready,
    next(type) {
      const i = queue.findIndex((m) => m.type === type);
      if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0] as Record<string, unknown>);
      return new Promise((res) => waiting.push({ type, resolve: res }));
    },
    send: (message) => proc.send(message as never),
    stop: () =>
      new Promise((res) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return res();
        proc.once('exit', () => res());
        proc.kill('SIGTERM');
        setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
      }),
  };
}

async function apply(restUrl: string, admin: string, doc: unknown): Promise<void> {
  const res = await fetch(`${restUrl}/api/v1/apply`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify(doc),
  });
  if (res.status !== 200) throw new Error(`apply answered ${res.status}: ${await res.text()}`);
}

async function converge(
  proxies: Child,
  trigger: () => Promise<void>,
  wanted: string[] | 'all',
): Promise<{ ms: number; extra: number }> {
  proxies.send({ type: 'mark' });
  await proxies.next('marked');
  await trigger();
  proxies.send({ type: 'wait', id: 0, proxies: wanted, timeoutMs: 20_000 });
  const answer = await proxies.next('converged');
  if (answer.timedOut === true) throw new Error(`${String(answer.missing)} proxies never got the change`);
  // Let any stray push land before counting who got one.
  await new Promise((r) => setTimeout(r, 400));
  proxies.send({ type: 'count' });
  const count = Number((await proxies.next('count')).applied);
  const expected = wanted === 'all' ? PROXIES : wanted.length;
  return { ms: Number(answer.ms), extra: count - expected };
}

function summary(values: number[]): { p50: number; p99: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1] ?? NaN),
  };
}

function signWorkloadRate(): number {
  const root = createRootCa({ trustDomain: 'cluster.local' });
  const ca = loadCa(root.certPem, root.keyPem);
  const keys = Array.from({ length: 64 }, () => generateKeyPair().publicKey);
  let n = 0;
  const until = Date.now() + 1000;
  while (Date.now() < until) {
    ca.signWorkload(keys[n % keys.length] ?? generateKeyPair().publicKey, {
      spiffeId: 'spiffe://cluster.local/ns/a/sa/b',
    });
    n++;
  }
  return n;
}

interface SignFigures {
  perSecond: number;
  perZoneCpuSecond: number;
  zoneCpuSeconds: number;
  clientCpuSeconds: number;
  failed: number;
}

/** A proxy token of the zone at restUrl (made before any timed phase). */
async function proxyTokenOf(restUrl: string, admin: string): Promise<string> {
  const answer = await fetch(`${restUrl}/api/v1/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'proxy', workload: 'svc-0-w0', namespace: 'ns-0', serviceAccount: 'svc-0' }),
  });
  return ((await answer.json()) as { token: string }).token;
}

/** CA Sign calls through gRPC from a separate process, closed loop; zone and client CPU both counted. */
async function measureSigning(
  zone: Child,
  info: { restUrl: string; grpcAddress: string; admin: string },
  caFile: string,
  children: Child[],
): Promise<SignFigures> {
  const token = await proxyTokenOf(info.restUrl, info.admin);
  zone.send({ type: 'cpu' });
  const cpuBefore = Number((await zone.next('cpu')).seconds);
  const signer = start('cp-proxies.js', [
    'sign',
    info.grpcAddress,
    caFile,
    token,
    String(SIGN_SECONDS),
    String(SIGN_CONCURRENCY),
  ]);
  children.push(signer);
  const signed = (await signer.ready) as {
    perSecond: number;
    failed: number;
    total: number;
    clientCpuSeconds: number;
  };
  await signer.stop();
  zone.send({ type: 'cpu' });
  // Zone CPU (main thread and CA workers: one process) per signature: capacity per core, whatever the client could drive.
  const zoneCpuSeconds = Number((await zone.next('cpu')).seconds) - cpuBefore;
  return {
    perSecond: round(signed.perSecond),
    perZoneCpuSecond: round(signed.total / zoneCpuSeconds),
    zoneCpuSeconds: round(zoneCpuSeconds, 2),
    clientCpuSeconds: round(signed.clientCpuSeconds, 2),
    failed: signed.failed,
  };
}

/** The CA figures alone (BENCH_ONLY=ca): a zone with the pool, then the same zone signing on its main thread. */
async function caOnly(dir: string, children: Child[]): Promise<void> {
  const figures: Record<string, SignFigures> = {};
  for (const [label, workers] of [
    ['pool', undefined],
    ['mainThread', '0'],
  ] as const) {
    const zone = start(
      'cp-zone.js',
      [String(SERVICES), String(DEPS), join(dir, `zone-${label}`)],
      workers === undefined ? {} : { BENCH_CA_WORKERS: workers },
    );
    children.push(zone);
    const info = (await zone.ready) as { restUrl: string; grpcAddress: string; caPem: string; admin: string };
    const caFile = join(dir, `zone-${label}-ca.pem`);
    writeFileSync(caFile, info.caPem);
    figures[label] = await measureSigning(zone, info, caFile, children);
    process.stderr.write(`CA ${label}: ${JSON.stringify(figures[label])}\n`);
    await zone.stop();
  }
  process.stdout.write(
    JSON.stringify({
      bench: 'cp-ca',
      ca: figures.pool,
      baselineCaMainThread: figures.mainThread,
      baselineSignWorkloadPerSecond: signWorkloadRate(),
    }) + '\n',
  );
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-cp-bench-'));
  const children: Child[] = [];
  try {
    if (ONLY_CA) {
      await caOnly(dir, children);
      return;
    }
    const zone = start('cp-zone.js', [String(SERVICES), String(DEPS), join(dir, 'zone')]);
    children.push(zone);
    const info = (await zone.ready) as { restUrl: string; grpcAddress: string; caPem: string; admin: string };
    const caFile = join(dir, 'zone-ca.pem');
    writeFileSync(caFile, info.caPem);
    process.stderr.write(
      `zone CP ${info.grpcAddress} with ${SERVICES} services; connecting ${PROXIES} proxies…\n`,
    );

    const proxies = start('cp-proxies.js', [
      'mds',
      info.grpcAddress,
      caFile,
      info.admin,
      String(SERVICES),
      String(PROXIES),
    ]);
    children.push(proxies);
    const connected = await proxies.next('connected');
    zone.send({ type: 'rss' });
    const rssConnected = await zone.next('rss');
    process.stderr.write(
      `all connected in ${round(Number(connected.ms))} ms; RSS ${String(rssConnected.rssMiB)} MiB ` +
        `(heap ${String(rssConnected.heapUsedMiB)}, external ${String(rssConnected.externalMiB)})\n`,
    );

    const route: number[] = [];
    let routeExtra = 0;
    for (let c = 0; c < CHANGES; c++) {
      const target = (c * 37 + 5) % SERVICES;
      const name = `svc-${target}`;
      const namespace = `ns-${target % 10}`;
      const wanted = callersOf(target, SERVICES, DEPS).map((p) => `${p.namespace}/${p.workload}`);
      const result = await converge(
        proxies,
        () =>
          apply(info.restUrl, info.admin, {
            apiVersion: 'networking.istio.io/v1',
            kind: 'VirtualService',
            metadata: { name, namespace },
            spec: {
              hosts: [name],
              http: [{ route: [{ destination: { host: name } }], timeout: `${c + 1}s` }],
            },
          }),
        wanted,
      );
      route.push(result.ms);
      routeExtra += result.extra;
    }
    process.stderr.write(
      `route change: ${JSON.stringify(summary(route))} ms, pushes to unaffected proxies: ${routeExtra}\n`,
    );

    const meshWide: number[] = [];
    // CPU the zone spends per mesh-wide change: unlike wall time, it does not grow with other jobs' load.
    zone.send({ type: 'cpu' });
    const meshCpuBefore = Number((await zone.next('cpu')).seconds);
    for (let c = 0; c < CHANGES; c++) {
      const result = await converge(
        proxies,
        () =>
          apply(info.restUrl, info.admin, {
            apiVersion: 'security.istio.io/v1',
            kind: 'PeerAuthentication',
            metadata: { name: 'default', namespace: 'istio-system' },
            spec: { mtls: { mode: c % 2 === 0 ? 'STRICT' : 'PERMISSIVE' } },
          }),
        'all',
      );
      meshWide.push(result.ms);
    }
    zone.send({ type: 'cpu' });
    const meshCpuMsPerChange = ((Number((await zone.next('cpu')).seconds) - meshCpuBefore) * 1000) / CHANGES;
    process.stderr.write(
      `mesh-wide change: ${JSON.stringify(summary(meshWide))} ms, zone CPU ${round(meshCpuMsPerChange)} ms per change\n`,
    );

    const sample = await fetch(
      `${info.restUrl}/inspect/proxies/${encodeURIComponent('ns-0/svc-0-w0')}/config`,
      {
        headers: { authorization: `Bearer ${info.admin}` },
      },
    );
    const snapshotBytes = (await sample.arrayBuffer()).byteLength;
    const metrics = await (await fetch(`${info.restUrl}/metrics`)).text();
    const roundSum = Number(/meshfed_zone_mds_push_round_seconds_sum\{[^}]*\} ([\d.e-]+)/.exec(metrics)?.[1]);
    const roundCount = Number(/meshfed_zone_mds_push_round_seconds_count\{[^}]*\} (\d+)/.exec(metrics)?.[1]);
    zone.send({ type: 'rss' });
    const rssAfter = await zone.next('rss');
    proxies.send({ type: 'stop' });
    await proxies.stop();

    // CA throughput through gRPC, with a real proxy token: this zone signs on its worker pool.
    const signed = await measureSigning(zone, info, caFile, children);
    process.stderr.write(`CA (pool): ${JSON.stringify(signed)}\n`);
    zone.send({ type: 'rss' });
    const rssEnd = await zone.next('rss');
    await zone.stop();

    // CA baseline: the same zone signing on its main thread (no worker pool).
    const plain = start('cp-zone.js', [String(SERVICES), String(DEPS), join(dir, 'zone-plain')], {
      BENCH_CA_WORKERS: '0',
    });
    children.push(plain);
    const plainInfo = (await plain.ready) as {
      restUrl: string;
      grpcAddress: string;
      caPem: string;
      admin: string;
    };
    const plainCa = join(dir, 'zone-plain-ca.pem');
    writeFileSync(plainCa, plainInfo.caPem);
    const signedPlain = await measureSigning(plain, plainInfo, plainCa, children);
    process.stderr.write(`CA (main thread): ${JSON.stringify(signedPlain)}\n`);
    await plain.stop();

    // Baseline: the same 2,000 clients on an MDS server that compiles nothing.
    const echo = start('cp-echo.js', []);
    children.push(echo);
    const echoInfo = (await echo.ready) as { grpcAddress: string; caPem: string };
    const echoCa = join(dir, 'echo-ca.pem');
    writeFileSync(echoCa, echoInfo.caPem);
    const echoProxies = start('cp-proxies.js', [
      'mds',
      echoInfo.grpcAddress,
      echoCa,
      'none',
      String(SERVICES),
      String(PROXIES),
    ]);
    children.push(echoProxies);
    const echoConnected = await echoProxies.next('connected');
    const baseline: number[] = [];
    echo.send({ type: 'cpu' });
    const echoCpuBefore = Number((await echo.next('cpu')).seconds);
    for (let c = 0; c < CHANGES; c++) {
      const result = await converge(
        echoProxies,
        async () => {
          echo.send({ type: 'push', bytes: snapshotBytes });
          await echo.next('pushed');
        },
        'all',
      );
      baseline.push(result.ms);
    }
    echo.send({ type: 'cpu' });
    const echoCpuMsPerPush = ((Number((await echo.next('cpu')).seconds) - echoCpuBefore) * 1000) / CHANGES;
    echoProxies.send({ type: 'stop' });
    await echoProxies.stop();
    await echo.stop();
    const directSign = signWorkloadRate();

    const meshWideSummary = summary(meshWide);
    const baselineSummary = summary(baseline);
    const result = {
      bench: 'cp',
      services: SERVICES,
      proxies: PROXIES,
      changes: CHANGES,
      dependenciesPerProxy: DEPS,
      snapshotBytes,
      connectAllMs: round(Number(connected.ms)),
      routeChangeMs: summary(route),
      routeChangeUnaffectedPushes: routeExtra,
      meshWideChangeMs: meshWideSummary,
      pushRoundMeanMs: round((roundSum / roundCount) * 1000, 2),
      baselineEchoPushAllMs: baselineSummary,
      baselineConnectAllMs: round(Number(echoConnected.ms)),
      meshWideVsBaselineP50: round(meshWideSummary.p50 / baselineSummary.p50, 2),
      meshWideVsBaselineP99: round(meshWideSummary.p99 / baselineSummary.p99, 2),
      meshWideZoneCpuMsPerChange: round(meshCpuMsPerChange),
      baselineEchoCpuMsPerPush: round(echoCpuMsPerPush),
      zoneRssMiB: {
        connected: rssConnected.rssMiB,
        afterChanges: rssAfter.rssMiB,
        afterSigning: rssEnd.rssMiB,
        peak: rssEnd.peakMiB,
        heapUsedAfterChanges: rssAfter.heapUsedMiB,
      },
      caSignaturesPerSecond: signed.perSecond,
      caSignaturesPerZoneCpuSecond: signed.perZoneCpuSecond,
      caSignFailures: signed.failed,
      caZoneCpuSeconds: signed.zoneCpuSeconds,
      caClientCpuSeconds: signed.clientCpuSeconds,
      caSignSeconds: SIGN_SECONDS,
      baselineCaMainThread: signedPlain,
      caPoolVsMainThread: round(signed.perSecond / signedPlain.perSecond, 2),
      baselineSignWorkloadPerSecond: directSign,
      targets: { convergenceP99Ms: 1000, zoneRssMiB: 500, caSignaturesPerSecond: 2000 },
    };
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    for (const child of children) await child.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
