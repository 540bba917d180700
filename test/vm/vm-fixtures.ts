/**
 * Fixtures of the VM tests: a "VM" (a network namespace joined to the host
 * by a veth pair, addresses from 198.18.0.0/15, when the tests run as root
 * and `ip netns` works; otherwise loopback, with a loud notice), the built
 * CLI run inside it, a small app for the VM, a zone CP whose REST API the
 * VM reaches, and an admin client for that API.
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { CLI_MAIN, cliEnv, type CliResult, type RunningCli } from '../common/cli.js';
import { createTestMesh } from '../common/pki-fixtures.js';
import { freePort } from '../../core/free-port.js';
import { waitFor } from '../common/wait.js';
import { startTestZoneCp, type TestZoneCp } from '../common/zone-cp.js';
import type { ZoneCpOptions } from '../../zone-cp/options.js';

// ---- the "VM" ---------------------------------------------------------------------------

export interface VmNet {
  mode: 'netns' | 'loopback';
  /** The host's address as the VM sees it. */
  hostAddress: string;
  /** The VM's own address. */
  vmAddress: string;
  /** Argv that runs `argv` inside the VM. */
  wrap(argv: string[]): { file: string; args: string[] };
  /** Removes the namespace and its veth pair. Idempotent. */
  close(): Promise<void>;
}

let netCounter = 0;

function ip(args: string[]): { ok: boolean; output: string } {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  return { ok: result.status === 0, output: `${result.stderr ?? ''}${result.stdout ?? ''}`.trim() };
}

/** A network namespace when possible (root, iproute2), else loopback with a loud notice. */
export function createVmNet(): VmNet {
  const n = ++netCounter;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const ns = `mfvm-${process.pid}-${n}`;
  const hostIf = `mfh${process.pid % 100000}${n}`;
  const vmIf = `mfv${process.pid % 100000}${n}`;
  // One /30 per namespace inside 198.18.0.0/15 (benchmarking space, never routed).
  const third = (process.pid % 250) + 1;
  const base = ((n * 4) % 252) + 4;
  const hostAddress = `198.18.${third}.${base + 1}`;
  const vmAddress = `198.18.${third}.${base + 2}`;
  const setup = (): string | undefined => {
    if (!isRoot) return 'the tests do not run as root';
    const steps: string[][] = [
      ['netns', 'add', ns],
      ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', vmIf],
      ['link', 'set', vmIf, 'netns', ns],
      ['addr', 'add', `${hostAddress}/30`, 'dev', hostIf],
      ['link', 'set', hostIf, 'up'],
      ['netns', 'exec', ns, 'ip', 'addr', 'add', `${vmAddress}/30`, 'dev', vmIf],
      ['netns', 'exec', ns, 'ip', 'link', 'set', vmIf, 'up'],
      ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up'],
    ];
    for (const step of steps) {
      const result = ip(step);
      if (!result.ok) return `ip ${step.join(' ')} failed: ${result.output}`;
    }
    return undefined;
  };
  // MESHFED_TEST_VM_LOOPBACK=1 forces the loopback variant (to check it on a machine that has netns).
  const failure =
    process.env.MESHFED_TEST_VM_LOOPBACK === '1' ? 'MESHFED_TEST_VM_LOOPBACK=1 is set' : setup();
  if (failure === undefined) {
    let closed = false;
    return {
      mode: 'netns',
      hostAddress,
      vmAddress,
      wrap: (argv) => ({ file: 'ip', args: ['netns', 'exec', ns, ...argv] }),
      async close() {
        if (closed) return;
        closed = true;
        ip(['netns', 'del', ns]);
        ip(['link', 'del', hostIf]);
      },
    };
  }
  ip(['netns', 'del', ns]);
  ip(['link', 'del', hostIf]);
  console.warn(
    `\n!!!!!!!! VM TESTS RUN ON LOOPBACK, NOT IN A NETWORK NAMESPACE: ${failure}.\n` +
      '!!!!!!!! The "VM" shares the host network; run the tests as root with iproute2 for the real separation.\n',
  );
  return hostNet();
}

/** The host itself as the "VM" (for tests of refusals, where no traffic flows). */
export function hostNet(): VmNet {
  return {
    mode: 'loopback',
    hostAddress: '127.0.0.1',
    vmAddress: '127.0.0.1',
    wrap: (argv) => {
      const [file = '', ...args] = argv;
      return { file, args };
    },
    async close() {},
  };
}

