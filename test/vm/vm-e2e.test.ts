/**
 * A VM joins the mesh end to end: the real `meshfed vm-agent join` and
 * `run` as processes (inside a network namespace when root), a real zone CP,
 * a pod-like proxy with its app on the host side.
 *
 * - the VM serves mesh traffic over mTLS from the pod and calls mesh
 *   services, each side seeing the other's SPIFFE ID;
 * - its certificate (6 s) is renewed several times under steady load with
 *   no failed request, and the sidecar serves the renewed one;
 * - a failing probe takes it out of the pod proxy's endpoints, a passing
 *   one brings it back;
 * - killed without a goodbye, it is marked unhealthy, then removed; started
 *   again from the files on disk, its heartbeat writes it back;
 * - `leave` deletes its WorkloadEntry, stops the agent, removes the
 *   credentials, and its last certificate can no longer renew.
 */

import { X509Certificate } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { requestCertificate } from '../../core/ca/ca-client.js';
import { formatMeshSni } from '../../core/mesh/sni.js';
import { generateKeyPair } from '../../core/pki/ca.js';
import { startProxy, type ProxyHandle } from '../../proxy/index.js';
import { assertCliBuilt, runCli, type CliResult, type RunningCli } from '../common/cli.js';
import { waitFor } from '../common/wait.js';
import { service, workload } from '../common/zone-cp.js';
import {
  createVmNet,
  portFlags,
  runVmCli,
  startEchoApp,
  startVmApp,
  startVmCli,
  startVmZone,
  stopCli,
  viaOutbound,
  vmJoinArgs,
  vmPorts,
  vmTokenArgs,
  workloadGroupYaml,
  type EchoApp,
  type VmApp,
  type VmNet,
  type VmZone,
} from './vm-fixtures.js';

const NS = 'demo';
const VM_SPIFFE = `spiffe://cluster.local/ns/${NS}/sa/billing`;
const POD_SPIFFE = `spiffe://cluster.local/ns/${NS}/sa/frontend`;

let net: VmNet;
let zone: VmZone;
let dir: string;
let configDir: string;
let ports: Awaited<ReturnType<typeof vmPorts>>;
let vmApp: VmApp;
let frontendApp: EchoApp;
let frontend: ProxyHandle;
let agent: RunningCli | undefined;
let entryName: string;
let pod: ReturnType<typeof workload>;

async function clusters(): Promise<
  Array<{ name: string; endpoints: Array<{ address: string; healthy: boolean }> }>
> {
  const res = await fetch(`http://127.0.0.1:${frontend.ports.admin}/clusters`);
  return (await res.json()) as Array<{
    name: string;
    endpoints: Array<{ address: string; healthy: boolean }>;
  }>;
}

/** The VM's endpoint as the pod's proxy sees it. */
async function vmEndpointHealthy(): Promise<boolean | undefined> {
  const vmEndpoint = `${net.vmAddress}:${ports.inbound}`;
  for (const cluster of await clusters()) {
    const endpoint = cluster.endpoints.find((e) => e.address === vmEndpoint);
    if (endpoint !== undefined) return endpoint.healthy;
  }
  return undefined;
}

async function entry(): Promise<Awaited<ReturnType<VmZone['workloadEntries']>>[number] | undefined> {
  return (await zone.workloadEntries(NS)).find((e) => e.metadata.name === entryName);
}

function healthyCondition(e: Awaited<ReturnType<typeof entry>>): Record<string, string> | undefined {
  return e?.status?.conditions?.find((c) => c.type === 'Healthy');
}

