/**
 * Simulated proxies, in their own process: real MdsClients (one TLS
 * connection each) that apply every snapshot at once and ACK it; or, in
 * `sign` mode, a closed loop of CA Sign calls. Driven by the bench over IPC.
 *
 * argv: mds <address> <caPemFile> <token> <services> <proxies>
 *       sign <address> <caPemFile> <token> <seconds> <concurrency>
 */

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Client, ServiceError } from '@grpc/grpc-js';
import { CA_SERVICE } from '../../core/ca/ca-client.js';
import { loadService } from '../../core/ca/grpc-service.js';
import {
  grpcJsZoneCredentials,
  grpcJsZoneMetadata,
  grpcJsZoneOptions,
} from '../../test/common/zone-grpc-js.js';
import { MdsClient } from '../../core/mds/mds-client.js';
import { setLogSink } from '../../core/log.js';
import { generateKeyPair } from '../../core/pki/ca.js';
import { buildCsr } from '../../core/pki/csr.js';
import { allProxies } from './cp-world.js';

setLogSink(() => undefined);
// Stop when the bench that forked this process goes away.
process.on('disconnect', () => process.exit(0));
const [mode, address = '', caFile = '', token = '', a = '0', b = '0'] = process.argv.slice(2);
const caPem = readFileSync(caFile, 'utf8');

type Message =
  | { type: 'mark' }
  | { type: 'wait'; id: number; proxies: string[] | 'all'; timeoutMs: number }
  | { type: 'count' }
  | { type: 'stop' };

if (mode === 'sign') await signLoop(Number(a), Number(b));
else await mdsProxies(Number(a), Number(b));

async function mdsProxies(services: number, count: number): Promise<void> {
  const proxies = allProxies(services, count);
  const clients: MdsClient[] = [];
  let markAt = performance.now();
  /** Time (since mark) each proxy last applied a snapshot, for proxies that applied one since the mark. */
  let applied = new Map<string, number>();
  let firstSnapshots = 0;
  const started = performance.now();
  const waiters = new Set<() => void>();
  for (const proxy of proxies) {
    const id = `${proxy.namespace}/${proxy.workload}`;
    let first = true;
    const client = new MdsClient({
      address,
      caPem,
      credential: () => ({ token }),
      hello: { proxyId: id, kind: 'sidecar', workload: proxy.workload, namespace: proxy.namespace },
      onSnapshot: () => {
        if (first) {
          first = false;
          firstSnapshots++;
        }
        applied.set(id, performance.now() - markAt);
        for (const w of waiters) w();
      },
      initialBackoffMs: 200,
    });
    clients.push(client);
    client.start();
  }
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (firstSnapshots >= proxies.length) {
        waiters.delete(check);
        resolve();
      }
    };
    waiters.add(check);
    check();
  });
  process.send?.({ type: 'connected', ms: performance.now() - started, proxies: proxies.length });

  process.on('message', (message: Message) => {
    if (message.type === 'mark') {
      markAt = performance.now();
      applied = new Map();
      process.send?.({ type: 'marked' });
    } else if (message.type === 'count') {
      process.send?.({ type: 'count', applied: applied.size });
    } else if (message.type === 'stop') {
      for (const c of clients) c.close();
      process.exit(0);
    } else if (message.type === 'wait') {
      const wanted =
        message.proxies === 'all' ? proxies.map((p) => `${p.namespace}/${p.workload}`) : message.proxies;
      const timer = setTimeout(() => {
        waiters.delete(check);
        process.send?.({
          type: 'converged',
          id: message.id,
          timedOut: true,
          missing: wanted.filter((w) => !applied.has(w)).length,
        });
      }, message.timeoutMs);
      const check = (): void => {
        let last = 0;
        for (const w of wanted) {
          const at = applied.get(w);
          if (at === undefined) return;
          last = Math.max(last, at);
        }
        clearTimeout(timer);
        waiters.delete(check);
        process.send?.({ type: 'converged', id: message.id, ms: last, applied: applied.size });
      };
      waiters.add(check);
      check();
    }
  });
}

/**
 * Closed loop of Sign calls over a few channels (BENCH_SIGN_CHANNELS, default 4). Keys, CSRs and the
 * token are made before the timed phase, so the client spends its time on gRPC alone.
 */
async function signLoop(seconds: number, concurrency: number): Promise<void> {
  const { Client: CaClient } = loadService('ca.proto', CA_SERVICE);
  const channels: Client[] = Array.from(
    { length: Number(process.env.BENCH_SIGN_CHANNELS ?? 4) },
    () =>
      new CaClient(address, grpcJsZoneCredentials(caPem, { token }), {
        ...grpcJsZoneOptions(),
        'grpc.use_local_subchannel_pool': 1,
      }),
  );
  const csrs = Array.from({ length: 64 }, () => {
    const { privateKey, publicKey } = generateKeyPair();
    return buildCsr(privateKey, publicKey);
  });
  const metadata = grpcJsZoneMetadata({ token });
  type Sign = (req: unknown, md: unknown, cb: (err: ServiceError | null) => void) => void;
  const call = (i: number): Promise<boolean> => {
    const client = channels[i % channels.length] as Client;
    return new Promise((resolve) =>
      (client as unknown as { Sign: Sign }).Sign.call(
        client,
        { csr_pem: csrs[i % csrs.length] },
        metadata,
        (err) => resolve(err === null),
      ),
    );
  };
  // Warm-up: connections and JIT.
  await Promise.all(Array.from({ length: 200 }, (_, i) => call(i)));
  const cpuAtStart = process.cpuUsage();
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  let failed = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      let i = worker;
      while (performance.now() < deadline) {
        if (await call(i)) done++;
        else failed++;
        i += concurrency;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuAtStart);
  // total includes the warm-up calls: the zone's CPU counter saw them too.
  process.stdout.write(
    JSON.stringify({
      perSecond: done / elapsed,
      failed,
      total: done + 200,
      timed: done,
      elapsedSeconds: elapsed,
      // The client's own CPU in the timed phase: on a shared machine it competes with the zone.
      clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
    }) + '\n',
  );
  for (const c of channels) c.close();
  process.exit(0);
}
