/**
 * Load-generation helpers for the benchmarks: keep-alive HTTP requests at a
 * fixed concurrency, percentiles, process RSS. No timed assertions: the
 * benches print figures, the reader judges them.
 */

import { Agent, request } from 'node:http';
import { readFileSync } from 'node:fs';

export interface HttpTarget {
  host: string;
  port: number;
  agent: Agent;
}

export function target(url: string, maxSockets: number): HttpTarget {
  const parsed = new URL(url);
  return {
    host: parsed.hostname,
    port: Number(parsed.port),
    agent: new Agent({ keepAlive: true, maxSockets }),
  };
}

/** One request; resolves with the status once the body is read. */
export function send(
  t: HttpTarget,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: t.host, port: t.port, method, path, headers, agent: t.agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Runs `total` operations with `concurrency` in flight and returns the
 * achieved rate. An operation that fails (throws) is counted, not retried.
 */
export async function runClosedLoop(
  total: number,
  concurrency: number,
  op: (i: number) => Promise<boolean>,
): Promise<{ perSecond: number; failures: number; seconds: number }> {
  let next = 0;
  let failures = 0;
  const started = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      const ok = await op(i).catch(() => false);
      if (!ok) failures++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { perSecond: total / seconds, failures, seconds };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? NaN;
}

/** A sorted copy, for percentile(). */
export function ascending(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

export function median(values: number[]): number {
  return percentile(ascending(values), 50);
}

/** p50 / p90 / p99 of added-latency samples (any order), in ms to the microsecond. */
export function addedPercentiles(values: readonly number[]): {
  addedP50Ms: number;
  addedP90Ms: number;
  addedP99Ms: number;
} {
  const sorted = ascending(values);
  return {
    addedP50Ms: round(percentile(sorted, 50), 3),
    addedP90Ms: round(percentile(sorted, 90), 3),
    addedP99Ms: round(percentile(sorted, 99), 3),
  };
}

/** `<field>: <n> kB` lines of /proc/<pid>/status in MiB (Linux), one read; NaN once the process is gone. */
function statusMiB(pid: number, fields: readonly string[]): number[] {
  let status = '';
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return fields.map(() => NaN);
  }
  return fields.map((field) => {
    const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
    return Math.round((kb / 1024) * 10) / 10;
  });
}

/** Resident set size of a process in MiB. */
export function rssMiB(pid: number): number {
  return statusMiB(pid, ['VmRSS'])[0] ?? NaN;
}

/**
 * The resident set and its anonymous part (heap, stacks, malloc), in MiB,
 * from one read. The anonymous part is what one more copy of the process
 * adds to a node; the rest of the RSS is the executable's and libraries'
 * pages, which every process of the same binary shares through the page cache.
 */
export function residentMiB(pid: number): { rss: number; anon: number } {
  const [rss = NaN, anon = NaN] = statusMiB(pid, ['VmRSS', 'RssAnon']);
  return { rss, anon };
}

export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Node flags from a space-separated environment value ('' = none). */
export function splitNodeArgs(value: string): string[] {
  return value.split(' ').filter((a) => a !== '');
}