/** Starts the built CLI inside the VM. */
export function startVmCli(
  net: VmNet,
  args: string[],
  env: Record<string, string | undefined> = {},
): RunningCli {
  const { file, args: argv } = net.wrap([process.execPath, CLI_MAIN, ...args]);
  const child = spawn(file, argv, { env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Runs the built CLI inside the VM to completion. */
export async function runVmCli(
  net: VmNet,
  args: string[],
  env: Record<string, string | undefined> = {},
  timeoutMs = 30_000,
): Promise<CliResult> {
  const running = startVmCli(net, args, env);
  const timer = setTimeout(() => running.child.kill('SIGKILL'), timeoutMs);
  try {
    const result = await running.exited;
    if (result.signal === 'SIGKILL') {
      throw new Error(`meshfed ${args.join(' ')} did not finish within ${timeoutMs} ms\n${result.stderr}`);
    }
    return result;
  } finally {
    clearTimeout(timer);
  }
}

/** `vm-agent join` without systemd into `configDir`, then `extra` (e.g. `--address`). */
export function vmJoinArgs(
  zoneCpUrl: string,
  token: string,
  configDir: string,
  extra: string[] = [],
): string[] {
  return [
    'vm-agent',
    'join',
    '--zone-cp',
    zoneCpUrl,
    '--token',
    token,
    '--no-systemd',
    '--config-dir',
    configDir,
    ...extra,
  ];
}

/** `token create --kind vm` for a workload group of a zone, then `extra` (e.g. `--uses 1`, `-o json`). */
export function vmTokenArgs(zone: string, workloadGroup: string, extra: string[] = []): string[] {
  return ['token', 'create', '--kind', 'vm', '--zone', zone, '--workload-group', workloadGroup, ...extra];
}

/** Stops a CLI process (SIGTERM, then SIGKILL) and waits for it. */
export async function stopCli(running: RunningCli, signal: NodeJS.Signals = 'SIGTERM'): Promise<CliResult> {
  if (running.child.exitCode === null && running.child.signalCode === null) running.child.kill(signal);
  const timer = setTimeout(() => running.child.kill('SIGKILL'), 20_000);
  try {
    return await running.exited;
  } finally {
    clearTimeout(timer);
  }
}

// ---- the VM's app --------------------------------------------------------------------------

const APP_SOURCE = `
import http from 'node:http';
import fs from 'node:fs';
const [port, name, sickFile, outbound] = process.argv.slice(2);
http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(fs.existsSync(sickFile) ? 503 : 200);
    res.end();
    return;
  }
  if (req.url.startsWith('/call/')) {
    // Calls a mesh service through this VM's sidecar: /call/<host>/<path>
    const rest = req.url.slice('/call/'.length);
    const slash = rest.indexOf('/');
    const host = slash < 0 ? rest : rest.slice(0, slash);
    const path = slash < 0 ? '/' : rest.slice(slash);
    const out = http.request({ host: '127.0.0.1', port: Number(outbound), path, headers: { host }, agent: false }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => { res.writeHead(r.statusCode ?? 502, { 'content-type': 'text/plain' }); res.end(Buffer.concat(chunks)); });
    });
    out.on('error', (err) => { res.writeHead(599); res.end('call failed: ' + err.message); });
    out.end();
    return;
  }
  const body = JSON.stringify({ app: name, url: req.url, xfcc: req.headers['x-forwarded-client-cert'] ?? null }) + '\\n';
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(body);
}).listen(Number(port), '127.0.0.1', () => console.log('listening'));
`;

export interface VmApp {
  port: number;
  sickFile: string;
  close(): Promise<void>;
}

/** The VM's service: /healthz (503 while `sickFile` exists), /call/<host>/<path> through the sidecar, else an echo. */
export async function startVmApp(
  net: VmNet,
  dir: string,
  options: { port: number; outbound: number; name: string },
): Promise<VmApp> {
  const script = join(dir, 'vm-app.mjs');
  await writeFile(script, APP_SOURCE);
  const sickFile = join(dir, 'sick');
  const { file, args } = net.wrap([
    process.execPath,
    script,
    String(options.port),
    options.name,
    sickFile,
    String(options.outbound),
  ]);
  const child: ChildProcess = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (out += c));
  await waitFor(
    () => out.includes('listening') || (child.exitCode !== null ? Promise.reject(new Error(out)) : false),
    {
      what: 'the VM app to listen',
    },
  );
  return {
    port: options.port,
    sickFile,
    async close() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await new Promise((resolve) =>
        child.exitCode !== null ? resolve(undefined) : child.once('close', resolve),
      );
    },
  };
}

// ---- a pod-side app ---------------------------------------------------------------------

export interface EchoApp {
  port: number;
  server: http.Server;
  close(): Promise<void>;
}

/** An in-process app that answers its name, the URL and the caller's XFCC as JSON. */
export async function startEchoApp(name: string): Promise<EchoApp> {
  const server = http.createServer((req, res) => {
    const body =
      JSON.stringify({ app: name, url: req.url, xfcc: req.headers['x-forwarded-client-cert'] ?? null }) +
      '\n';
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---- the zone --------------------------------------------------------------------------

export interface VmZone {
  /** The running zone CP (a new one after `restart`). */
  readonly zone: TestZoneCp;
  net: VmNet;
  /** https://<host address>:<port>: what the VM joins. */
  joinUrl: string;
  /** What `meshfed --server` takes on this host (with `cliCaArgs`). */
  adminUrl: string;
  /** Extra CLI args to trust the REST certificate (netns mode serves the operator certificate). */
  cliCaArgs: string[];
  restPort: number;
  grpcPort: number;
  /** JSON (or YAML when `yaml`) request to the zone REST API with the admin token. */
  admin(
    method: string,
    path: string,
    body?: { json?: unknown; yaml?: string },
  ): Promise<{ status: number; json: unknown; text: string }>;
  /** The zone's WorkloadEntries in `namespace`. */
  workloadEntries(namespace: string): Promise<
    Array<{
      metadata: { name: string; annotations?: Record<string, string> };
      spec: Record<string, unknown>;
      status?: { conditions?: Array<Record<string, string>> };
    }>
  >;
  /** A vm token for `group` (POST /api/v1/tokens). */
  vmToken(fields: Record<string, unknown>): Promise<{ token: string; id: string }>;
  /** Stops the zone CP; `start` brings it back on the same ports with the same (file) store. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A zone CP the VM reaches: on loopback, plain REST (zone-CA TLS sniffed on
 * the same port); in netns mode, REST and gRPC on every address, REST with an
 * operator certificate (another CA) so the join exercises SNI selection.
 */
/**
 * Starts the zone CP on the ports in `settings`. A port freePort() found free can be taken by another
 * test before the zone binds it (CI saw it once): unless the caller chose the ports, pick two more and
 * try again.
 */
async function startOnFreePorts(
  settings: Partial<ZoneCpOptions>,
  options: Partial<ZoneCpOptions>,
): Promise<TestZoneCp> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startTestZoneCp(settings);
    } catch (err) {
      const taken = err instanceof Error && err.message.includes('is already in use');
      if (!taken || attempt >= 3 || options.port !== undefined || options.grpcPort !== undefined) throw err;
      settings.port = await freePort();
      settings.grpcPort = await freePort();
    }
  }
}

export async function startVmZone(net: VmNet, options: Partial<ZoneCpOptions> = {}): Promise<VmZone> {
  const dir = await mkdtemp(join(tmpdir(), 'meshfed-vm-zone-'));
  const extra: Partial<ZoneCpOptions> = {};
  let ca: string | undefined;
  const cliCaArgs: string[] = [];
  if (net.mode === 'netns') {
    const operator = createTestMesh('operator.test').workload({
      namespace: 'ops',
      serviceAccount: 'zone-api',
      dnsNames: ['localhost'],
    });
    ca = operator.trustBundlePem;
    await writeFile(join(dir, 'tls.crt'), operator.certChainPem);
    await writeFile(join(dir, 'tls.key'), operator.keyPem);
    await writeFile(join(dir, 'ca.crt'), ca);
    extra.host = '0.0.0.0';
    extra.grpcHost = '0.0.0.0';
    extra.tlsCertFile = join(dir, 'tls.crt');
    extra.tlsKeyFile = join(dir, 'tls.key');
    cliCaArgs.push('--ca-file', join(dir, 'ca.crt'));
  }
  // A file store under the zone's data dir, so a restarted zone CP has its CA, tokens and entries.
  // Ports outside the ephemeral range, chosen up front: start() after stop() binds them again
  // while agents reconnect, and a kernel-chosen port could have gone to an outgoing socket.
  const settings: Partial<ZoneCpOptions> = {
    port: await freePort(),
    grpcPort: await freePort(),
    discovery: [{ name: 'universal' }, { name: 'static' }],
    pushDebounceMs: 20,
    pushMaxDelayMs: 200,
    dataDir: join(dir, 'data'),
    storeUrl: `file://${join(dir, 'data', 'store')}`,
    ...extra,
    ...options,
  };
  let zone = await startOnFreePorts(settings, options);
  const restPort = Number(new URL(zone.cp.restUrl).port);
  const grpcPort = Number(zone.cp.grpcAddress.slice(zone.cp.grpcAddress.lastIndexOf(':') + 1));
  let stopped = false;
  const adminUrl = net.mode === 'netns' ? `https://localhost:${restPort}` : `http://127.0.0.1:${restPort}`;
  const admin: VmZone['admin'] = (method, path, body) =>
    new Promise((resolve, reject) => {
      const payload = body?.yaml ?? (body?.json === undefined ? undefined : JSON.stringify(body.json));
      const headers: Record<string, string> = { authorization: `Bearer ${zone.admin}` };
      if (payload !== undefined)
        headers['content-type'] = body?.yaml !== undefined ? 'application/yaml' : 'application/json';
      const options = { host: '127.0.0.1', port: restPort, method, path, headers };
      const req =
        ca === undefined ? http.request(options) : https.request({ ...options, ca, servername: 'localhost' });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, json, text });
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  return {
    get zone() {
      return zone;
    },
    net,
    joinUrl: `https://${net.hostAddress}:${restPort}`,
    adminUrl,
    cliCaArgs,
    restPort,
    grpcPort,
    admin,
    async workloadEntries(namespace) {
      const answer = await admin(
        'GET',
        `/apis/networking.istio.io/v1/namespaces/${namespace}/workloadentries`,
      );
      if (answer.status !== 200)
        throw new Error(`listing WorkloadEntries answered ${answer.status}: ${answer.text}`);
      return (answer.json as { items: Awaited<ReturnType<VmZone['workloadEntries']>> }).items;
    },
    async vmToken(fields) {
      const answer = await admin('POST', '/api/v1/tokens', { json: { kind: 'vm', ...fields } });
      if (answer.status !== 201) throw new Error(`vm token answered ${answer.status}: ${answer.text}`);
      return answer.json as { token: string; id: string };
    },
    async stop() {
      stopped = true;
      await zone.cp.close();
      // Only the helper's own temp dir: the data dir is ours and stays.
      await rm(zone.dir, { recursive: true, force: true });
    },
    async start() {
      zone = await startTestZoneCp({ ...settings, zone: zone.cp.zone, port: restPort, grpcPort });
      stopped = false;
    },
    async close() {
      if (!stopped) await zone.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A WorkloadGroup `name` in `namespace` forming service `name` (port 80 → http 8080), with an optional probe. */
export function workloadGroupYaml(
  name: string,
  namespace: string,
  probe: string | undefined = `
  probe:
    periodSeconds: 1
    failureThreshold: 1
    successThreshold: 1
    httpGet: { port: 8080, path: /healthz }`,
): string {
  return `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  metadata:
    labels: { app: ${name}, meshfed.io/service: ${name} }
    annotations: { meshfed.io/service-ports: http=80 }
  template: { serviceAccount: ${name}, ports: { http: 8080 } }${probe ?? ''}
`;
}

/** Ports for the VM's sidecar: the defaults inside a namespace, free ones on loopback. */
export async function vmPorts(
  net: VmNet,
): Promise<{ inbound: number; outbound: number; admin: number; metrics: number; app: number }> {
  if (net.mode === 'netns')
    return { inbound: 15006, outbound: 15001, admin: 15000, metrics: 15090, app: 8080 };
  return {
    inbound: await freePort(),
    outbound: await freePort(),
    admin: await freePort(),
    metrics: await freePort(),
    app: await freePort(),
  };
}

/** join's port flags for `ports`. */
export function portFlags(ports: Awaited<ReturnType<typeof vmPorts>>): string[] {
  return [
    '--inbound-port',
    String(ports.inbound),
    '--outbound-port',
    String(ports.outbound),
    '--admin-port',
    String(ports.admin),
    '--metrics-port',
    String(ports.metrics),
    '--service-port',
    String(ports.app),
  ];
}

/** One plain HTTP request through a sidecar's outbound listener (a new connection each time). */
export function viaOutbound(
  outboundPort: number,
  host: string,
  path: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: outboundPort, path, headers: { host }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', reject);
    req.end();
  });
}

/** The single `error: … (CODE)` line a failed command prints. */
export function errorLine(result: CliResult): string {
  const lines = result.stderr
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '');
  if (lines.length !== 1) throw new Error(`expected one stderr line, got ${lines.length}:\n${result.stderr}`);
  return lines[0] ?? '';
}
