/**
 * KDS benchmark. The global CP runs as its own process (the built CLI,
 * memory store); zones are real KdsClients over gRPC/TLS, each with its own
 * MemoryStore — in this process, or for the 50-zone run in worker
 * processes (this file with argument `zone-worker`).
 *
 * Figures:
 * - initial sync of 10,000 policies to one zone (start → ready), with the
 *   time to list the same 10,000 from global's REST API as the baseline;
 * - write → applied latency to all of 10 zones (a single-policy apply at
 *   global until the last zone's store holds it), p50/p99/max;
 * - global's RSS idle with the 10,000 policies, and with 50 zones connected
 *   and synced.
 *
 * Prints one JSON line last. Run: npm run bench:kds
 */

import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MemoryStore } from '../core/store/store-memory.js';
import { KdsClient } from '../zone-cp/kds/kds-client.js';
import { createLogger } from '../core/log.js';
import { freePort } from '../core/free-port.js';
import { median, percentile, round, rssMiB } from './support/load.js';

const SELF = fileURLToPath(import.meta.url);
const CLI = resolve(SELF, '../../cli/main.js');
const POLICIES = Number(process.env.BENCH_KDS_POLICIES ?? 10_000);
const LATENCY_ZONES = 10;
const LATENCY_WRITES = Number(process.env.BENCH_KDS_WRITES ?? 200);
const MEMORY_ZONES = Number(process.env.BENCH_KDS_ZONES ?? 50);
const ZONES_PER_WORKER = 10;
const SYNC_RUNS = 3;
const TARGETS = { initialSyncMs: 5000, propagationP99Ms: 200 };

interface Global {
  url: string;
  kds: string;
  token: string;
  caPem: string;
  pid: number;
  stop(): Promise<void>;
}

interface ZoneHandle {
  name: string;
  store: MemoryStore;
  client: KdsClient;
  close(): Promise<void>;
}

interface WorkerConfig {
  kds: string;
  caPem: string;
  zones: Array<{ name: string; token: string }>;
}

// Zone clients log every connect at info; the figures are what matters here.
process.env.MESHFED_LOG_LEVEL ??= 'warn';
const quiet = createLogger('bench');

async function api(
  global: Pick<Global, 'url' | 'token'>,
  method: string,
  path: string,
  body?: string,
  contentType?: string,
): Promise<unknown> {
  const res = await fetch(`${global.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${global.token}`,
      ...(contentType === undefined ? {} : { 'content-type': contentType }),
    },
    body,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as unknown;
}

async function startGlobal(dataDir: string): Promise<Global> {
  const [port, kdsPort] = [await freePort(), await freePort()];
  const child: ChildProcess = spawn(
    process.execPath,
    [
      CLI,
      'global-cp',
      '--port',
      String(port),
      '--kds-port',
      String(kdsPort),
      '--data-dir',
      dataDir,
      '--store',
      'memory://',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, MESHFED_LOG_LEVEL: 'error' } },
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ok = await fetch(`${url}/readyz`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('global-cp did not become ready');
    await new Promise((r) => setTimeout(r, 50));
  }
  const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  const bundle = (await api({ url, token }, 'GET', '/api/v1/trust-bundle')) as { roots: string[] };
  return {
    url,
    kds: `127.0.0.1:${kdsPort}`,
    token,
    caPem: bundle.roots[0] ?? '',
    pid: child.pid ?? 0,
    stop: () =>
      new Promise((done) => {
        if (child.exitCode !== null) return done();
        child.once('exit', () => done());
        child.kill('SIGTERM');
      }),
  };
}

function policyDoc(i: number): string {
  return JSON.stringify({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: `policy-${i}`, namespace: `ns-${i % 50}`, labels: { app: `app-${i % 200}` } },
    spec: {
      selector: { matchLabels: { app: `app-${i % 200}`, version: `v${i % 3}` } },
      action: 'ALLOW',
      rules: [
        {
          from: [{ source: { principals: [`cluster.local/ns/ns-${i % 50}/sa/caller-${i % 17}`] } }],
          to: [{ operation: { methods: ['GET', 'POST'], paths: [`/api/v1/items/${i}/*`] } }],
        },
      ],
    },
  });
}

