/**
 * `meshfed vm-agent status`: the VM's identity and certificate (from the
 * files on disk, which the agent keeps current), and what the running agent
 * last saw (status.json): the zone connection, heartbeats, the probe.
 */

import { X509Certificate } from 'node:crypto';
import { resolve } from 'node:path';
import { ConfigDir, type AgentStatus } from './agent-files.js';
import { formatFingerprint } from './zone-client.js';

export interface StatusReport {
  configDir: string;
  spiffeId: string;
  zone: string;
  zoneCp: string;
  caFingerprint: string | null;
  grpcAddress: string;
  workloadEntry: string;
  namespace: string;
  workloadGroup: string;
  address: string;
  certificate: { serial: string; notAfter: string; expiresInSeconds: number; expired: boolean };
  agent: { running: boolean; pid: number | null; startedAt: string | null; updatedAt: string | null };
  zoneConnection: {
    connected: boolean;
    since: string | null;
    lastError: string | null;
    lastHeartbeatAt: string | null;
    lastHeartbeatError: string | null;
    lastRenewalError: string | null;
  };
  probe: AgentStatus['probe'];
  ports: Record<string, unknown>;
}

function alive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function vmStatus(configDir: string): Promise<StatusReport> {
  const dir = new ConfigDir(resolve(configDir));
  const config = await dir.readConfig();
  const credentials = await dir.readCredentials();
  const leaf = new X509Certificate(credentials.certChainPem);
  const notAfter = new Date(leaf.validTo);
  const status = await dir.readStatus();
  const running = status !== undefined && alive(status.pid);
  const seconds = Math.floor((notAfter.getTime() - Date.now()) / 1000);
  return {
    configDir: dir.dir,
    spiffeId: config.spiffeId,
    zone: config.zone,
    zoneCp: config.zoneCp,
    caFingerprint: config.caFingerprint === undefined ? null : formatFingerprint(config.caFingerprint),
    grpcAddress: config.grpcAddress,
    workloadEntry: config.workloadEntry,
    namespace: config.namespace,
    workloadGroup: config.workloadGroup,
    address: config.address,
    certificate: {
      serial: leaf.serialNumber,
      notAfter: notAfter.toISOString(),
      expiresInSeconds: seconds,
      expired: seconds <= 0,
    },
    agent: {
      running,
      pid: running ? (status?.pid ?? null) : null,
      startedAt: status?.startedAt ?? null,
      updatedAt: status?.updatedAt ?? null,
    },
    zoneConnection: {
      connected: running && status?.zoneConnected === true,
      since: running ? (status?.zoneConnectedSince ?? null) : null,
      lastError: status?.lastZoneError ?? null,
      lastHeartbeatAt: status?.lastHeartbeatAt ?? null,
      lastHeartbeatError: status?.lastHeartbeatError ?? null,
      lastRenewalError: status?.lastRenewalError ?? null,
    },
    probe:
      running && status !== undefined
        ? status.probe
        : { state: config.probe === undefined ? 'none' : 'unknown' },
    ports: status?.ports ?? { ...config.ports },
  };
}

function ago(iso: string | null): string {
  if (iso === null) return 'never';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return `${iso} (${s} s ago)`;
}

function duration(seconds: number): string {
  const abs = Math.abs(seconds);
  const text =
    abs >= 3600
      ? `${Math.floor(abs / 3600)} h ${Math.floor((abs % 3600) / 60)} min`
      : abs >= 60
        ? `${Math.floor(abs / 60)} min`
        : `${abs} s`;
  return seconds < 0 ? `${text} ago` : `in ${text}`;
}

export function formatStatus(r: StatusReport): string {
  const cert = r.certificate.expired
    ? `EXPIRED ${r.certificate.notAfter} (${duration(r.certificate.expiresInSeconds)}): join again`
    : `serial ${r.certificate.serial}, expires ${r.certificate.notAfter} (${duration(r.certificate.expiresInSeconds)})`;
  const agent = r.agent.running
    ? `running (pid ${r.agent.pid ?? '?'}, since ${r.agent.startedAt ?? '?'})`
    : `not running${r.agent.updatedAt === null ? '' : ` (last seen ${r.agent.updatedAt})`}: start it with systemctl start meshfed-vm-agent, or meshfed vm-agent run`;
  const zc = r.zoneConnection;
  const connection = !r.agent.running
    ? 'unknown (agent not running)'
    : zc.connected
      ? `connected to ${r.grpcAddress} since ${zc.since ?? '?'}`
      : `DISCONNECTED from ${r.grpcAddress}${zc.lastError === null ? '' : `: ${zc.lastError}`} (retrying with backoff)`;
  const probe = `${r.probe.state}${r.probe.message === undefined ? '' : ` (${r.probe.message})`}${r.probe.since === undefined ? '' : ` since ${r.probe.since}`}`;
  return [
    `identity:     ${r.spiffeId}`,
    `workload:     WorkloadEntry ${r.namespace}/${r.workloadEntry} (group ${r.workloadGroup}, zone ${r.zone}), address ${r.address}`,
    `certificate:  ${cert}`,
    `agent:        ${agent}`,
    `zone CP:      ${r.zoneCp} (CA ${r.caFingerprint ?? 'not pinned'})`,
    `MDS + CA:     ${connection}`,
    `heartbeat:    last ${ago(zc.lastHeartbeatAt)}${zc.lastHeartbeatError === null ? '' : `; last error: ${zc.lastHeartbeatError}`}`,
    ...(zc.lastRenewalError === null ? [] : [`renewal:      last error: ${zc.lastRenewalError}`]),
    `probe:        ${probe}`,
  ].join('\n');
}
