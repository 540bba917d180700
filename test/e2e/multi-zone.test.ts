/**
 * The multi-zone end-to-end suite (issue #7): global CP on the host, zone-a
 * and zone-b each in its own network namespace (cli/demo/netns-topology.ts),
 * the only path between zones being the other zone's east-west gateway port.
 * Every meshfed process is the built CLI in a child process; workloads,
 * the load generator and a relay agent are fixtures run inside the zones.
 * Each scenario asserts what a client sees and records its figures; the
 * suite writes them to test/e2e/report/e2e-report.json and prints them.
 * Without root or `ip netns`, everything runs on loopback with a loud warning.
 */

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createNetnsTopology, type NetnsTopology } from '../../cli/demo/netns-topology.js';
import { assertCliBuilt, runCli } from '../common/cli.js';
import { http } from '../common/http.js';
import { FakeKubeApiServer } from '../common/fake-kube-apiserver.js';
import { waitFor } from '../common/wait.js';
import {
  agentFetch,
  allocPort,
  agentFetchOne,
  buildFixtures,
  startMeshfed,
  startSidecar,
  startNode,
  started,
  waitForOutput,
  type E2eProcess,
} from './e2e-harness.js';

const PREFIX = 'mfe2e';
const NS = 'e2e';
const SERVICE_PORT = 8080;
const CERT_TTL = '20s';
const REPORT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'report', 'e2e-report.json');

interface Workload {
  name: string;
  zone: 'zone-a' | 'zone-b';
  sa: string;
  service?: string;
  version: string;
  appPort: number;
  outbound: number;
  inbound: number;
  tokenFile: string;
  portsFile: string;
  proxy?: E2eProcess;
}

interface Zone {
  name: 'zone-a' | 'zone-b';
  address: string;
  restPort: number;
  grpcPort: number;
  gatewayPort: number;
  gatewayAdminPort: number;
  agentPort: number;
  agentUrl: string;
  dataDir: string;
  adminToken: string;
  cp?: E2eProcess;
  gateway?: E2eProcess;
  app?: E2eProcess;
  agent?: E2eProcess;
}

interface ScenarioReport {
  name: string;
  passed: boolean;
  figures: Record<string, unknown>;
}

const report: {
  suite: string;
  mode: string;
  fallbackReason?: string;
  setupError?: string;
  startedAt: string;
  wallMs?: number;
  scenarios: ScenarioReport[];
} = { suite: 'meshfed multi-zone e2e', mode: 'unknown', startedAt: new Date().toISOString(), scenarios: [] };
const suiteStart = Date.now();

let topology: NetnsTopology;
let dir = '';
let fixtures: Record<'app' | 'agent' | 'loadgen', string>;
let global: E2eProcess | undefined;
let globalArgs: string[] = [];
let globalUrl = '';
let admin = '';
let globalCaFile = '';
/** zone-b keeps its configuration in a (fake) Kubernetes API server: CRDs, as in a cluster. */
let kube: FakeKubeApiServer | undefined;
let kubeconfigFile = '';
const zones = new Map<string, Zone>();
const workloads = new Map<string, Workload>();

function zoneOf(name: string): Zone {
  const zone = zones.get(name);
  if (!zone) throw new Error(`no zone ${name}`);
  return zone;
}
function workloadOf(name: string): Workload {
  const w = workloads.get(name);
  if (!w) throw new Error(`no workload ${name}`);
  return w;
}

/** Record a scenario's figures; `passed` flips to true only when the test body finished. */
function scenario(name: string): ScenarioReport {
  const entry: ScenarioReport = { name, passed: false, figures: {} };
  report.scenarios.push(entry);
  return entry;
}

async function applyGlobal(yaml: string): Promise<{ status: number; json: unknown }> {
  const answer = await http(`${globalUrl}/api/v1/apply`, {
    method: 'POST',
    token: admin,
    body: yaml,
    contentType: 'application/yaml',
  });
  return { status: answer.status, json: answer.json };
}

/** A call from `client` (its outbound listener) to `host`, made inside the client's zone. */
async function call(
  client: string,
  host: string,
  count = 1,
): Promise<Array<{ status: number; headers: Record<string, string>; body: string } | { error: string }>> {
  const w = workloadOf(client);
  return agentFetch(zoneOf(w.zone).agentUrl, {
    url: `http://127.0.0.1:${w.outbound}/`,
    headers: { host },
    count,
    timeoutMs: 5000,
  });
}

/** The answers that were not a 200, counted by status (or error, with the response details when given). */
function failureSummary(
  results: Array<{ status: number; headers: Record<string, string>; body: string } | { error: string }>,
): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of results) {
    if (!('error' in r) && r.status === 200) continue;
    const key = 'error' in r ? `error: ${r.error}` : `${r.status} ${r.body.trim().slice(0, 120)}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

async function callOne(
  client: string,
  host: string,
): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const w = workloadOf(client);
  return agentFetchOne(zoneOf(w.zone).agentUrl, {
    url: `http://127.0.0.1:${w.outbound}/`,
    headers: { host },
    timeoutMs: 5000,
  });
}

/** GET on a zone's own REST API (loopback inside the zone) through its agent. */
async function zoneGet(zone: Zone, urlPath: string): Promise<{ status: number; body: string }> {
  return agentFetchOne(zone.agentUrl, {
    url: `http://127.0.0.1:${zone.restPort}${urlPath}`,
    headers: { authorization: `Bearer ${zone.adminToken}` },
  });
}

