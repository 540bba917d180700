/**
 * How often this machine stops a running process, measured with one
 * spinning probe per CPU (host-stall-probe.ts) while nothing else of the
 * bench runs. A tail-latency target below the size of these stalls cannot
 * be told apart from them: they set the floor under any p99 measured here.
 */

import { spawn } from 'node:child_process';
import os from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { round } from './load.js';

const PROBE = resolve(fileURLToPath(import.meta.url), '..', 'host-stall-probe.js');

export interface HostStalls {
  probes: number;
  seconds: number;
  /** Per CPU-second: stalls longer than 50 µs, 200 µs and 1 ms. */
  over50usPerSecond: number;
  over200usPerSecond: number;
  over1msPerSecond: number;
  longestMs: number;
  /** Share of the probes' time spent stalled. */
  stolenPercent: number;
}

function runProbe(durationMs: number): Promise<{ durationMs: number; gapsMs: number[] }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [PROBE, String(durationMs)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (out += chunk));
    child.on('error', fail);
    child.on('close', (code) => {
      if (code !== 0) fail(new Error(`host stall probe exited with ${String(code)}`));
      else done(JSON.parse(out) as { durationMs: number; gapsMs: number[] });
    });
  });
}

export async function measureHostStalls(durationMs = 3000): Promise<HostStalls> {
  return summarizeStalls(await Promise.all(os.cpus().map(() => runProbe(durationMs))));
}

/** The probes' gaps as rates per CPU-second, the longest gap and the share of time lost. */
export function summarizeStalls(probes: ReadonlyArray<{ durationMs: number; gapsMs: number[] }>): HostStalls {
  const gaps = probes.flatMap((p) => p.gapsMs);
  const cpuMs = probes.reduce((sum, p) => sum + p.durationMs, 0);
  const rate = (overMs: number): number => round((gaps.filter((g) => g > overMs).length * 1000) / cpuMs, 1);
  const stalled = gaps.reduce((sum, g) => sum + g, 0);
  return {
    probes: probes.length,
    seconds: (probes[0]?.durationMs ?? 0) / 1000,
    over50usPerSecond: rate(0.05),
    over200usPerSecond: rate(0.2),
    over1msPerSecond: rate(1),
    longestMs: round(
      gaps.reduce((max, g) => Math.max(max, g), 0),
      3,
    ),
    stolenPercent: round((stalled / cpuMs) * 100, 2),
  };
}
