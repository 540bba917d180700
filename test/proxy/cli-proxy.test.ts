/**
 * `meshfed proxy` as a user runs it (the built CLI as a child process):
 * static snapshot and certificate files, free ports reported in a ports
 * file, traffic through it to a real server proxy, clear refusals of bad
 * flags, graceful exit on SIGTERM; and the sidecar bundle
 * (`dist/cli/meshfed-proxy.cjs`, the same flags without the rest of the CLI),
 * including what it keeps out of its process (docs/performance.md, session
 * 13): after start-up, a proxied request, a chunked one and an unknown
 * Expect (the node:http path), local replies over HTTP/1.1 and h2c, a
 * Prometheus scrape, every admin endpoint and a span export, no Date string method has
 * run (the first initialises ICU's time zone data, core/utc-format.ts), yet
 * every answer carries a Date header, and node:perf_hooks, node:v8,
 * node:http2 and fetch's undici were never loaded (core/clock.ts,
 * core/process-metrics.ts, proxy/telemetry/otlp-exporter.ts, core/h2). A preload
 * (`--require`) wraps Date's string methods and reports, at exit, which
 * ran and which built-in modules were loaded. Node formats its own Date
 * header through the same Date.prototype, so the preload sees that too.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { SIDECAR_BUNDLE, assertCliBuilt, cliEnv, runCli, startCli, type RunningCli } from '../common/cli.js';
import { waitFor } from '../common/wait.js';
import {
  createTestMesh,
  keepAlive,
  request,
  sidecarEndpoint,
  sidecarSnapshot,
  startApp,
  startTestProxy,
  type TestApp,
  type TestProxy,
} from './proxy-harness.js';

const mesh = createTestMesh();
const NS = 'cli';
const serverW = { workload: 'backend', namespace: NS };
let dir: string;
let app: TestApp;
let server: TestProxy;
let cli: RunningCli | undefined;

beforeAll(async () => {
  assertCliBuilt();
  dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-proxy-cli-'));
  writeFileSync(path.join(dir, 'guard.cjs'), GUARD);
  app = await startApp('backend');
  server = await startTestProxy(
    mesh,
    serverW,
    sidecarSnapshot({
      ...serverW,
      roots: [mesh.rootPem],
      inboundPorts: [{ port: 80, targetPort: app.port, protocol: 'http', mtls: 'STRICT' }],
    }),
  );
  const creds = mesh.workload({ namespace: NS, serviceAccount: 'frontend' });
  writeFileSync(path.join(dir, 'cert.pem'), creds.certChainPem);
  writeFileSync(path.join(dir, 'key.pem'), creds.keyPem);
  writeFileSync(path.join(dir, 'roots.pem'), creds.trustBundlePem);
  writeFileSync(
    path.join(dir, 'snapshot.json'),
    JSON.stringify(
      sidecarSnapshot({
        workload: 'frontend',
        namespace: NS,
        roots: [mesh.rootPem],
        services: [
          {
            name: 'backend',
            namespace: NS,
            clusters: [{ subset: '_', endpoints: [sidecarEndpoint(server.handle.ports.inbound, serverW)] }],
          },
        ],
      }),
    ),
  );
});

afterAll(async () => {
  keepAlive.destroy();
  if (cli !== undefined && cli.child.exitCode === null) cli.child.kill('SIGKILL');
  await server?.close();
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

const GUARD = `
const { writeFileSync } = require('node:fs');
const ran = new Set();
for (const name of ['toISOString', 'toUTCString', 'toString', 'toJSON', 'toDateString', 'toTimeString',
  'toLocaleString', 'toLocaleDateString', 'toLocaleTimeString']) {
  const original = Date.prototype[name];
  Date.prototype[name] = function (...args) { ran.add(name); return original.apply(this, args); };
}
process.on('exit', () => {
  const modules = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13));
  writeFileSync(process.env.FOOTPRINT_REPORT, JSON.stringify({ dateMethods: [...ran].sort(), modules }));
});
`;

/**
 * Modules a sidecar must not load: each costs resident memory for what the
 * proxy does another way (core/clock.ts, core/process-metrics.ts, the OTLP
 * exporter on node:http, HTTP/2 on core/h2: node:http2 is 2.3 MiB).
 */