/** GET on a proxy's admin port (loopback inside its zone). */
async function proxyAdmin(w: Workload, urlPath: string): Promise<{ status: number; body: string }> {
  const ports = JSON.parse(await readFile(w.portsFile, 'utf8')) as { admin: number };
  return agentFetchOne(zoneOf(w.zone).agentUrl, { url: `http://127.0.0.1:${ports.admin}${urlPath}` });
}

function bodyOf(result: { status: number; body: string } | { error: string }): {
  name?: string;
  zone?: string;
  version?: string;
  xfcc?: string;
} {
  if ('error' in result) return {};
  try {
    return JSON.parse(result.body) as { name?: string; zone?: string; version?: string; xfcc?: string };
  } catch {
    return {};
  }
}

/** Poll until `probe` holds; returns the elapsed ms from `since`. */
async function convergence(
  since: number,
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs = 10_000,
): Promise<number> {
  await waitFor(probe, { what, timeoutMs, intervalMs: 25 });
  return Date.now() - since;
}

function startGlobal(): E2eProcess {
  const proc = startNode(topology, undefined, 'global-cp', path.resolve('dist/cli/main.js'), globalArgs);
  return proc;
}

async function waitGlobalReady(): Promise<void> {
  await waitFor(async () => (await http(`${globalUrl}/readyz`).catch(() => undefined))?.status === 200, {
    what: 'global-cp ready',
    timeoutMs: 20_000,
  });
}

function startZoneCp(zone: Zone): E2eProcess {
  return startMeshfed(topology, zone.name, `zone-cp ${zone.name}`, [
    'zone-cp',
    '--zone',
    zone.name,
    '--port',
    String(zone.restPort),
    '--grpc-port',
    String(zone.grpcPort),
    '--data-dir',
    zone.dataDir,
    '--global-address',
    `${topology.hostAddress}:${globalKdsPort}`,
    '--global-ca-file',
    globalCaFile,
    '--global-token-file',
    path.join(dir, `${zone.name}.token`),
    '--gateway-address',
    `${zone.address}:${zone.gatewayPort}`,
    '--push-debounce',
    '50ms',
    '--push-max-delay',
    '300ms',
    ...(zone.name === 'zone-b'
      ? [
          '--store',
          `kubernetes://?kubeconfig=${encodeURIComponent(kubeconfigFile)}&installCrds=true&createNamespaces=true`,
        ]
      : []),
  ]);
}

async function waitZoneReady(zone: Zone): Promise<void> {
  await waitWhileAlive(zone.cp, `zone-cp ${zone.name} ready`, 30_000, async () => {
    return (await zoneGet(zone, '/readyz').catch(() => undefined))?.status === 200;
  });
}

/** Poll `probe` like waitFor, but fail at once (with its stderr) when `proc` exits meanwhile. */
async function waitWhileAlive(
  proc: E2eProcess | undefined,
  what: string,
  timeoutMs: number,
  probe: () => Promise<boolean>,
): Promise<void> {
  const outcome = await waitFor(
    async () => {
      if (proc && !proc.alive()) return 'exited';
      return (await probe()) ? 'ok' : undefined;
    },
    { what, timeoutMs, intervalMs: 100 },
  );
  if (outcome === 'exited')
    throw new Error(`${proc?.label ?? what} exited:\n${proc?.stderr().slice(-3000) ?? ''}`);
}

function startProxy(w: Workload): E2eProcess {
  const zone = zoneOf(w.zone);
  return startSidecar(topology, w.zone, `proxy ${w.name}`, [
    '--workload',
    w.name,
    '--namespace',
    NS,
    '--proxy-id',
    `${w.name}.${NS}`,
    '--mds-address',
    `127.0.0.1:${zone.grpcPort}`,
    '--mds-ca-file',
    globalCaFile,
    '--mds-token-file',
    w.tokenFile,
    '--cert-ttl',
    CERT_TTL,
    '--outbound-port',
    String(w.outbound),
    '--inbound-port',
    String(w.inbound),
    '--admin-port',
    '0',
    '--metrics-port',
    '0',
    '--ports-file',
    w.portsFile,
    '--drain-timeout',
    '1s',
  ]);
}

async function waitProxyReady(w: Workload): Promise<void> {
  await waitWhileAlive(w.proxy, `proxy ${w.name} ready`, 30_000, async () => {
    return (await proxyAdmin(w, '/ready').catch(() => undefined))?.status === 200;
  });
}

let globalKdsPort = 0;

function workloadEntry(w: Workload, address: string): string {
  const labels: Record<string, string> = { app: w.service ?? w.name, version: w.version };
  if (w.service) labels['meshfed.io/service'] = w.service;
  const labelYaml = Object.entries(labels)
    .map(([k, v]) => `      ${k}: "${v}"`)
    .join('\n');
  return `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: ${w.name}
  namespace: ${NS}
  labels:
${labelYaml}
  annotations:
    meshfed.io/inbound-port: "${w.inbound}"
    meshfed.io/service-ports: "http=${SERVICE_PORT}"
spec:
  address: ${address}
  serviceAccount: ${w.sa}
  ports:
    http: ${w.appPort}
  labels:
${labelYaml.replace(/^ {6}/gm, '    ')}
`;
}

