/**
 * Load generator for the gateway benchmark (its own process, so its CPU is
 * not the bench's). One measurement per run, printed as one JSON line:
 *   rate   new mTLS connections/s at a fixed concurrency (full handshakes)
 *   bulk   MB/s read over long-lived connections the backend streams on
 *   ttfb   time from connect() to the first response byte, sequentially,
 *          sampled round-robin over several targets so noise hits them alike
 * Usage: node gateway-tls-client.js '<json job>'
 */

import { readFileSync } from 'node:fs';
import tls from 'node:tls';

interface Target {
  name: string;
  port: number;
}

interface Job {
  mode: 'rate' | 'bulk' | 'ttfb';
  targets: Target[];
  servername: string;
  keyFile: string;
  certFile: string;
  caFile: string;
  concurrency?: number;
  seconds?: number;
  warmupSeconds?: number;
  samples?: number;
  /** ttfb: resume the TLS session of the previous connection to the same target (what mesh proxies do). */
  resume?: boolean;
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job;
const secureContext = tls.createSecureContext({
  key: readFileSync(job.keyFile),
  cert: readFileSync(job.certFile),
  ca: readFileSync(job.caFile),
});
const SMALL = Buffer.from('small\n');
const STREAM = Buffer.from('stream\n');

/** The last session ticket per port, offered on the next connection when resuming. */
const sessions = new Map<number, Buffer>();

function connect(port: number, resume = false): tls.TLSSocket {
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    servername: job.servername,
    secureContext,
    session: resume ? sessions.get(port) : undefined,
    // The backend is a workload identity, not a DNS name; the bench trusts its root.
    checkServerIdentity: () => undefined,
  });
  socket.setNoDelay(true);
  if (resume) socket.on('session', (session: Buffer) => sessions.set(port, session));
  return socket;
}

/** One short exchange; resolves with ms from connect() to the first response byte. */
function exchange(port: number, resume = false): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const socket = connect(port, resume);
    let first = 0;
    socket.once('secureConnect', () => socket.write(SMALL));
    socket.once('data', () => {
      first = Number(process.hrtime.bigint() - started) / 1e6;
    });
    socket.on('data', () => undefined);
    socket.on('error', reject);
    socket.on('close', () => (first > 0 ? resolve(first) : reject(new Error('no answer'))));
  });
}

async function rate(target: Target): Promise<Record<string, number>> {
  const concurrency = job.concurrency ?? 32;
  const warmupMs = (job.warmupSeconds ?? 1) * 1000;
  const endAt = Date.now() + warmupMs + (job.seconds ?? 5) * 1000;
  const measureFrom = Date.now() + warmupMs;
  let done = 0;
  let total = 0;
  let failures = 0;
  let measuredStart = 0n;
  const loop = async (): Promise<void> => {
    while (Date.now() < endAt) {
      try {
        await exchange(target.port);
        total++;
        if (Date.now() >= measureFrom) {
          if (measuredStart === 0n) measuredStart = process.hrtime.bigint();
          done++;
        }
      } catch {
        failures++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const seconds = Number(process.hrtime.bigint() - measuredStart) / 1e9;
  return { connectionsPerSecond: done / seconds, connections: done, total, failures };
}

async function bulk(target: Target): Promise<Record<string, number>> {
  const concurrency = job.concurrency ?? 4;
  const warmupMs = (job.warmupSeconds ?? 1) * 1000;
  const sockets: tls.TLSSocket[] = [];
  let bytes = 0;
  for (let i = 0; i < concurrency; i++) {
    const socket = connect(target.port);
    socket.once('secureConnect', () => socket.write(STREAM));
    socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
    socket.on('error', () => undefined);
    sockets.push(socket);
  }
  await new Promise((resolve) => setTimeout(resolve, warmupMs));
  const startBytes = bytes;
  const started = process.hrtime.bigint();
  await new Promise((resolve) => setTimeout(resolve, (job.seconds ?? 5) * 1000));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const moved = bytes - startBytes;
  for (const socket of sockets) socket.destroy();
  return { megabytesPerSecond: moved / 1e6 / seconds, bytes: moved, totalBytes: bytes };
}

async function ttfb(): Promise<Record<string, number[]>> {
  const samples = job.samples ?? 1000;
  const results: Record<string, number[]> = {};
  for (const target of job.targets) results[target.name] = [];
  // Warm up every path (JIT, TLS contexts) before sampling.
  const resume = job.resume === true;
  for (let i = 0; i < 50; i++) for (const target of job.targets) await exchange(target.port, resume);
  for (let i = 0; i < samples; i++) {
    for (const target of job.targets) results[target.name]?.push(await exchange(target.port, resume));
  }
  return results;
}

async function main(): Promise<void> {
  const first = job.targets[0];
  if (first === undefined) throw new Error('no target');
  let result: unknown;
  if (job.mode === 'rate') result = await rate(first);
  else if (job.mode === 'bulk') result = await bulk(first);
  else result = await ttfb();
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

void main();