function unwanted(module: string): boolean {
  return module === 'perf_hooks' || module === 'v8' || module === 'http2' || module.includes('undici');
}

/** IMF-fixdate, as RFC 9110 §5.6.7 has a Date header. */
const HTTP_DATE =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/;

interface Report {
  dateMethods: string[];
  modules: string[];
}

interface ReportedPorts {
  outbound: number;
  admin: number;
  metrics: number;
}

/** The ports a proxy wrote to `portsFile`, once it has. */
function reportedPorts(portsFile: string, stderr: () => string): Promise<ReportedPorts> {
  return waitFor(
    () => {
      try {
        return JSON.parse(readFileSync(portsFile, 'utf8')) as ReportedPorts;
      } catch {
        return undefined;
      }
    },
    { what: `the ports file ${path.basename(portsFile)} (stderr: ${stderr()})` },
  );
}

let reports = 0;

/**
 * Runs `args` under the guard and returns its report once the process has exited with 0: by itself, or
 * on SIGTERM once `exercise` is done with it.
 */
async function guarded(args: string[], exercise?: (stderr: () => string) => Promise<void>): Promise<Report> {
  const report = path.join(dir, `report-${++reports}.json`);
  const child = spawn(process.execPath, ['--require', path.join(dir, 'guard.cjs'), ...args], {
    env: cliEnv({ FOOTPRINT_REPORT: report }),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  if (exercise !== undefined) {
    try {
      await exercise(() => stderr);
    } finally {
      if (child.exitCode === null) child.kill('SIGTERM');
    }
  }
  expect(await exited).toBe(0);
  return JSON.parse(readFileSync(report, 'utf8')) as Report;
}

/** One h2c (prior knowledge) request through the outbound port: the answer's status and Date. */
async function h2cStatusAndDate(
  port: number,
  authority: string,
): Promise<{ status: unknown; date: unknown }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({ ':path': '/', ':authority': authority });
      stream.on('response', (headers) => {
        stream.resume();
        resolve({ status: headers[':status'], date: headers.date });
      });
      stream.on('error', reject);
      stream.end();
    });
  } finally {
    session.close();
  }
}

/** The flags of a proxy run from the files in `dir`, every port 0, reporting its ports to `portsFile`. */
function proxyFlagsFromFiles(portsFile: string): string[] {
  return [
    ...['--workload', 'frontend', '--namespace', NS],
    ...['--snapshot-file', path.join(dir, 'snapshot.json')],
    ...['--cert-file', path.join(dir, 'cert.pem'), '--key-file', path.join(dir, 'key.pem')],
    ...['--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--metrics-port', '0'],
    ...['--ports-file', portsFile],
  ];
}