async function loadPolicies(global: Global): Promise<void> {
  const batch = 500;
  for (let start = 0; start < POLICIES; start += batch) {
    const docs: string[] = [];
    for (let i = start; i < Math.min(POLICIES, start + batch); i++) docs.push(policyDoc(i));
    // YAML is a superset of JSON: one JSON document per `---` section.
    await api(global, 'POST', '/api/v1/apply', docs.join('\n---\n'), 'application/yaml');
  }
}

async function zoneToken(global: Global, zone: string): Promise<string> {
  const issued = (await api(
    global,
    'POST',
    '/api/v1/tokens',
    JSON.stringify({ kind: 'zone', zone }),
    'application/json',
  )) as {
    token: string;
  };
  return issued.token;
}

function startZone(kds: string, caPem: string, name: string, token: string): ZoneHandle {
  const store = new MemoryStore({ logger: quiet });
  const client = new KdsClient({
    zone: name,
    globalAddresses: [kds],
    globalCaPem: caPem,
    token,
    store,
    inventory: () => ({ zone: name, services: [] }),
    status: () => ({ connectedProxies: 0, errors: [] }),
    logger: quiet,
  });
  client.start();
  return {
    name,
    store,
    client,
    async close() {
      await client.close();
      await store.close();
    },
  };
}

/** Median time from start() to ready() of a fresh zone: the whole store arrives as a full resync. */
async function measureInitialSync(global: Global): Promise<number[]> {
  const runs: number[] = [];
  for (let run = 0; run < SYNC_RUNS; run++) {
    const name = `sync-${run}`;
    const token = await zoneToken(global, name);
    const started = performance.now();
    const zone = startZone(global.kds, global.caPem, name, token);
    await zone.client.ready();
    runs.push(performance.now() - started);
    const count = (await zone.store.list({ kind: 'AuthorizationPolicy' })).items.length;
    if (count !== POLICIES) throw new Error(`zone ${name} holds ${count} policies, want ${POLICIES}`);
    await zone.close();
  }
  return runs;
}

async function measureList(global: Global): Promise<number[]> {
  const runs: number[] = [];
  for (let run = 0; run < SYNC_RUNS; run++) {
    const started = performance.now();
    const list = (await api(global, 'GET', '/apis/security.istio.io/v1/authorizationpolicies')) as {
      items: unknown[];
    };
    runs.push(performance.now() - started);
    if (list.items.length !== POLICIES) throw new Error(`list returned ${list.items.length}`);
  }
  return runs;
}

/** For each write: ms from sending the apply until every zone's store holds the object. */
async function measurePropagation(global: Global, zones: ZoneHandle[]): Promise<number[]> {
  const waiting = new Map<string, { remaining: Set<string>; done: () => void }>();
  const watches = await Promise.all(
    zones.map(async (zone) =>
      zone.store.watch(
        { kind: 'PeerAuthentication', fromRevision: await zone.store.currentRevision() },
        {
          onEvent: (event) => {
            const entry = waiting.get(event.object.metadata.name);
            if (entry === undefined || event.type === 'DELETED') return;
            entry.remaining.delete(zone.name);
            if (entry.remaining.size === 0) entry.done();
          },
          onError: (err) => {
            throw err;
          },
        },
      ),
    ),
  );
  const latencies: number[] = [];
  try {
    for (let i = 0; i < LATENCY_WRITES; i++) {
      const name = `latency-${i}`;
      const applied = new Promise<void>((done) =>
        waiting.set(name, { remaining: new Set(zones.map((z) => z.name)), done }),
      );
      const started = performance.now();
      await api(
        global,
        'POST',
        '/api/v1/apply',
        JSON.stringify({
          apiVersion: 'security.istio.io/v1',
          kind: 'PeerAuthentication',
          metadata: { name, namespace: 'bench' },
          spec: { mtls: { mode: i % 2 === 0 ? 'STRICT' : 'PERMISSIVE' } },
        }),
        'application/json',
      );
      await applied;
      latencies.push(performance.now() - started);
      waiting.delete(name);
    }
  } finally {
    for (const w of watches) w.close();
  }
  return latencies;
}

