/**
 * `meshfed demo` (what `npm start` runs): the embedded default of DESIGN.md
 * on one machine. For now one global control plane with a file store; later
 * issues add zones, gateways, sample workloads with sidecars and a VM here.
 * The ready file is written only once everything started answers, and
 * removed again on close so a script never reads a stale one.
 */

import { createWriteStream, promises as fs, type WriteStream } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { setLogSink } from '../../core/log.js';
import type { GlobalCpHandle } from '../../global-cp/options.js';
import type { ZoneCpHandle } from '../../zone-cp/options.js';

export interface DemoOptions {
  /** Everything the demo keeps (stores, tokens, logs). Default `.meshfed/demo`. */
  dataDir: string;
  /** Global API port; 0 picks a free one. Default 5681. */
  port?: number;
  /** Written (atomically) once everything serves; removed on close. */
  readyFile?: string;
  /**
   * Component logs go to this file (warnings and errors are echoed to
   * stderr) so the terminal shows the summary, not a wall of JSON.
   * Default `<dataDir>/demo.log`; `-` keeps them on stderr.
   */
  logFile?: string;
}

/** The ready-file document (DESIGN.md "The embedded default"). */
export interface DemoReadyInfo {
  globalApi: string;
  adminTokenFile: string;
  dashboard: string;
  zones: Array<{ name: string; api: string; mds: string; gateway?: string }>;
  workloads: Array<{
    name: string;
    namespace: string;
    zone: string;
    app: string;
    outbound: string;
    admin: string;
    metrics: string;
  }>;
  dataDir: string;
  logFile?: string;
  pid: number;
}

export interface DemoHandle {
  readonly info: DemoReadyInfo;
  /** Stop everything the demo started, remove the ready file. Idempotent. */
  close(): Promise<void>;
}

/** GET url until it answers 200 or the deadline passes. */
export async function waitForHttpOk(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = http.get(url, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.setTimeout(2000, () => req.destroy());
      req.on('error', (err) => {
        last = err.message;
        resolve(0);
      });
    });
    if (status === 200) return;
    if (status !== 0) last = `HTTP ${status}`;
    if (Date.now() > deadline) {
      throw new MeshError(
        ErrorCodes.INTERNAL,
        `${url} did not become ready within ${timeoutMs / 1000} s (${last})`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Write JSON to `file` atomically: a reader sees the old file, no file, or the whole new one. */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(value, null, 2) + '\n');
  await fs.rename(tmp, file);
}

function redirectLogs(logFile: string): WriteStream {
  const stream = createWriteStream(logFile, { flags: 'a' });
  setLogSink((line) => {
    stream.write(line + '\n');
    // Warnings and errors still reach the terminal: the user must see them.
    if (/"level":"(warn|error)"/.test(line)) process.stderr.write(line + '\n');
  });
  return stream;
}

