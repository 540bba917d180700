/**
 * The zone CP under test, as its own process: the real startZoneCp with a
 * discovery source holding the generated mesh. Prints one JSON line with
 * its addresses on stdout, then answers `rss` requests over IPC until
 * killed.
 *
 * argv: <services> <deps> <dataDir>; env BENCH_CA_WORKERS sets the CA pool size.
 */

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setLogSink } from '../../core/log.js';
import { registerDiscoverySource, type DiscoverySource } from '../../zone-cp/discovery/discovery.js';
import { startZoneCp } from '../../zone-cp/zone-cp.js';
import { generateServices } from './cp-world.js';

const [servicesArg = '1000', depsArg = '3', dataDir = '/tmp/meshfed-cp-bench'] = process.argv.slice(2);
const services = generateServices(Number(servicesArg), Number(depsArg));
const workloads = services.flatMap((s) => s.endpoints);

registerDiscoverySource('bench', (): DiscoverySource => ({
  name: 'bench',
  start: async () => undefined,
  services: () => services,
  workloads: () => workloads,
  onChange: () => () => undefined,
  close: async () => undefined,
}));

// Warnings only: the bench's stderr is for problems.
setLogSink((line) => {
  if (/"level":"(warn|error)"/.test(line)) process.stderr.write(line + '\n');
});

const zone = await startZoneCp({
  zone: 'bench',
  dataDir,
  storeUrl: 'memory://',
  port: 0,
  grpcPort: 0,
  discovery: [{ name: 'bench' }],
  pushDebounceMs: Number(process.env.BENCH_DEBOUNCE_MS ?? 100),
  // BENCH_PUSH_BATCH: proxies per event-loop turn in a push round (a huge value: one blocking loop).
  ...(process.env.BENCH_PUSH_BATCH === undefined
    ? {}
    : { pushBatchSize: Number(process.env.BENCH_PUSH_BATCH) }),
  // BENCH_CA_WORKERS=0: the same zone signing on its main thread (the CA baseline).
  ...(process.env.BENCH_CA_WORKERS === undefined ? {} : { caWorkers: Number(process.env.BENCH_CA_WORKERS) }),
});
await zone.ready();
const admin = (await readFile(zone.adminTokenFile, 'utf8')).trim();
process.stdout.write(
  JSON.stringify({ restUrl: zone.restUrl, grpcAddress: zone.grpcAddress, caPem: zone.caPem, admin }) + '\n',
);

function memory(): { rssMiB: number; peakMiB: number; heapUsedMiB: number; externalMiB: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
  const heap = process.memoryUsage();
  return {
    rssMiB: Math.round(kb('VmRSS') / 102.4) / 10,
    peakMiB: Math.round(kb('VmHWM') / 102.4) / 10,
    heapUsedMiB: Math.round(heap.heapUsed / 104857.6) / 10,
    externalMiB: Math.round(heap.external / 104857.6) / 10,
  };
}

process.on('message', (message: { type?: string }) => {
  if (message.type === 'rss') process.send?.({ type: 'rss', ...memory() });
  if (message.type === 'cpu') {
    const usage = process.cpuUsage();
    process.send?.({ type: 'cpu', seconds: (usage.user + usage.system) / 1e6 });
  }
});
process.on('SIGTERM', () => {
  // The bench may exit right after asking: never outlive it by more than a moment.
  setTimeout(() => process.exit(1), 3000);
  void zone.close().finally(() => process.exit(0));
});
// Stop when the bench that forked this process goes away.
process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
