/**
 * What `meshfed demo` prints once everything serves: a short table of what
 * runs where and the next commands to try. The ready file (--ready-file)
 * holds the same as JSON.
 */

import type { DemoWorkloadInfo } from './demo-workloads.js';

/** The ready-file document (DESIGN.md "The embedded default"; keys may be added, never removed). */
export interface DemoReadyInfo {
  globalApi: string;
  adminTokenFile: string;
  dashboard: string;
  zones: Array<{
    name: string;
    api: string;
    mds: string;
    gateway?: string;
    gatewayAdmin?: string;
    /** With --netns: the zone's network namespace. */
    netns?: string;
  }>;
  workloads: DemoWorkloadInfo[];
  /** The directory of sample resources the demo applied. */
  samples?: string;
  dataDir: string;
  logFile?: string;
  pid: number;
  /** `netns`: each zone in its own network namespace (--netns); absent: everything on loopback. */
  mode?: 'netns' | 'loopback';
  /** Milliseconds from start to everything serving. */
  startupMs?: number;
}

function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map(
    (row) =>
      '  ' +
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
  );
}

export interface DemoHandle {
  readonly info: DemoReadyInfo;
  /** Stop everything the demo started, remove the ready file. Idempotent. */
  close(): Promise<void>;
}

/**
 * The human summary. `cliPath` is how to invoke the CLI when `meshfed` is
 * not on PATH.
 */
export function formatDemoSummary(info: DemoReadyInfo, cliPath?: string): string {
  const zoneA = info.zones[0];
  const frontend = info.workloads.find((w) => w.service === 'frontend');
  const killable = info.workloads.find((w) => w.service === 'backend' && w.zone === zoneA?.name && !w.vm);
  const lines = [
    `meshfed demo is running${info.startupMs === undefined ? '' : ` (started in ${(info.startupMs / 1000).toFixed(1)} s)`}`,
    '',
    ...table([
      ['global', 'API + dashboard', info.globalApi],
      ['', 'admin token', info.adminTokenFile],
      ...info.zones.flatMap((z) => [
        [z.name, 'API (inspect, VM join)', z.api],
        ...(z.netns ? [['', 'network namespace', z.netns]] : []),
        ['', 'MDS + CA', z.mds],
        ...(z.gateway ? [['', 'east-west gateway', z.gateway]] : []),
      ]),
    ]),
    '',
    ...table([
      ['workload', 'zone', 'version', 'app', 'sidecar outbound', 'admin', 'pid'],
      ...info.workloads.map((w) => [
        `${w.namespace}/${w.name}${w.vm ? ' (VM)' : ''}`,
        w.zone,
        w.version,
        w.app,
        w.outbound,
        w.admin,
        String(w.pid),
      ]),
    ]),
    '',
    `  data ${info.dataDir}${info.logFile ? `   logs ${info.logFile}` : ''}`,
    ...(info.samples ? [`  applied ${info.samples} (mTLS STRICT, authz, 90/10 canary, failover)`] : []),
    '',
    'Try:',
    ...(cliPath ? [`  alias meshfed='node ${cliPath}'   # if meshfed is not on your PATH`] : []),
    `  export MESHFED_SERVER=${info.globalApi} MESHFED_TOKEN_FILE=${info.adminTokenFile}`,
    '  meshfed get virtualservices -A',
    '  meshfed get zones',
    ...(zoneA ? [`  meshfed --server ${zoneA.api} inspect proxies`] : []),
    ...(frontend
      ? [`  curl -s ${frontend.app}/   # frontend → its sidecar → backend (90 % v1, 10 % v2 in zone-b)`]
      : []),
    ...(killable
      ? [`  kill ${killable.pid}   # stop ${killable.name} in ${killable.zone}: calls fail over to zone-b`]
      : []),
    ...(info.samples
      ? [`  meshfed apply -f ${info.samples}/30-canary.yaml   # after editing the weights`]
      : []),
    ...(info.mode === 'netns'
      ? [
          '  # each zone is a network namespace; loopback addresses above are inside it:',
          `  ip netns exec ${info.zones[0]?.netns ?? '<netns>'} curl -s -x ${frontend?.outbound ?? 'http://127.0.0.1:15001'} http://backend.demo/`,
        ]
      : []),
    '',
    'Every 10 s a line below says where the traffic went. Ctrl-C stops everything; the data directory is kept.',
    '',
  ];
  return lines.join('\n');
}
