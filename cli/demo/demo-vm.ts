/**
 * The demo's "VM": backend v1 of zone-b, enrolled through the real VM flow
 * of docs/vm.md — the WorkloadGroup `backend-vm` (deploy/samples), a
 * single-use join token from zone-b's API, `joinMesh` (what `meshfed
 * vm-agent join` runs: key generated here, CSR over HTTPS with the zone CP
 * pinned by the mesh root's fingerprint the token carries), then
 * `runAgent` (what `meshfed vm-agent run` runs: sidecar, renewal, MDS,
 * probe and heartbeats). Its config directory lives in the demo's data
 * directory and no systemd unit is written.
 */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../core/log.js';
import type { AgentHandle } from '../../vm-agent/index.js';
import { pollUntil, requestJson } from './demo-http.js';
import type { WorkloadPorts } from './demo-ports.js';
import { spawnDemoApp, type DemoChild } from './demo-process.js';
import { DEMO_NAMESPACE, portsInfo, type DemoWorkload } from './demo-workloads.js';
import type { DemoZone } from './demo-zones.js';

/** The WorkloadGroup of deploy/samples/50-vm-workload-group.yaml. */
export const VM_WORKLOAD_GROUP = 'backend-vm';

export interface DemoVmOptions {
  zone: DemoZone;
  adminToken: string;
  dataDir: string;
  /** Every port must be concrete: join registers them in the WorkloadEntry. */
  ports: WorkloadPorts;
  /** The command a systemd unit would run (written into vm-agent.yaml's notes only). */
  command: string[];
  logger: Logger;
  notice: (line: string) => void;
}

/** Create the join token on the zone, once the WorkloadGroup applied to global has synced there. */
export async function joinToken(zoneName: string, zoneApi: string, adminToken: string): Promise<string> {
  return pollUntil(
    `a VM join token from ${zoneName} (WorkloadGroup ${DEMO_NAMESPACE}/${VM_WORKLOAD_GROUP} synced from global)`,
    async () => {
      const answer = await requestJson('POST', `${zoneApi}/api/v1/tokens`, adminToken, {
        kind: 'vm',
        zone: zoneName,
        workloadGroup: VM_WORKLOAD_GROUP,
        namespace: DEMO_NAMESPACE,
        uses: 1,
        ttl: '1h',
      });
      if (answer.status === 201 && typeof answer.json.token === 'string') return answer.json.token;
      // 404/422 until the group arrives over KDS: polled again.
      throw new Error(`${answer.status} ${String(answer.json.message)}`);
    },
  );
}

/** Enroll and run the VM; resolves once its sidecar serves. */
export async function startDemoVm(options: DemoVmOptions): Promise<DemoWorkload> {
  const { zone, ports } = options;
  const configDir = path.join(options.dataDir, 'vm-backend');
  // A fresh enrollment each run: the demo shows the join, not a re-join of last run's VM.
  await fs.rm(configDir, { recursive: true, force: true });
  const token = await joinToken(zone.name, zone.cp.restUrl, options.adminToken);

  let app: DemoChild | undefined;
  let agent: AgentHandle | undefined;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await agent?.close();
      await app?.stop();
    })();
    return closing;
  };
  try {
    app = await spawnDemoApp({
      service: 'backend',
      version: 'v1',
      zone: zone.name,
      port: ports.app,
      vm: true,
    });
    const vmApp = app;
    const { joinMesh, runAgent } = await import('../../vm-agent/index.js');
    const joined = await joinMesh({
      zoneCp: zone.cp.restUrl.replace(/^http:/, 'https:'),
      token,
      address: '127.0.0.1',
      hostname: 'demo-vm',
      servicePort: vmApp.port,
      ports: { inbound: ports.inbound, outbound: ports.outbound, admin: ports.admin, metrics: ports.metrics },
      configDir,
      systemd: 'off',
      command: options.command,
    });
    agent = await runAgent({ configDir, drainTimeoutMs: 1000, logger: options.logger });
    const running = agent;
    const entry = joined.config.workloadEntry;
    vmApp.onExit((code, signal) => {
      options.notice(
        `${DEMO_NAMESPACE}/${entry} (VM, ${zone.name}): app pid ${vmApp.pid} exited (${signal ?? `code ${code}`}); its probe fails and the agent reports it unhealthy`,
      );
    });
    return {
      info: {
        name: entry,
        namespace: DEMO_NAMESPACE,
        service: 'backend',
        version: 'v1',
        vm: true,
        ...portsInfo(zone.name, vmApp.port, running.proxy),
        pid: vmApp.pid,
      },
      ready: () => running.proxy.ready(),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