/** The serial of the certificate the VM's sidecar presents to a new mTLS connection now. */
async function servedSerial(): Promise<string> {
  const token = await zone.admin('POST', '/api/v1/tokens', {
    json: { kind: 'proxy', workload: 'tls-probe', namespace: NS, serviceAccount: 'tls-probe' },
  });
  const { privateKey, publicKey } = generateKeyPair();
  const client = await requestCertificate({
    address: `127.0.0.1:${zone.grpcPort}`,
    caPem: zone.zone.cp.caPem,
    credential: { token: (token.json as { token: string }).token },
    privateKey,
    publicKey,
  });
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: net.vmAddress,
      port: ports.inbound,
      servername: formatMeshSni({ subset: '_', port: 80, service: 'billing', namespace: NS }),
      ca: client.trustBundlePem,
      cert: client.certChainPem,
      key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      checkServerIdentity: () => undefined,
    });
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

function startAgent(): RunningCli {
  return startVmCli(net, ['vm-agent', 'run', '--config-dir', configDir, '--drain-timeout', '2s']);
}

async function billing(path: string): Promise<{ status: number; body: string }> {
  return viaOutbound(frontend.ports.outbound, 'billing.demo', path);
}

beforeAll(async () => {
  assertCliBuilt();
  net = createVmNet();
  dir = await mkdtemp(join(tmpdir(), 'meshfed-vm-e2e-'));
  configDir = join(dir, 'etc-meshfed');
  ports = await vmPorts(net);
  zone = await startVmZone(net, {
    // Removal (which revokes the VM's certificate) waits 10 s: the zone CP is stopped for a few
    // seconds below, and must not remove the VM when it is back.
    vm: { heartbeatIntervalSeconds: 1, unhealthyAfterMs: 3000, removeAfterMs: 10_000, reapIntervalMs: 250 },
  });
  await zone.admin('POST', '/api/v1/apply', { yaml: workloadGroupYaml('billing', NS) });

  // The pod: an app and its sidecar on the host, known to the zone through static discovery.
  frontendApp = await startEchoApp('frontend');
  const podToken = await zone.admin('POST', '/api/v1/tokens', {
    json: { kind: 'proxy', workload: 'frontend', namespace: NS, serviceAccount: 'frontend' },
  });
  frontend = await startProxy({
    workload: 'frontend',
    namespace: NS,
    proxyId: 'frontend-1',
    ports: { outbound: 0, inbound: 0, admin: 0, metrics: 0 },
    inboundHost: net.mode === 'netns' ? '0.0.0.0' : '127.0.0.1',
    metricsHost: '127.0.0.1',
    zoneCp: {
      address: `127.0.0.1:${zone.grpcPort}`,
      caPem: zone.zone.cp.caPem,
      token: (podToken.json as { token: string }).token,
    },
  });
  pod = workload('frontend', NS, {
    address: net.hostAddress,
    inboundPort: frontend.ports.inbound,
    ports: { http: frontendApp.port },
    labels: { app: 'frontend' },
  });
  zone.zone.discovery?.set([service('frontend', NS, [pod])]);
  vmApp = await startVmApp(net, dir, { port: ports.app, outbound: ports.outbound, name: 'billing-vm' });
}, 60_000);