describe('meshfed proxy', () => {
  it('runs from files, serves traffic, reports its ports and drains on SIGTERM', async () => {
    const portsFile = path.join(dir, 'ports.json');
    cli = startCli(['proxy', ...proxyFlagsFromFiles(portsFile)], {
      env: {
        MESHFED_PROXY_TRUST_BUNDLE_FILE: path.join(dir, 'roots.pem'),
        MESHFED_PROXY_ACCESS_LOG: 'true',
      },
    });
    const ports = await reportedPorts(portsFile, () => cli?.stderr() ?? '');
    expect((await fetch(`http://127.0.0.1:${ports.admin}/ready`)).status).toBe(200);
    const answer = await request(ports.outbound, 'backend', '/through-the-cli');
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('backend\n');
    await waitFor(() => cli?.stdout().includes('/through-the-cli') || undefined, {
      what: 'the access log line on stdout',
    });
    const scrape = await fetch(`http://127.0.0.1:${ports.metrics}/stats/prometheus`);
    expect(scrape.status).toBe(200);
    // The lean process metrics by default: computed at the scrape, nothing sampled in between.
    const metrics = await scrape.text();
    expect(metrics).toMatch(/^process_resident_memory_bytes\{component="proxy"\} \d+/m);
    expect(metrics).toMatch(/^nodejs_eventloop_lag_seconds\{component="proxy"\} /m);
    expect(metrics).not.toContain('nodejs_gc_duration_seconds');
    expect(metrics).not.toContain('nodejs_eventloop_lag_p99_seconds');
    cli.child.kill('SIGTERM');
    const result = await cli.exited;
    expect(result.code).toBe(0);
  });

  it('refuses incomplete configuration with a message naming the flags', async () => {
    const noConfig = await runCli(['proxy', '--workload', 'x', '--namespace', NS]);
    expect(noConfig.code).not.toBe(0);
    expect(noConfig.stderr).toMatch(/--snapshot-file|--mds-address/);
    const halfCreds = await runCli([
      'proxy',
      '--snapshot-file',
      path.join(dir, 'snapshot.json'),
      '--cert-file',
      path.join(dir, 'cert.pem'),
    ]);
    expect(halfCreds.code).not.toBe(0);
    expect(halfCreds.stderr).toContain('--cert-file, --key-file and --trust-bundle-file go together');
    const badSet = await runCli(['proxy', '--process-metrics', 'everything']);
    expect(badSet.code).not.toBe(0);
    expect(badSet.stderr).toContain("argument 'everything' is invalid. Allowed choices are lean, full, off.");
    const badTcp = await runCli(['proxy', '--tcp-port', 'db:5432']);
    expect(badTcp.code).not.toBe(0);
    expect(badTcp.stderr).toContain('service:port=localPort');
    const badSnapshot = path.join(dir, 'bad.json');
    writeFileSync(badSnapshot, JSON.stringify({ type: 'sidecar/v1' }));
    const invalid = await runCli([
      'proxy',
      '--snapshot-file',
      badSnapshot,
      '--cert-file',
      path.join(dir, 'cert.pem'),
      '--key-file',
      path.join(dir, 'key.pem'),
      '--trust-bundle-file',
      path.join(dir, 'roots.pem'),
      '--admin-port',
      '0',
      '--metrics-port',
      '0',
      '--outbound-port',
      '0',
      '--inbound-port',
      '0',
    ]);
    expect(invalid.code).not.toBe(0);
    expect(invalid.stderr).toContain('proxy: must be an object');
  });

  it('runs as the sidecar bundle (meshfed-proxy) with the same flags, and refuses bad ones', async () => {
    const bundle = SIDECAR_BUNDLE;
    const portsFile = path.join(dir, 'lean-ports.json');
    const child = spawn(
      process.execPath,
      [bundle, ...proxyFlagsFromFiles(portsFile), '--trust-bundle-file', path.join(dir, 'roots.pem')],
      { env: { ...cliEnv(), MESHFED_PROXY_PROCESS_METRICS: 'full' }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    try {
      const ports = await reportedPorts(portsFile, () => stderr);
      const answer = await request(ports.outbound, 'backend', '/through-the-lean-entry');
      expect(answer.status).toBe(200);
      expect(answer.body).toBe('backend\n');
      // MESHFED_PROXY_PROCESS_METRICS=full adds the two sampled between scrapes.
      const metrics = await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text();
      expect(metrics).toContain('nodejs_gc_duration_seconds');
      expect(metrics).toContain('nodejs_eventloop_lag_p99_seconds');
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }

    const bad = spawn(process.execPath, [bundle, '--outbound-port', 'many'], {
      env: cliEnv(),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let badErr = '';
    bad.stderr?.setEncoding('utf8').on('data', (c: string) => (badErr += c));
    const code = await new Promise<number | null>((resolve) => bad.once('close', (c) => resolve(c)));
    expect(code).not.toBe(0);
    expect(badErr).toContain(
      "error: option '--outbound-port <port>' argument 'many' is invalid. a port is an integer from 0 to 65535.",
    );
    // Printed once, as one line.
    expect(badErr.split('a port is an integer').length).toBe(2);

    const help = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [bundle, '--help'], {
        env: cliEnv(),
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      let out = '';
      child.stdout?.setEncoding('utf8').on('data', (c: string) => (out += c));
      child.once('close', (code) => resolve({ code, out }));
    });
    expect(help.code).toBe(0);
    expect(help.out).toContain('Usage: meshfed-proxy [options]');
    expect(help.out).toContain('--mds-address <host:port>');
    expect(help.out).toContain('env: MESHFED_MDS_ADDRESS');
  });
});

describe('the sidecar bundle', () => {
  it('formats no Date through V8 and loads neither node:perf_hooks, node:v8, node:http2 nor undici, yet sends Date headers and spans', async () => {
    const portsFile = path.join(dir, 'footprint-ports.json');
    // Spans go out too: fetch would load undici and node:perf_hooks (proxy/telemetry/otlp-exporter.ts).
    let exported = 0;
    const collector = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        exported++;
        res.end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const otlp = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
    const report = await guarded(
      [
        SIDECAR_BUNDLE,
        ...proxyFlagsFromFiles(portsFile),
        ...['--trust-bundle-file', path.join(dir, 'roots.pem'), '--access-log', '--otlp-endpoint', otlp],
      ],
      async (stderr) => {
        const ports = await reportedPorts(portsFile, stderr);
        const proxied = await request(ports.outbound, 'backend', '/plain');
        expect(proxied.status).toBe(200);
        const chunked = await request(ports.outbound, 'backend', '/chunked', {
          method: 'POST',
          headers: { 'transfer-encoding': 'chunked' },
          body: 'a chunked body',
        });
        expect(chunked.status).toBe(200);
        const local = await request(ports.outbound, 'nobody-knows-this-host', '/');
        expect(local.status).toBeGreaterThanOrEqual(400);
        expect(local.headers.date).toMatch(HTTP_DATE);
        const unknownExpect = await request(ports.outbound, 'backend', '/', {
          headers: { expect: 'x-other' },
        });
        expect(unknownExpect.status).toBe(417);
        expect(unknownExpect.headers.date).toMatch(HTTP_DATE);
        const h2c = await h2cStatusAndDate(ports.outbound, 'nobody-knows-this-host');
        expect(h2c.status).toBeGreaterThanOrEqual(400);
        expect(h2c.date).toMatch(HTTP_DATE);
        const scrape = await fetch(`http://127.0.0.1:${ports.metrics}/stats/prometheus`);
        expect(scrape.status).toBe(200);
        expect(scrape.headers.get('date')).toMatch(HTTP_DATE);
        expect(await scrape.text()).toMatch(/^nodejs_heap_size_used_bytes\{component="proxy"\} \d+/m);
        for (const endpoint of ['/ready', '/config_dump', '/stats', '/certs', '/clusters', '/']) {
          const answer = await fetch(`http://127.0.0.1:${ports.admin}${endpoint}`);
          expect(`${endpoint} ${answer.status}`).toBe(`${endpoint} 200`);
          expect(answer.headers.get('date')).toMatch(HTTP_DATE);
          await answer.arrayBuffer();
        }
        const certs = (await (await fetch(`http://127.0.0.1:${ports.admin}/certs`)).json()) as unknown;
        // The certificate's dates come out as ISO text all the same.
        expect(JSON.stringify(certs)).toMatch(/"notAfter":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"/);
        await waitFor(() => exported > 0 || undefined, { what: 'a span batch at the collector' });
      },
    ).finally(() => new Promise((resolve) => collector.close(resolve)));
    expect(report.dateMethods).toEqual([]);
    expect(report.modules.filter(unwanted)).toEqual([]);
  });

  it('sees what it guards against (the check can fail)', async () => {
    const report = await guarded([
      '-e',
      "new Date().toISOString(); JSON.stringify({ at: new Date() }); performance.now(); require('node:v8'); require('node:http2');",
    ]);
    expect(report.dateMethods).toEqual(['toISOString', 'toJSON']);
    expect(report.modules).toEqual(expect.arrayContaining(['perf_hooks', 'v8', 'http2']));
    expect(report.modules.filter(unwanted)).not.toEqual([]);
    const fetched = await guarded(['-e', "fetch('http://127.0.0.1:9/').catch(() => undefined);"]);
    expect(fetched.modules.filter((m) => m.includes('undici'))).not.toEqual([]);
  });
});