/** Start the demo and resolve once everything it started is serving. */
export async function startDemo(options: DemoOptions): Promise<DemoHandle> {
  const dataDir = path.resolve(options.dataDir);
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const readyFile = options.readyFile === undefined ? undefined : path.resolve(options.readyFile);
  // A ready file left by a killed run must not be mistaken for this one.
  if (readyFile) await fs.rm(readyFile, { force: true });

  const logFile =
    options.logFile === '-' ? undefined : path.resolve(options.logFile ?? path.join(dataDir, 'demo.log'));
  const logStream = logFile ? redirectLogs(logFile) : undefined;

  const stops: Array<() => Promise<void>> = [];
  const stopAll = async (): Promise<void> => {
    // Stop in reverse start order: proxies before zones before global.
    let first: unknown;
    for (const stop of stops.reverse()) {
      await stop().catch((err: unknown) => {
        first ??= err;
      });
    }
    stops.length = 0;
    if (logStream) {
      setLogSink((line) => process.stderr.write(line + '\n'));
      await new Promise<void>((resolve) => logStream.end(resolve));
    }
    if (first !== undefined) throw first;
  };

  try {
    const { startGlobalCp } = await import('../../global-cp/global-cp.js');
    const global: GlobalCpHandle = await startGlobalCp({
      dataDir: path.join(dataDir, 'global'),
      port: options.port ?? 5681,
    });
    stops.push(() => global.close());
    await waitForHttpOk(`${global.url}/readyz`);

    // Zone CPs on the documented ports when the global CP is on its own; free ports otherwise (tests).
    const fixedPorts = (options.port ?? 5681) !== 0;
    const zoneA = await startDemoZone(
      global,
      dataDir,
      'zone-a',
      fixedPorts ? { port: 5682, grpcPort: 5678 } : {},
    );
    stops.push(() => zoneA.close());
    // zone-b shares the machine, so it takes the next free pair of ports.
    const zoneB = await startDemoZone(
      global,
      dataDir,
      'zone-b',
      fixedPorts ? { port: 5692, grpcPort: 5688 } : {},
    );
    stops.push(() => zoneB.close());
    await waitForZonesConnected(global, [zoneA.zone, zoneB.zone]);

    const info: DemoReadyInfo = {
      globalApi: global.url,
      adminTokenFile: global.adminTokenFile,
      dashboard: `${global.url}/`,
      zones: [zoneA, zoneB].map((z) => ({ name: z.zone, api: z.restUrl, mds: z.grpcAddress })),
      workloads: [],
      dataDir,
      ...(logFile ? { logFile } : {}),
      pid: process.pid,
    };
    if (readyFile) await writeJsonAtomic(readyFile, info);

    let closing: Promise<void> | undefined;
    return {
      info,
      close() {
        closing ??= (async () => {
          if (readyFile) await fs.rm(readyFile, { force: true });
          await stopAll();
        })();
        return closing;
      },
    };
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
}

/**
 * A zone CP in universal mode wired to the demo's global CP over KDS: it
 * gets a zone token from global, its intermediate CA, policies and the
 * catalog from global, and accepts global's admin token on its API.
 */
async function startDemoZone(
  global: GlobalCpHandle,
  dataDir: string,
  zone: string,
  ports: { port?: number; grpcPort?: number },
): Promise<ZoneCpHandle> {
  const admin = (await fs.readFile(global.adminTokenFile, 'utf8')).trim();
  const answer = await fetch(`${global.url}/api/v1/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'zone', zone, name: zone }),
  });
  const issued = (await answer.json()) as { token?: unknown; message?: unknown };
  if (answer.status !== 201 || typeof issued.token !== 'string') {
    throw new MeshError(ErrorCodes.INTERNAL, `global refused a token for ${zone}: ${String(issued.message)}`);
  }
  const { startZoneCp } = await import('../../zone-cp/zone-cp.js');
  const handle = await startZoneCp({
    zone,
    dataDir: path.join(dataDir, zone),
    port: ports.port ?? 0,
    grpcPort: ports.grpcPort ?? 0,
    discovery: [{ name: 'universal' }],
    global: { addresses: [global.kdsAddress], caPem: global.caCertPem, token: issued.token },
  });
  try {
    await handle.ready();
    await waitForHttpOk(`${handle.restUrl}/readyz`);
  } catch (err) {
    await handle.close();
    throw err;
  }
  return handle;
}

/** Waits until global's KDS server lists every zone as connected, so the summary tells the truth. */
async function waitForZonesConnected(global: GlobalCpHandle, zones: string[]): Promise<void> {
  const admin = (await fs.readFile(global.adminTokenFile, 'utf8')).trim();
  const deadline = Date.now() + 15_000;
  for (;;) {
    const answer = await fetch(`${global.url}/api/v1/kds`, { headers: { authorization: `Bearer ${admin}` } });
    const body = (await answer.json()) as { connectedZones?: unknown };
    const connected = JSON.stringify(body.connectedZones ?? []);
    if (zones.every((zone) => connected.includes(`"${zone}"`))) return;
    if (Date.now() > deadline) {
      throw new MeshError(
        ErrorCodes.UNAVAILABLE,
        `zones ${zones.join(', ')} did not connect to global within 15 s`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * The human summary printed at start: what runs where and what to try.
 * `cliPath` is how to invoke the CLI when `meshfed` is not on PATH.
 */
export function formatDemoSummary(info: DemoReadyInfo, cliPath?: string): string {
  const lines = [
    'meshfed demo is running',
    '',
    `  global API   ${info.globalApi}`,
    `  dashboard    ${info.dashboard}`,
    `  admin token  ${info.adminTokenFile}`,
    `  data         ${info.dataDir}`,
    ...(info.logFile ? [`  logs         ${info.logFile}`] : []),
    ...info.zones.map(
      (z) =>
        `  zone ${z.name.padEnd(7)} api ${z.api}  mds ${z.mds}${z.gateway ? `  gateway ${z.gateway}` : ''}`,
    ),
    ...info.workloads.map((w) => `  ${w.namespace}/${w.name} (${w.zone})  app ${w.app}`),
    '',
    'Try:',
    ...(cliPath ? [`  alias meshfed='node ${cliPath}'   # if meshfed is not on your PATH`] : []),
    `  export MESHFED_SERVER=${info.globalApi}`,
    `  export MESHFED_TOKEN_FILE=${info.adminTokenFile}`,
    '  meshfed apply -f test/fixtures/istio/',
    '  meshfed get vs -A',
    '  meshfed get zones',
    ...info.zones.slice(0, 1).map((z) => `  meshfed --server ${z.api} inspect proxies`),
    '',
    'Ctrl-C stops everything; the data directory is kept.',
    '',
  ];
  return lines.join('\n');
}