afterAll(async () => {
  if (agent !== undefined) await stopCli(agent, 'SIGKILL');
  await vmApp?.close();
  await frontend?.close();
  await frontendApp?.close();
  await zone?.close();
  await net?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** The VM's join, the same both times it runs. */
function joinVm(token: string): Promise<CliResult> {
  return runVmCli(
    net,
    vmJoinArgs(zone.joinUrl, token, configDir, [
      '--address',
      net.vmAddress,
      '--labels',
      'version=v1',
      '--cert-ttl',
      '6s',
      ...portFlags(ports),
    ]),
  );
}

describe('a VM in the mesh', () => {
  let token: string;

  it('joins with the token a zone admin created with meshfed token create', async () => {
    const created = await runCli([
      '--server',
      zone.adminUrl,
      '--token',
      zone.zone.admin,
      ...zone.cliCaArgs,
      ...vmTokenArgs(zone.zone.cp.zone, 'billing', ['--ttl', '1h', '--uses', '1']),
    ]);
    expect(created.stderr).toBe('');
    token = created.stdout.trim();
    expect(token).toMatch(/^mf1\./);

    const joined = await joinVm(token);
    expect(joined.stderr).toBe('');
    expect(joined.code).toBe(0);
    expect(joined.stdout).toContain(`joined the mesh as ${VM_SPIFFE}`);
    expect(joined.stdout).toContain('meshfed vm-agent run');
    entryName = `billing-${net.vmAddress.replace(/\./g, '-')}`;
    expect(joined.stdout).toContain(`WorkloadEntry ${NS}/${entryName}`);

    // Credentials with tight permissions; the key never left the VM.
    expect((await stat(join(configDir, 'key.pem'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(configDir, 'vm-agent.yaml'))).mode & 0o777).toBe(0o644);
    expect((await stat(configDir)).mode & 0o777).toBe(0o700);
    const leaf = new X509Certificate(await readFile(join(configDir, 'cert-chain.pem'), 'utf8'));
    expect(leaf.subjectAltName).toBe(`URI:${VM_SPIFFE}`);

    const stored = await entry();
    expect(stored?.spec.address).toBe(net.vmAddress);
    expect(stored?.spec.serviceAccount).toBe('billing');
    expect((stored?.spec.labels as Record<string, string>).version).toBe('v1');
    // The group has a probe: the VM gets no traffic before it passes.
    expect(healthyCondition(stored)?.status).toBe('False');
  });

  it('says so, and changes nothing, when join runs again', async () => {
    const again = await joinVm(token);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already enrolled');
    expect((await zone.workloadEntries(NS)).length).toBe(1);
  });

  it('serves the pod over mTLS and calls the pod, each side seeing the other identity', async () => {
    agent = startAgent();
    const answer = await waitFor(
      async () => {
        const a = await billing('/whoami');
        return a.status === 200 ? a : undefined;
      },
      { what: 'the pod to reach the VM through the mesh', timeoutMs: 20_000 },
    );
    const seen = JSON.parse(answer.body) as { app: string; xfcc: string | null };
    expect(seen.app).toBe('billing-vm');
    expect(seen.xfcc).toContain(`URI=${POD_SPIFFE}`);
    expect(healthyCondition(await entry())?.status).toBe('True');

    const back = await waitFor(
      async () => {
        const a = await billing('/call/frontend.demo/from-vm');
        return a.status === 200 ? a : undefined;
      },
      { what: 'the VM to call the pod through its sidecar', timeoutMs: 10_000 },
    );
    const podSaw = JSON.parse(back.body) as { app: string; url: string; xfcc: string | null };
    expect(podSaw).toMatchObject({ app: 'frontend', url: '/from-vm' });
    expect(podSaw.xfcc).toContain(`URI=${VM_SPIFFE}`);
  }, 40_000);

  it('reports identity, certificate, zone connection and probe with vm-agent status', async () => {
    const report = await waitFor(
      async () => {
        const result = await runVmCli(net, ['vm-agent', 'status', '--config-dir', configDir, '-o', 'json']);
        const r = JSON.parse(result.stdout) as {
          spiffeId: string;
          agent: { running: boolean };
          zoneConnection: { connected: boolean };
          probe: { state: string };
          certificate: { expired: boolean };
        };
        return r.zoneConnection.connected && r.probe.state === 'passing' ? r : undefined;
      },
      { what: 'status to show a connected agent with a passing probe' },
    );
    expect(report.spiffeId).toBe(VM_SPIFFE);
    expect(report.agent.running).toBe(true);
    expect(report.certificate.expired).toBe(false);
    const text = await runVmCli(net, ['vm-agent', 'status', '--config-dir', configDir]);
    expect(text.stdout).toMatch(/identity: +spiffe:\/\/cluster\.local\/ns\/demo\/sa\/billing/);
    expect(text.stdout).toMatch(/MDS \+ CA: +connected/);
    expect(text.stdout).toMatch(/probe: +passing/);
  }, 20_000);

  it('renews its 6 s certificate several times under steady load without a failed request', async () => {
    const serialOnDisk = async (): Promise<string> =>
      new X509Certificate(await readFile(join(configDir, 'cert-chain.pem'), 'utf8')).serialNumber;
    const joinSerial = await serialOnDisk();
    const serials = new Set<string>([joinSerial]);
    let sent = 0;
    const failures: string[] = [];
    let stop = false;
    const load = (async () => {
      while (!stop) {
        const path = sent % 2 === 0 ? '/load' : '/call/frontend.demo/load';
        sent++;
        try {
          const a = await billing(path);
          if (a.status !== 200) failures.push(`${path}: HTTP ${a.status} ${a.body.slice(0, 100)}`);
        } catch (err) {
          failures.push(`${path}: ${(err as Error).message}`);
        }
      }
    })();
    try {
      await waitFor(
        async () => {
          serials.add(await serialOnDisk());
          return serials.size >= 4;
        },
        { what: 'three renewals of the VM certificate', timeoutMs: 25_000, intervalMs: 200 },
      );
    } finally {
      stop = true;
      await load;
    }
    expect(failures).toEqual([]);
    expect(sent).toBeGreaterThan(50);
    // New connections get the renewed certificate, not the one join brought.
    const served = await servedSerial();
    serials.add(await serialOnDisk());
    expect(served).not.toBe(joinSerial);
    expect(serials.has(served)).toBe(true);
    // The zone never saw the join token again: renewals used the certificate.
    const status = JSON.parse(await readFile(join(configDir, 'status.json'), 'utf8')) as {
      certificate: { serial: string };
    };
    expect(serials.has(status.certificate.serial)).toBe(true);
  }, 40_000);

  it('leaves the endpoints while its probe fails and comes back when it passes', async () => {
    await writeFile(vmApp.sickFile, 'sick');
    await waitFor(async () => (await vmEndpointHealthy()) === false, {
      what: "the VM endpoint to turn unhealthy in the pod proxy's config",
      timeoutMs: 10_000,
    });
    const condition = healthyCondition(await entry());
    expect(condition).toMatchObject({ status: 'False', reason: 'ProbeFailed' });
    expect(condition?.message).toContain('HTTP 503');
    expect((await billing('/while-sick')).status).not.toBe(200);

    await rm(vmApp.sickFile);
    await waitFor(async () => (await vmEndpointHealthy()) === true, {
      what: 'the VM endpoint to be healthy again',
      timeoutMs: 10_000,
    });
    await waitFor(async () => (await billing('/healthy-again')).status === 200, {
      what: 'traffic to flow again',
    });
  }, 30_000);

  it('keeps serving while the zone CP is away, and reconnects when it is back', async () => {
    const status = async (): Promise<{ zoneConnected: boolean; lastHeartbeatAt?: string }> =>
      JSON.parse(await readFile(join(configDir, 'status.json'), 'utf8')) as {
        zoneConnected: boolean;
        lastHeartbeatAt?: string;
      };
    await zone.stop();
    await waitFor(async () => !(await status()).zoneConnected, {
      what: 'the agent to notice the zone CP is gone',
    });
    // The data path does not need the control plane.
    expect((await billing('/zone-away')).status).toBe(200);
    expect((await billing('/call/frontend.demo/zone-away')).status).toBe(200);

    const back = new Date().toISOString();
    await zone.start();
    zone.zone.discovery?.set([service('frontend', NS, [pod])]);
    await waitFor(
      async () => {
        const s = await status();
        return s.zoneConnected && (s.lastHeartbeatAt ?? '') > back;
      },
      { what: 'the agent to reconnect (MDS) and heartbeat again', timeoutMs: 20_000 },
    );
    expect(healthyCondition(await entry())?.status).toBe('True');
    await waitFor(async () => (await billing('/call/frontend.demo/zone-back')).status === 200, {
      what: 'calls from the VM after the zone CP came back',
    });
  }, 40_000);

  it('is marked unhealthy, then removed, when it goes silent; started again, its heartbeat writes it back', async () => {
    // A graceful restart with the operator's edit: no 6 s lifetime any more (the VM is about to
    // stay down longer than that). The agent renews at start, with its certificate on disk.
    if (agent !== undefined) expect((await stopCli(agent)).code).toBe(0);
    const file = join(configDir, 'vm-agent.yaml');
    const yaml = await readFile(file, 'utf8');
    expect(yaml).toMatch(/^certTtlSeconds: 6$/m);
    await writeFile(file, yaml.replace(/^certTtlSeconds: 6\n/m, ''));
    agent = startAgent();
    await waitFor(
      async () => {
        const leaf = new X509Certificate(await readFile(join(configDir, 'cert-chain.pem'), 'utf8'));
        return Date.parse(leaf.validTo) - Date.now() > 600_000;
      },
      { what: 'the restarted agent to renew with the default lifetime' },
    );
    await waitFor(async () => (await billing('/after-graceful-restart')).status === 200, {
      what: 'traffic after a graceful restart',
      timeoutMs: 10_000,
    });

    // Now it dies without a goodbye.
    await stopCli(agent, 'SIGKILL');
    agent = undefined;
    await waitFor(async () => healthyCondition(await entry())?.reason === 'HeartbeatTimeout', {
      what: 'the silent VM to be marked unhealthy',
      timeoutMs: 10_000,
    });
    await waitFor(async () => (await vmEndpointHealthy()) !== true, {
      what: "the silent VM to turn unhealthy in the pod proxy's config",
    });
    await waitFor(async () => (await entry()) === undefined, {
      what: 'the silent VM to be removed',
      timeoutMs: 25_000,
    });

    // A reboot: the agent starts from what is on disk, no token involved.
    agent = startAgent();
    await waitFor(async () => healthyCondition(await entry())?.status === 'True', {
      what: 'the restarted agent to write its WorkloadEntry back and pass its probe',
      timeoutMs: 20_000,
    });
    await waitFor(async () => (await billing('/after-restart')).status === 200, {
      what: 'traffic to the restarted VM',
      timeoutMs: 10_000,
    });
  }, 90_000);

  it('leaves: WorkloadEntry deleted, agent stopped, credentials removed, certificate revoked', async () => {
    const oldChain = await readFile(join(configDir, 'cert-chain.pem'), 'utf8');
    const oldKey = await readFile(join(configDir, 'key.pem'), 'utf8');
    const trust = await readFile(join(configDir, 'trust-bundle.pem'), 'utf8');
    const left = await runVmCli(net, ['vm-agent', 'leave', '--config-dir', configDir, '--no-systemd']);
    expect(left.stderr).toBe('');
    expect(left.code).toBe(0);
    expect(left.stdout).toContain(`deleted WorkloadEntry ${NS}/${entryName}`);
    expect(left.stdout).toContain('stopped the agent');
    const exited = agent === undefined ? undefined : await agent.exited;
    agent = undefined;
    expect(exited?.code).toBe(0);
    expect(await entry()).toBeUndefined();
    await expect(stat(join(configDir, 'key.pem'))).rejects.toThrow();
    await waitFor(async () => (await vmEndpointHealthy()) === undefined, {
      what: 'the VM to disappear from the pod proxy config',
    });

    // Its last certificate is still within its dates, but the zone CA refuses to renew with it.
    const { privateKey, publicKey } = generateKeyPair();
    const renewal = requestCertificate({
      address: `127.0.0.1:${zone.grpcPort}`,
      caPem: trust,
      credential: { certPem: oldChain, keyPem: oldKey },
      privateKey,
      publicKey,
    });
    await expect(renewal).rejects.toMatchObject({ code: 'MESHFED_ERR_UNAUTHENTICATED' });
    await expect(renewal).rejects.toThrow(/revoked/);
  }, 40_000);
});