/** Write the workloads' WorkloadEntries into their zone and a proxy token file for each. */
async function registerWorkloads(zone: Zone, list: Workload[]): Promise<void> {
  const applied = await agentFetchOne(zone.agentUrl, {
    url: `http://127.0.0.1:${zone.restPort}/api/v1/apply`,
    method: 'POST',
    headers: { authorization: `Bearer ${zone.adminToken}`, 'content-type': 'application/yaml' },
    body: list.map((w) => workloadEntry(w, zone.address)).join('---\n'),
  });
  if (applied.status !== 200)
    throw new Error(`apply workloads in ${zone.name}: ${applied.status} ${applied.body}`);
  for (const w of list) {
    const issued = await agentFetchOne(zone.agentUrl, {
      url: `http://127.0.0.1:${zone.restPort}/api/v1/tokens`,
      method: 'POST',
      headers: { authorization: `Bearer ${zone.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'proxy', workload: w.name, namespace: NS, serviceAccount: w.sa }),
    });
    if (issued.status !== 201) throw new Error(`proxy token ${w.name}: ${issued.status} ${issued.body}`);
    await writeFile(w.tokenFile, (JSON.parse(issued.body) as { token: string }).token);
  }
}

beforeAll(async () => {
  try {
    await setUp();
  } catch (err) {
    // Say which process said what: a setup failure is otherwise only a timeout.
    const tails = [...started]
      .map((p) => `--- ${p.label} (${p.alive() ? 'running' : 'exited'}):\n${p.stderr().slice(-1500)}`)
      .join('\n');
    report.setupError = `${(err as Error).message}`;
    throw new Error(`${(err as Error).message}\n${tails}`, { cause: err });
  }
}, 120_000);

async function setUp(): Promise<void> {
  assertCliBuilt();
  dir = await mkdtemp(path.join(tmpdir(), 'meshfed-e2e-'));
  fixtures = await buildFixtures(path.join(dir, 'fixtures'));

  const gatewayPorts = [await allocPort(), await allocPort()];
  // MESHFED_E2E_LOOPBACK=1 runs the loopback fallback on purpose (what a non-root developer gets).
  topology = await createNetnsTopology({
    prefix: PREFIX,
    zones: ['zone-a', 'zone-b'],
    loopback: process.env.MESHFED_E2E_LOOPBACK === '1',
  });
  report.mode = topology.mode;
  if (topology.mode === 'loopback') {
    report.fallbackReason = topology.fallbackReason;
    console.warn(
      '\n' +
        '*'.repeat(78) +
        `\n*** E2E SUITE ON LOOPBACK, NOT IN NETWORK NAMESPACES: ${topology.fallbackReason ?? ''}\n` +
        '*** Zones are NOT isolated; run as root with `ip netns` and iptables for the real topology.\n' +
        '*'.repeat(78) +
        '\n',
    );
  }

  // Global CP on the host: REST on loopback, KDS on the WAN address the zones dial.
  const globalPort = await allocPort();
  globalKdsPort = await allocPort();
  globalUrl = `http://127.0.0.1:${globalPort}`;
  globalArgs = [
    'global-cp',
    '--port',
    String(globalPort),
    '--kds-host',
    topology.hostAddress,
    '--kds-port',
    String(globalKdsPort),
    '--data-dir',
    path.join(dir, 'global'),
  ];
  global = startGlobal();
  await waitGlobalReady();
  admin = (await readFile(path.join(dir, 'global', 'admin-token'), 'utf8')).trim();
  const env = { MESHFED_SERVER: globalUrl, MESHFED_TOKEN: admin };
  for (const zone of ['zone-a', 'zone-b']) {
    const token = await runCli(['token', 'create', '--kind', 'zone', '--zone', zone], { env });
    if (token.code !== 0) throw new Error(`token create: ${token.stderr}`);
    await writeFile(path.join(dir, `${zone}.token`), token.stdout);
  }
  const bundle = await http(`${globalUrl}/api/v1/trust-bundle`, { token: admin });
  globalCaFile = path.join(dir, 'global-ca.pem');
  await writeFile(globalCaFile, (bundle.json as { roots: string[] }).roots.join('\n'));

  // zone-b's store: the fake API server on the host's WAN address, reachable from zone-b's namespace.
  kube = await FakeKubeApiServer.start({ host: topology.hostAddress });
  kubeconfigFile = path.join(dir, 'zone-b.kubeconfig');
  await writeFile(
    kubeconfigFile,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: fake',
      '  cluster:',
      `    server: ${kube.url}`,
      '    insecure-skip-tls-verify: true',
      'users:',
      '- name: admin',
      '  user:',
      '    token: e2e',
      'contexts:',
      '- name: fake',
      '  context: {cluster: fake, user: admin}',
      'current-context: fake',
      '',
    ].join('\n'),
  );

  // Zones: relay agent, zone CP; then workloads, proxies, gateways.
  for (const [i, name] of (['zone-a', 'zone-b'] as const).entries()) {
    const address = topology.zone(name).address;
    const agentPort = await allocPort();
    const zone: Zone = {
      name,
      address,
      restPort: await allocPort(),
      grpcPort: await allocPort(),
      gatewayPort: gatewayPorts[i] ?? 0,
      gatewayAdminPort: await allocPort(),
      agentPort,
      agentUrl: `http://${address}:${agentPort}`,
      dataDir: path.join(dir, name),
      adminToken: '',
    };
    zones.set(name, zone);
    // Other zones reach only this zone's gateway port.
    await topology.allowPorts(name, [zone.gatewayPort]);
    zone.agent = startNode(topology, name, `agent ${name}`, fixtures.agent, [address, String(agentPort)]);
    zone.cp = startZoneCp(zone);
  }
  for (const zone of zones.values()) {
    if (zone.agent) await waitForOutput(zone.agent, 'READY');
    await waitZoneReady(zone);
    zone.adminToken = (await readFile(path.join(zone.dataDir, 'admin-token'), 'utf8')).trim();
  }

  const specs: Array<Omit<Workload, 'appPort' | 'outbound' | 'inbound' | 'tokenFile' | 'portsFile'>> = [
    { name: 'client-a', zone: 'zone-a', sa: 'client', version: 'v1' },
    { name: 'web-a1', zone: 'zone-a', sa: 'web', service: 'web', version: 'v1' },
    { name: 'client-b', zone: 'zone-b', sa: 'client', version: 'v1' },
    { name: 'web-b1', zone: 'zone-b', sa: 'web', service: 'web', version: 'v1' },
    { name: 'web-b2', zone: 'zone-b', sa: 'web', service: 'web', version: 'v2' },
    { name: 'echo-b1', zone: 'zone-b', sa: 'echo', service: 'echo', version: 'v1' },
  ];
  for (const spec of specs) {
    workloads.set(spec.name, {
      ...spec,
      appPort: await allocPort(),
      outbound: await allocPort(),
      inbound: await allocPort(),
      tokenFile: path.join(dir, `${spec.name}.proxy-token`),
      portsFile: path.join(dir, `${spec.name}.ports.json`),
    });
  }
  for (const zone of zones.values()) {
    const mine = [...workloads.values()].filter((w) => w.zone === zone.name);
    await registerWorkloads(zone, mine);
    zone.app = startNode(topology, zone.name, `apps ${zone.name}`, fixtures.app, [
      zone.name,
      ...mine.filter((w) => w.service).map((w) => `${w.name}=${w.appPort}=${w.version}`),
    ]);
    for (const w of mine) w.proxy = startProxy(w);
    zone.gateway = startMeshfed(topology, zone.name, `gateway ${zone.name}`, [
      'gateway',
      '--host',
      zone.address,
      '--port',
      String(zone.gatewayPort),
      '--admin-host',
      '127.0.0.1',
      '--admin-port',
      String(zone.gatewayAdminPort),
      '--mds-address',
      `127.0.0.1:${zone.grpcPort}`,
      '--mds-ca-file',
      globalCaFile,
      '--mds-token-file',
      path.join(zone.dataDir, 'admin-token'),
    ]);
  }
  for (const zone of zones.values()) {
    if (zone.app) await waitForOutput(zone.app, 'READY');
    if (zone.gateway) await waitForOutput(zone.gateway, 'east-west gateway running', 30_000);
  }
  for (const w of workloads.values()) await waitProxyReady(w);
  // The mesh is up once a client in zone-a reaches a service only zone-b has.
  await waitFor(async () => (await callOne('client-a', `echo.${NS}`)).status === 200, {
    what: 'client-a → echo (zone-b) through the gateways',
    timeoutMs: 30_000,
    intervalMs: 100,
  });
  report.scenarios.push({ name: 'setup', passed: true, figures: { setupMs: Date.now() - suiteStart } });
}

afterAll(async () => {
  report.wallMs = Date.now() - suiteStart;
  await mkdir(path.dirname(REPORT), { recursive: true });
  await writeFile(REPORT, JSON.stringify(report, null, 2) + '\n');
  console.log(`e2e report (${REPORT}):\n${JSON.stringify(report, null, 2)}`);
  for (const proc of [...started]) await proc.stop('SIGKILL');
  await topology?.close();
  await kube?.close();
  if (topology?.mode === 'netns') {
    // Teardown is part of the contract: nothing of this run may stay behind.
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.startsWith(`${PREFIX}-${process.pid}-`));
    if (left.length > 0) throw new Error(`namespaces left behind: ${left.join(', ')}`);
  }
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe('multi-zone mesh in network namespaces', () => {
  test('topology: zones reach each other only through the gateway port', async () => {
    const entry = scenario('topology isolation');
    const b = zoneOf('zone-b');
    const a = zoneOf('zone-a');
    // From zone-a: zone-b's gateway answers, its zone CP and a sidecar's inbound port do not.
    const probe = (port: number) =>
      topology.exec('zone-a', process.execPath, [
        '-e',
        `const s=require('net').connect(${port},'${b.address}');s.on('connect',()=>{console.log('open');process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(0)});setTimeout(()=>{console.log('timeout');process.exit(0)},1500)`,
      ]);
    const gateway = (await probe(b.gatewayPort)).stdout.trim();
    const inbound = (await probe(workloadOf('echo-b1').inbound)).stdout.trim();
    const agentB = (await probe(b.agentPort)).stdout.trim();
    entry.figures = {
      mode: topology.mode,
      gateway,
      sidecarInbound: inbound,
      otherZoneAgent: agentB,
      zoneA: a.address,
      zoneB: b.address,
      host: topology.hostAddress,
    };
    expect(gateway).toBe('open');
    if (topology.mode === 'netns') {
      expect(inbound).toBe('timeout');
      expect(agentB).toBe('timeout');
    }
    entry.passed = true;
  });

  test('1. cross-zone call carries the client identity; authz applied at global converges', async () => {
    const entry = scenario('1 cross-zone identity and authorization');
    const answer = await callOne('client-a', `echo.${NS}`);
    expect(answer.status).toBe(200);
    const seen = bodyOf(answer);
    expect(seen.zone).toBe('zone-b');
    expect(seen.xfcc).toContain(`URI=spiffe://cluster.local/ns/${NS}/sa/client`);

    const policy = (principal: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: echo-callers
  namespace: ${NS}
spec:
  selector:
    matchLabels:
      app: echo
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["${principal}"]
`;
    const denyAt = Date.now();
    expect((await applyGlobal(policy(`cluster.local/ns/${NS}/sa/nobody`))).status).toBe(200);
    const denyMs = await convergence(
      denyAt,
      'echo denies client-a',
      async () => (await callOne('client-a', `echo.${NS}`)).status === 403,
    );
    const allowAt = Date.now();
    expect((await applyGlobal(policy(`cluster.local/ns/${NS}/sa/client`))).status).toBe(200);
    const allowMs = await convergence(
      allowAt,
      'echo allows client-a again',
      async () => (await callOne('client-a', `echo.${NS}`)).status === 200,
    );
    // Converging at all (within convergence()'s 10 s) is asserted; the 1 s target is a
    // figure in the report, since a shared 2-core CI runner's timing is not the test's business.
    entry.figures = {
      callerSeen: seen.xfcc,
      denyConvergenceMs: denyMs,
      allowConvergenceMs: allowMs,
      targetMs: 1000,
      targetMet: denyMs <= 1000 && allowMs <= 1000,
    };
    entry.passed = true;
  });

  test('5. canary: a 90/10 split applied at global is honoured by clients in both zones', async () => {
    const entry = scenario('5 canary across zones');
    const at = Date.now();
    expect((await applyGlobal(destinationRule())).status).toBe(200);
    expect((await applyGlobal(canaryVirtualService())).status).toBe(200);
    const appliedMs = Date.now() - at;
    const probes: Array<{ client: string; atMs: number; tookMs: number; status: number; route: string }> = [];
    const seesRoute = async (client: string): Promise<boolean> => {
      const t0 = Date.now();
      const answer = await callOne(client, `web.${NS}`);
      const route = answer.headers['x-e2e-route'] ?? '';
      probes.push({ client, atMs: t0 - at, tookMs: Date.now() - t0, status: answer.status, route });
      return route === 'canary';
    };
    const convergenceA = await convergence(at, 'client-a on the canary route', () => seesRoute('client-a'));
    const convergenceB = await convergence(at, 'client-b on the canary route', () => seesRoute('client-b'));
    const REQUESTS = 400;
    const split: Record<string, unknown> = {};
    for (const client of ['client-a', 'client-b']) {
      const results = await call(client, `web.${NS}`, REQUESTS);
      const ok = results.filter((r) => !('error' in r) && r.status === 200).map(bodyOf);
      const v2 = ok.filter((b) => b.version === 'v2').length;
      const v1Local = ok.filter((b) => b.version === 'v1' && b.zone === workloadOf(client).zone).length;
      split[client] = {
        requests: REQUESTS,
        ok: ok.length,
        v2Percent: Math.round((1000 * v2) / REQUESTS) / 10,
        v1ServedInOwnZonePercent: Math.round((1000 * v1Local) / Math.max(1, ok.length - v2)) / 10,
        failures: failureSummary(results),
      };
      // What failed goes into the report before the assertion, so a failing run says why.
      entry.figures = { split };
      expect(ok.length).toBe(REQUESTS);
      // 10 % of 400 has a standard deviation of 1.5 %: 4–18 % is 4 sigma below and 5 above.
      expect(v2 / REQUESTS).toBeGreaterThanOrEqual(0.04);
      expect(v2 / REQUESTS).toBeLessThanOrEqual(0.18);
    }
    const record = JSON.parse((await zoneGet(zoneOf('zone-a'), `/inspect/proxies/client-a.${NS}`)).body) as {
      lastNack?: unknown;
      pushes?: unknown;
    };
    entry.figures = {
      convergenceMsZoneA: convergenceA,
      convergenceMsZoneB: convergenceB,
      appliedMs,
      split,
      clientANack: record.lastNack ?? null,
      slowProbes: probes.filter((p) => p.tookMs > 200 || p.status !== 200),
      probeCount: probes.length,
    };
    entry.passed = true;
  });

  test('6. a bad policy is refused at global and breaks no traffic', async () => {
    const entry = scenario('6 bad policy');
    const bad = canaryVirtualService().replace('weight: 90', 'weight: ninety');
    const refused = await applyGlobal(bad);
    expect(refused.status).toBe(422);
    expect(JSON.stringify(refused.json)).toContain('MESHFED_ERR_VALIDATION');
    const unknownField = await applyGlobal(canaryVirtualService().replace('  http:', '  htp: []\n  http:'));
    expect(unknownField.status).toBe(422);
    const web = await call('client-a', `web.${NS}`, 20);
    const echo = await call('client-a', `echo.${NS}`, 20);
    const okCount = [...web, ...echo].filter((r) => !('error' in r) && r.status === 200).length;
    entry.figures = {
      badWeightStatus: refused.status,
      badWeightError: refused.json,
      unknownFieldStatus: unknownField.status,
      trafficAfterOk: okCount,
      trafficAfterTotal: 40,
      failures: failureSummary([...web, ...echo]),
    };
    expect(okCount).toBe(40);

    // One that slips past the API: written straight into zone-b's Kubernetes store, as kubectl would.
    const slipAt = Date.now();
    const written = await fetch(
      `${kube?.url ?? ''}/apis/networking.meshfed.io/v1/namespaces/${NS}/virtualservices`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer e2e' },
        body: JSON.stringify({
          apiVersion: 'networking.meshfed.io/v1',
          kind: 'VirtualService',
          metadata: { name: 'echo-bad', namespace: NS },
          spec: { hosts: ['echo'], http: [{ route: [{ destination: { host: 'echo' }, weight: 'ninety' }] }] },
        }),
      },
    );
    expect(written.status).toBe(201);
    const zoneB = zoneOf('zone-b');
    const skippedMs = await convergence(slipAt, 'zone-b reports echo-bad as skipped', async () =>
      (await zoneGet(zoneB, '/inspect/errors')).body.includes('echo-bad'),
    );
    const errors = JSON.parse((await zoneGet(zoneB, '/inspect/errors')).body) as {
      resources?: Array<{ name?: string; reason?: string }>;
    };
    const inB = await call('client-b', `echo.${NS}`, 20);
    const fromA = await call('client-a', `echo.${NS}`, 20);
    const okAfterSlip = [...inB, ...fromA].filter((r) => !('error' in r) && r.status === 200).length;
    entry.figures.zoneStoreSlip = {
      skippedReportedMs: skippedMs,
      reported: errors.resources?.find((r) => r.name === 'echo-bad') ?? errors,
      trafficOk: okAfterSlip,
      trafficTotal: 40,
    };
    expect(okAfterSlip).toBe(40);
    entry.passed = true;
  });

  test('2. failover under load: local endpoints killed, traffic moves to zone-b and back', async () => {
    const entry = scenario('2 failover under load');
    // Without retries (attempts 0): what clients see is the failover itself (target ≤ 1 s of errors).
    const bare = await failoverUnderLoad('failover-bare', 0);
    entry.figures.withoutRetries = bare;
    // With retries configured: the target is zero failed requests.
    const retried = await failoverUnderLoad('failover', 3);
    entry.figures.withRetries = retried;
    // Failover within seconds, not after a health-check timeout; the 1 s target is
    // recorded (targetMet), not asserted, as for convergence above.
    entry.figures.targetMet = bare.errorTimeMs <= 1000 && retried.failedRequests === 0;
    expect(bare.errorTimeMs).toBeLessThanOrEqual(5000);
    expect(retried.failedRequests).toBe(0);
    expect(bare.failBackAfterReadyMs).not.toBeNull();
    expect(retried.failBackAfterReadyMs).not.toBeNull();
    entry.passed = true;
  }, 80_000);

  test('4. zone CP down: proxies keep serving their last config, then reconnect and converge', async () => {
    const entry = scenario('4 zone CP down');
    const zone = zoneOf('zone-a');
    await zone.cp?.stop('SIGKILL');
    const downAt = Date.now();
    const web = await call('client-a', `web.${NS}`, 20);
    const echo = await call('client-a', `echo.${NS}`, 20);
    const okWhileDown = [...web, ...echo].filter((r) => !('error' in r) && r.status === 200).length;
    expect(okWhileDown).toBe(40);
    // A change made at global meanwhile reaches zone-a's proxies once its CP is back.
    expect((await applyGlobal(failoverVirtualService('failover-2'))).status).toBe(200);
    const restartAt = Date.now();
    zone.cp = startZoneCp(zone);
    await waitZoneReady(zone);
    const readyMs = Date.now() - restartAt;
    const mine = [...workloads.values()].filter((w) => w.zone === 'zone-a');
    const reconnectMs = await convergence(
      restartAt,
      'zone-a proxies reconnected',
      async () => {
        const answer = await zoneGet(zone, '/inspect/proxies');
        const proxies = (
          JSON.parse(answer.body) as { proxies: Array<{ id: string; connected: boolean; kind: string }> }
        ).proxies;
        const connected = new Set(proxies.filter((p) => p.connected).map((p) => p.id));
        return (
          mine.every((w) => connected.has(`${w.name}.${NS}`)) &&
          proxies.some((p) => p.connected && p.kind === 'gateway')
        );
      },
      40_000,
    );
    const convergeMs = await convergence(
      restartAt,
      'client-a on the route changed while its CP was down',
      async () => (await callOne('client-a', `web.${NS}`)).headers['x-e2e-route'] === 'failover-2',
      40_000,
    );
    entry.figures = {
      okWhileDown,
      requestsWhileDown: 40,
      downForMs: restartAt - downAt,
      zoneCpReadyAfterRestartMs: readyMs,
      proxiesReconnectedMs: reconnectMs,
      configConvergedMs: convergeMs,
    };
    entry.passed = true;
  }, 90_000);

  test('3. global CP down: traffic, failover and certificate renewal go on; zones resync after', async () => {
    const entry = scenario('3 global CP down');
    await global?.stop('SIGKILL');
    const downAt = Date.now();
    const certsBefore = new Map<string, string>();
    for (const name of ['client-a', 'echo-b1'])
      certsBefore.set(name, (await proxyAdmin(workloadOf(name), '/certs')).body);
    const okCross = (await call('client-a', `echo.${NS}`, 20)).filter(
      (r) => !('error' in r) && r.status === 200,
    ).length;
    const okLocalB = (await call('client-b', `web.${NS}`, 20)).filter(
      (r) => !('error' in r) && r.status === 200,
    ).length;
    expect(okCross).toBe(20);
    expect(okLocalB).toBe(20);
    // Failover without global: zone-a's web endpoint goes, zone-b serves.
    const web = workloadOf('web-a1');
    await web.proxy?.stop('SIGKILL');
    const failover = await call('client-a', `web.${NS}`, 20);
    const failoverOk = failover.filter(
      (r) => !('error' in r) && r.status === 200 && bodyOf(r).zone === 'zone-b',
    ).length;
    expect(failoverOk).toBe(20);
    web.proxy = startProxy(web);
    // A service that appears in zone-b while global is away: zone-b serves it, zone-a cannot know it yet.
    const late: Workload = {
      name: 'late-b1',
      zone: 'zone-b',
      sa: 'late',
      service: 'late',
      version: 'v1',
      appPort: await allocPort(),
      outbound: await allocPort(),
      inbound: await allocPort(),
      tokenFile: path.join(dir, 'late-b1.proxy-token'),
      portsFile: path.join(dir, 'late-b1.ports.json'),
    };
    workloads.set(late.name, late);
    await registerWorkloads(zoneOf('zone-b'), [late]);
    const lateApp = startNode(topology, 'zone-b', 'app late-b1', fixtures.app, [
      'zone-b',
      `${late.name}=${late.appPort}=v1`,
    ]);
    await waitForOutput(lateApp, 'READY');
    late.proxy = startProxy(late);
    await waitProxyReady(late);
    await waitFor(async () => (await callOne('client-b', `late.${NS}`)).status === 200, {
      what: 'client-b → late (same zone) with global down',
      timeoutMs: 15_000,
    });
    const lateFromAWhileDown = (await callOne('client-a', `late.${NS}`)).status;
    expect(lateFromAWhileDown).not.toBe(200);
    // Certificates (TTL ${CERT_TTL}) renew at half-life from the zone CAs alone.
    const renewMs = await convergence(
      downAt,
      'certificates renewed while global is down',
      async () => {
        for (const [name, before] of certsBefore) {
          if ((await proxyAdmin(workloadOf(name), '/certs')).body === before) return false;
        }
        return true;
      },
      30_000,
    );
    const afterRenewal = (await call('client-a', `echo.${NS}`, 10)).filter(
      (r) => !('error' in r) && r.status === 200,
    ).length;
    expect(afterRenewal).toBe(10);
    await waitProxyReady(web);

    // Global back: zones reconnect, a new change reaches both, nothing earlier is lost.
    const restartAt = Date.now();
    global = startGlobal();
    await waitGlobalReady();
    const reconnectMs = await convergence(
      restartAt,
      'zones reconnected to global',
      async () => {
        const kds = (await http(`${globalUrl}/api/v1/kds`, { token: admin })).json as {
          connectedZones?: unknown;
        };
        const text = JSON.stringify(kds.connectedZones ?? []);
        return text.includes('"zone-a"') && text.includes('"zone-b"');
      },
      45_000,
    );
    const applyAt = Date.now();
    expect((await applyGlobal(failoverVirtualService('after-global-restart'))).status).toBe(200);
    const resyncMs: Record<string, number> = {};
    for (const client of ['client-a', 'client-b']) {
      resyncMs[client] = await convergence(
        applyAt,
        `${client} on the route applied after global's restart`,
        async () => (await callOne(client, `web.${NS}`)).headers['x-e2e-route'] === 'after-global-restart',
      );
    }
    // What zone-b changed while global was away reached zone-a through the restarted global.
    const lateMs = await convergence(
      restartAt,
      'client-a → late (zone-b) after the resync',
      async () => {
        const answer = await callOne('client-a', `late.${NS}`);
        return answer.status === 200 && bodyOf(answer).zone === 'zone-b';
      },
      30_000,
    );
    for (const zone of zones.values()) {
      const policy = await zoneGet(
        zone,
        `/apis/security.istio.io/v1/namespaces/${NS}/authorizationpolicies/echo-callers`,
      );
      expect(policy.status).toBe(200);
    }
    entry.figures = {
      crossZoneOkWhileDown: okCross,
      localOkWhileDown: okLocalB,
      failoverOkWhileDown: failoverOk,
      certificatesRenewedAfterMs: renewMs,
      certTtl: CERT_TTL,
      zonesReconnectedMs: reconnectMs,
      changeAfterRestartConvergedMs: resyncMs,
      serviceAddedInZoneBWhileDown: {
        statusFromZoneAWhileDown: lateFromAWhileDown,
        reachableFromZoneAAfterRestartMs: lateMs,
      },
    };
    entry.passed = true;
  }, 90_000);
});

function destinationRule(): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: web
  namespace: ${NS}
spec:
  host: web
  trafficPolicy:
    outlierDetection:
      consecutiveGatewayErrors: 1
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 2s
      maxEjectionPercent: 100
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
`;
}

function canaryVirtualService(): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
  namespace: ${NS}
spec:
  hosts: [web]
  http:
  - headers:
      response:
        set:
          x-e2e-route: canary
    route:
    - destination:
        host: web
        subset: v1
      weight: 90
    - destination:
        host: web
        subset: v2
      weight: 10
`;
}

function failoverVirtualService(tag = 'failover', attempts = 3): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
  namespace: ${NS}
spec:
  hosts: [web]
  http:
  - headers:
      response:
        set:
          x-e2e-route: ${tag}
    retries:
      attempts: ${attempts}${attempts > 0 ? '\n      perTryTimeout: 2s\n      retryOn: connect-failure,reset,gateway-error,5xx' : ''}
    route:
    - destination:
        host: web
        subset: v1
`;
}

interface LoadLine {
  t: number;
  sent: number;
  ok: number;
  fail: number;
  byZone: Record<string, number>;
  statuses: Record<string, number>;
  firstFailAt: number | null;
  lastFailAt: number | null;
  failAt: number[];
  firstByZone: Record<string, number>;
}

/** The load generator inside the client's zone, its per-second lines parsed as they arrive. */
function startLoad(
  client: string,
  host: string,
  rps: number,
): { lines(): LoadLine[]; stop(): Promise<LoadLine[]> } {
  const w = workloadOf(client);
  const proc = startNode(topology, w.zone, `loadgen ${client}`, fixtures.loadgen, [
    `http://127.0.0.1:${w.outbound}/`,
    host,
    String(rps),
  ]);
  const parse = (): LoadLine[] =>
    proc
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LoadLine);
  let stopped: Promise<LoadLine[]> | undefined;
  return {
    lines: parse,
    stop() {
      stopped ??= proc.stop('SIGTERM').then(parse);
      return stopped;
    },
  };
}

