/**
 * Policy API benchmark: apply and list throughput, and watch fan-out latency
 * to 100 watchers, on the file store (the embedded default), the volatile
 * memory store and Redis. The global CP runs as its own process pinned to
 * one core (taskset) while this process generates load from the other. The
 * baseline is a bare Node HTTP server that reads the body and answers 200:
 * the ceiling any Node API could reach with this client on this machine.
 *
 * Prints one JSON line last. Run: npm run bench:api
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { freePort } from '../core/free-port.js';
import { startRedisServer } from '../test/common/redis-server.js';
import {
  median,
  percentile,
  round,
  rssMiB,
  runClosedLoop,
  send,
  target,
  type HttpTarget,
} from './support/load.js';
import { openWatchers } from './support/sse-watchers.js';

const CLI = resolve(fileURLToPath(import.meta.url), '../../cli/main.js');
const APPLIES = Number(process.env.BENCH_APPLIES ?? 6000);
const CONCURRENCY = 64;
const WATCHERS = 100;
const WATCH_WRITES = Number(process.env.BENCH_WATCH_WRITES ?? 200);
const ROUNDS = 3;

function virtualService(name: string, namespace: string, annotation?: string): string {
  return JSON.stringify({
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: {
      name,
      namespace,
      ...(annotation === undefined ? {} : { annotations: { 'bench/seq': annotation } }),
    },
    spec: {
      hosts: [`${name}.${namespace}.svc.cluster.local`],
      http: [
        {
          match: [{ headers: { 'end-user': { exact: 'jason' } } }],
          route: [{ destination: { host: name, subset: 'v2' } }],
        },
        {
          route: [
            { destination: { host: name, subset: 'v1' }, weight: 90 },
            { destination: { host: name, subset: 'v3' }, weight: 10 },
          ],
          retries: { attempts: 3, perTryTimeout: '2s', retryOn: '5xx,reset' },
          timeout: '10s',
        },
      ],
    },
  });
}

interface Server {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

async function startGlobal(store: string, dataDir: string): Promise<Server & { token: string }> {
  const port = await freePort();
  const pin = spawnSync('taskset', ['--version']).status === 0 ? ['taskset', '-c', '0'] : [];
  const argv = [
    ...pin,
    process.execPath,
    CLI,
    'global-cp',
    '--port',
    String(port),
    '--data-dir',
    dataDir,
    '--store',
    store,
  ];
  const child: ChildProcess = spawn(argv[0] ?? process.execPath, argv.slice(1), {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, MESHFED_LOG_LEVEL: 'warn' },
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ok = await fetch(`${url}/readyz`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) break;
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`global-cp (${store}) did not become ready`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  // taskset execs node, so the child's pid is the server's.
  return {
    url,
    token,
    pid: child.pid ?? 0,
    stop: () =>
      new Promise((done) => {
        if (child.exitCode !== null) return done();
        child.once('exit', () => done());
        child.kill('SIGTERM');
      }),
  };
}

async function startBaseline(): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"results":[]}');
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    pid: process.pid,
    stop: () => new Promise((done) => server.close(() => done())),
  };
}

async function measureApplies(
  t: HttpTarget,
  token: string,
  prefix: string,
): Promise<{ perSecond: number; failures: number }> {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const rates: number[] = [];
  let failures = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const r = await runClosedLoop(APPLIES, CONCURRENCY, async (i) => {
      const answer = await send(
        t,
        'POST',
        '/api/v1/apply',
        headers,
        virtualService(`${prefix}-r${round}-${i}`, 'bench'),
      );
      return answer.status === 200;
    });
    rates.push(r.perSecond);
    failures += r.failures;
  }
  return { perSecond: median(rates), failures };
}

async function measureLists(t: HttpTarget, token: string): Promise<number> {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  // A namespace of 100 policies: the size of a typical team's namespace.
  await runClosedLoop(100, 16, async (i) => {
    const answer = await send(t, 'POST', '/api/v1/apply', headers, virtualService(`listed-${i}`, 'listed'));
    return answer.status === 200;
  });
  const r = await runClosedLoop(2000, 16, async () => {
    const answer = await send(
      t,
      'GET',
      '/apis/networking.istio.io/v1/namespaces/listed/virtualservices',
      headers,
    );
    return answer.status === 200;
  });
  return r.perSecond;
}

async function measureWatchFanOut(server: {
  url: string;
  token: string;
}): Promise<{ p50: number; p99: number; delivered: number; expected: number }> {
  const t = target(server.url, 4);
  const headers = { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' };
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const listed = await send(
    t,
    'GET',
    '/apis/networking.istio.io/v1/namespaces/watched/virtualservices',
    headers,
  );
  const revision = (JSON.parse(listed.body) as { metadata: { resourceVersion: string } }).metadata
    .resourceVersion;
  const watchers = await openWatchers(
    `${server.url}/apis/networking.istio.io/v1/namespaces/watched/virtualservices?watch=true&resourceVersion=${revision}`,
    server.token,
    WATCHERS,
    (event) => {
      const seq = event.object?.metadata?.annotations?.['bench/seq'];
      const sent = seq === undefined ? undefined : sentAt.get(seq);
      if (sent !== undefined) latencies.push(performance.now() - sent);
    },
  );
  // 100 writes/s: a busy mesh's policy churn, far above a normal one.
  for (let i = 0; i < WATCH_WRITES; i++) {
    const seq = String(i);
    sentAt.set(seq, performance.now());
    await send(t, 'POST', '/api/v1/apply', headers, virtualService(`watched-${i}`, 'watched', seq));
    await new Promise((r) => setTimeout(r, 10));
  }
  const expected = WATCHERS * WATCH_WRITES;
  const deadline = Date.now() + 10_000;
  while (latencies.length < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  watchers.close();
  t.agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    p50: round(percentile(latencies, 50), 2),
    p99: round(percentile(latencies, 99), 2),
    delivered: latencies.length,
    expected,
  };
}

async function benchStore(name: string, storeUrl: (dir: string) => string): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), `meshfed-bench-${name}-`));
  const server = await startGlobal(storeUrl(join(dir, 'store')), dir);
  try {
    const t = target(server.url, CONCURRENCY);
    const applies = await measureApplies(t, server.token, name);
    const listsPerSecond = await measureLists(t, server.token);
    t.agent.destroy();
    const watch = await measureWatchFanOut(server);
    const rss = rssMiB(server.pid);
    process.stderr.write(
      `${name}: ${round(applies.perSecond)} applies/s, ${round(listsPerSecond)} lists/s, watch p99 ${watch.p99} ms\n`,
    );
    return {
      appliesPerSecond: round(applies.perSecond),
      applyFailures: applies.failures,
      listsPerSecond: round(listsPerSecond),
      watchP50Ms: watch.p50,
      watchP99Ms: watch.p99,
      watchDelivered: watch.delivered,
      watchExpected: watch.expected,
      rssMiB: rss,
    };
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const baseline = await startBaseline();
  const bt = target(baseline.url, CONCURRENCY);
  const baselineRates: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const r = await runClosedLoop(APPLIES, CONCURRENCY, async (i) => {
      const answer = await send(
        bt,
        'POST',
        '/api/v1/apply',
        { 'content-type': 'application/json' },
        virtualService(`b-${i}`, 'bench'),
      );
      return answer.status === 200;
    });
    baselineRates.push(r.perSecond);
  }
  bt.agent.destroy();
  await baseline.stop();
  const noopPerSecond = round(median(baselineRates));

  const file = await benchStore('file', (dir) => `file://${dir}`);
  const memory = await benchStore('memory', () => 'memory://');
  let redis: Record<string, number> | { skipped: string };
  try {
    const redisServer = await startRedisServer();
    try {
      redis = await benchStore('redis', () => `${redisServer.url}/0?prefix=bench`);
    } finally {
      await redisServer.stop();
    }
  } catch (err) {
    redis = { skipped: (err as Error).message };
  }
  const result = {
    bench: 'api',
    applies: APPLIES,
    concurrency: CONCURRENCY,
    watchers: WATCHERS,
    rounds: ROUNDS,
    serverPinnedToOneCore: spawnSync('taskset', ['--version']).status === 0,
    baselineNoopRequestsPerSecond: noopPerSecond,
    file,
    memory,
    redis,
    fileAppliesVsNoop: round((file.appliesPerSecond ?? 0) / noopPerSecond, 3),
    targets: { appliesPerSecond: 2000, watchP99Ms: 50 },
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`api bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
