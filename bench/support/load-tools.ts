/**
 * The data-plane benchmark's load generators: wrk (Debian) for saturation,
 * and for a fixed request rate the open-loop generator in
 * fixed-rate-client.ts, run as its own process (wrk2 is not in Debian, and
 * `hey -q` starts every worker on the same tick, so 1,000 rps arrives as
 * bursts of 20 every 20 ms — it measures queueing behind the burst, not
 * per-request latency). Plus CPU and RSS of a process from /proc.
 */

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { residentMiB } from './load.js';

export interface LatencyResult {
  rps: number;
  requests: number;
  /** The fixed-rate generator's requests including its warm-up (wrk: absent). */
  totalRequests?: number;
  errors: number;
  /** Milliseconds. */
  p50: number;
  p90: number;
  p99: number;
}

function run(command: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  switch (unit) {
    case 'us':
      return n / 1000;
    case 'ms':
      return n;
    case 's':
      return n * 1000;
    default:
      return NaN;
  }
}

/** wrk at saturation: `connections` keep-alive connections from one thread. */
export async function wrk(
  url: string,
  host: string | undefined,
  seconds: number,
  connections = 64,
): Promise<LatencyResult> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency'];
  if (host !== undefined) args.push('-H', `Host: ${host}`);
  args.push(url);
  const out = await run('wrk', args, (seconds + 30) * 1000);
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out);
    return m === null ? NaN : toMs(m[1] ?? '', m[2] ?? '');
  };
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors =
    non2xx + (socketErrors === null ? 0 : socketErrors.slice(1).reduce((s, v) => s + Number(v), 0));
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    requests,
    errors,
    p50: pct('50'),
    p90: pct('90'),
    p99: pct('99'),
  };
}

/** Sent on the schedule before measuring: the generator's own JIT warm-up (fixed-rate-client.ts). */
export const FIXED_RATE_WARMUP_SECONDS = 3;

/** The open-loop fixed-rate generator (fixed-rate-client.js next to this file). */
export async function fixedRate(
  url: string,
  host: string | undefined,
  rate: number,
  seconds: number,
  /** Give each request a unique `?n=<i>` for a packet capture to follow (i counts the warm-up too). */
  tagRequests = false,
): Promise<LatencyResult> {
  const script = fileURLToPath(new URL('./fixed-rate-client.js', import.meta.url));
  const out = await run(
    process.execPath,
    [
      script,
      url,
      host ?? '-',
      String(rate),
      String(seconds),
      String(FIXED_RATE_WARMUP_SECONDS),
      tagRequests ? '1' : '0',
    ],
    (seconds + FIXED_RATE_WARMUP_SECONDS + 60) * 1000,
  );
  const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as LatencyResult;
  return r;
}

/** User + system CPU seconds a process has used (Linux /proc, USER_HZ = 100). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** Context switches of a process's main thread (Linux /proc): with nothing to do, one per event-loop wake-up. */
function mainThreadSwitches(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const voluntary = Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
    const involuntary = Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
    return voluntary + involuntary;
  } catch {
    return NaN;
  }
}

/** How many times a second each process's main thread wakes while nobody sends it anything, over `ms`. */
export async function idleWakeupsPerSecond(pids: number[], ms = 3000): Promise<number[]> {
  const before = pids.map(mainThreadSwitches);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return pids.map(
    (pid, i) => Math.round(((mainThreadSwitches(pid) - (before[i] ?? NaN)) / ms) * 10_000) / 10,
  );
}

/** Largest RSS and largest anonymous part of it (MiB) of each process while `work` runs, sampled every 100 ms. */
export async function peakResident<T>(
  pids: number[],
  work: () => Promise<T>,
): Promise<{ result: T; rss: number[]; anon: number[] }> {
  const rss = pids.map(() => 0);
  const anon = pids.map(() => 0);
  const sample = (): void =>
    pids.forEach((pid, i) => {
      const now = residentMiB(pid);
      rss[i] = Math.max(rss[i] ?? 0, now.rss || 0);
      anon[i] = Math.max(anon[i] ?? 0, now.anon || 0);
    });
  const timer = setInterval(sample, 100);
  try {
    const result = await work();
    sample();
    return { result, rss, anon };
  } finally {
    clearInterval(timer);
  }
}