/** Starts zones in worker processes; resolves once every zone is synced. */
async function startWorkers(global: Global, count: number): Promise<ChildProcess[]> {
  const workers: ChildProcess[] = [];
  const ready: Promise<void>[] = [];
  for (let first = 0; first < count; first += ZONES_PER_WORKER) {
    const zones: WorkerConfig['zones'] = [];
    for (let i = first; i < Math.min(count, first + ZONES_PER_WORKER); i++) {
      const name = `mem-${i}`;
      zones.push({ name, token: await zoneToken(global, name) });
    }
    const worker = fork(SELF, ['zone-worker'], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: { ...process.env, MESHFED_LOG_LEVEL: 'error' },
    });
    workers.push(worker);
    ready.push(
      new Promise((done, fail) => {
        worker.once('message', (m) => (m === 'ready' ? done() : fail(new Error(String(m)))));
        worker.once('exit', (code) => fail(new Error(`zone worker exited with ${code}`)));
      }),
    );
    const config: WorkerConfig = { kds: global.kds, caPem: global.caPem, zones };
    worker.send(config);
  }
  await Promise.all(ready);
  return workers;
}

async function zoneWorker(): Promise<void> {
  const config = await new Promise<WorkerConfig>((done) =>
    process.once('message', (m) => done(m as WorkerConfig)),
  );
  const zones = config.zones.map((z) => startZone(config.kds, config.caPem, z.name, z.token));
  await Promise.all(zones.map((z) => z.client.ready()));
  process.send?.('ready');
  process.once('disconnect', () => {
    void Promise.all(zones.map((z) => z.close())).finally(() => process.exit(0));
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-kds-bench-'));
  const global = await startGlobal(join(dir, 'global'));
  try {
    const loadStarted = performance.now();
    await loadPolicies(global);
    const loadMs = performance.now() - loadStarted;
    process.stderr.write(`loaded ${POLICIES} policies in ${Math.round(loadMs)} ms\n`);
    const listRuns = await measureList(global);
    const idleRss = rssMiB(global.pid);

    const syncRuns = await measureInitialSync(global);
    process.stderr.write(`initial sync runs (ms): ${syncRuns.map((r) => Math.round(r)).join(', ')}\n`);

    const zones: ZoneHandle[] = [];
    for (let i = 0; i < LATENCY_ZONES; i++) {
      const name = `lat-${i}`;
      zones.push(startZone(global.kds, global.caPem, name, await zoneToken(global, name)));
    }
    await Promise.all(zones.map((z) => z.client.ready()));
    const latencies = (await measurePropagation(global, zones)).sort((a, b) => a - b);
    process.stderr.write(
      `propagation to ${LATENCY_ZONES} zones: p50 ${round(percentile(latencies, 50))} ms, p99 ${round(percentile(latencies, 99))} ms\n`,
    );
    for (const zone of zones) await zone.close();

    const fanOutStarted = performance.now();
    const workers = await startWorkers(global, MEMORY_ZONES);
    const fanOutMs = performance.now() - fanOutStarted;
    // Let the stream buffers of the initial syncs drain before reading RSS.
    await new Promise((r) => setTimeout(r, 2000));
    const connected = (await api(global, 'GET', '/api/v1/kds')) as { connectedZones: string[] };
    const rssWithZones = rssMiB(global.pid);
    for (const worker of workers) worker.disconnect();
    await Promise.all(
      workers.map(
        (w) => new Promise((done) => (w.exitCode === null ? w.once('exit', done) : done(undefined))),
      ),
    );

    const initialSyncMs = median(syncRuns);
    const p99 = percentile(latencies, 99);
    process.stdout.write(
      JSON.stringify({
        bench: 'kds',
        policies: POLICIES,
        initialSyncMs: round(initialSyncMs),
        initialSyncRunsMs: syncRuns.map((r) => round(r)),
        baselineListMs: round(median(listRuns)),
        syncVsListRatio: round(initialSyncMs / median(listRuns), 2),
        propagation: {
          zones: LATENCY_ZONES,
          writes: latencies.length,
          p50Ms: round(percentile(latencies, 50)),
          p99Ms: round(p99),
          maxMs: round(latencies.at(-1) ?? NaN),
        },
        zonesFullSyncMs: { zones: MEMORY_ZONES, ms: round(fanOutMs) },
        globalRssMiB: {
          idleWithPolicies: idleRss,
          withZones: rssWithZones,
          zonesConnected: connected.connectedZones.length,
        },
        targets: TARGETS,
        meetsTargets: {
          initialSync: initialSyncMs <= TARGETS.initialSyncMs,
          propagationP99: p99 <= TARGETS.propagationP99Ms,
        },
      }) + '\n',
    );
  } finally {
    await global.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'zone-worker') {
  zoneWorker().catch((err: unknown) => {
    process.send?.(`zone worker failed: ${(err as Error).message}`);
    process.exit(1);
  });
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`kds bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