/** Figures of one kill-and-restore of zone-a's web endpoint under steady load from zone-a. */
interface FailoverFigures {
  retryAttempts: number;
  rps: number;
  routeConvergenceMs: number;
  requests: number;
  failedRequests: number;
  /** Failures grouped into bursts (gaps under 250 ms), relative to the kill. */
  errorBursts: Array<{ fromMs: number; toMs: number; failed: number }>;
  /** Sum of the bursts' spans, each counted at least 1 ms: how long clients saw errors. */
  errorTimeMs: number;
  firstZoneBAnswerAfterKillMs: number | null;
  restoredProxyReadyMs: number;
  failBackAfterReadyMs: number | null;
  statuses: Record<string, number>;
  perSecond: Array<{ t: number; ok: number; fail: number; byZone: Record<string, number> }>;
}

async function failoverUnderLoad(tag: string, attempts: number): Promise<FailoverFigures> {
  const at = Date.now();
  expect((await applyGlobal(failoverVirtualService(tag, attempts))).status).toBe(200);
  const routeMs = await convergence(at, `client-a on route ${tag}`, async () => {
    return (await callOne('client-a', `web.${NS}`)).headers['x-e2e-route'] === tag;
  });
  const web = workloadOf('web-a1');
  const RPS = 200;
  const load = startLoad('client-a', `web.${NS}`, RPS);
  try {
    // Steady state: served in zone-a.
    await waitFor(() => load.lines().some((l) => (l.byZone['zone-a'] ?? 0) > RPS / 2), {
      what: 'steady load served by zone-a',
      timeoutMs: 10_000,
    });
    const killAt = Date.now();
    await web.proxy?.stop('SIGKILL');
    await waitFor(
      () => load.lines().some((l) => l.t >= killAt - 1000 && (l.byZone['zone-b'] ?? 0) > RPS / 2),
      {
        what: 'a second served by zone-b',
        timeoutMs: 15_000,
      },
    );
    const restoreAt = Date.now();
    web.proxy = startProxy(web);
    await waitProxyReady(web);
    const readyAt = Date.now();
    await waitFor(() => load.lines().some((l) => l.t >= readyAt && (l.byZone['zone-a'] ?? 0) > RPS / 2), {
      what: 'fail-back to zone-a',
      timeoutMs: 20_000,
    });
    const lines = await load.stop();
    const firstB = Math.min(
      ...lines.map((l) => l.firstByZone['zone-b'] ?? Infinity).filter((t) => t >= killAt),
    );
    const firstABack = Math.min(
      ...lines.map((l) => l.firstByZone['zone-a'] ?? Infinity).filter((t) => t >= readyAt),
    );
    const bursts: Array<{ fromMs: number; toMs: number; failed: number }> = [];
    for (const t of lines.flatMap((l) => l.failAt).sort((x, y) => x - y)) {
      const last = bursts[bursts.length - 1];
      if (last && t - killAt - last.toMs < 250) {
        last.toMs = t - killAt;
        last.failed++;
      } else bursts.push({ fromMs: t - killAt, toMs: t - killAt, failed: 1 });
    }
    const statuses: Record<string, number> = {};
    for (const l of lines)
      for (const [k, v] of Object.entries(l.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
    return {
      retryAttempts: attempts,
      rps: RPS,
      routeConvergenceMs: routeMs,
      requests: lines.reduce((n, l) => n + l.sent, 0),
      failedRequests: lines.reduce((n, l) => n + l.fail, 0),
      errorBursts: bursts,
      errorTimeMs: bursts.reduce((n, b) => n + Math.max(1, b.toMs - b.fromMs), 0),
      firstZoneBAnswerAfterKillMs: Number.isFinite(firstB) ? firstB - killAt : null,
      restoredProxyReadyMs: readyAt - restoreAt,
      failBackAfterReadyMs: Number.isFinite(firstABack) ? firstABack - readyAt : null,
      statuses,
      perSecond: lines.map((l) => ({ t: l.t - killAt, ok: l.ok, fail: l.fail, byZone: l.byZone })),
    };
  } finally {
    await load.stop();
  }
}
