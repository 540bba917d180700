/**
 * How often this machine stops a running process, measured with one
 * spinning probe per CPU (host-stall-probe.ts) before the bench starts
 * anything else. Every CPU busy is not how the bench loads the machine, so
 * this is not a bound; it says how large and how frequent the pauses are
 * that no process here can avoid, to read a p99 of a fraction of a
 * millisecond against.
 */

import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { round } from './load.js';

const PROBE = resolve(fileURLToPath(import.meta.url), '..', 'host-stall-probe.js');
/** Time for every probe to start before they measure together. */
const START_DELAY_MS = 500;

export interface HostStalls {
  probes: number;
  seconds: number;
  /** Per CPU-second: stalls longer than 50 µs, 200 µs and 1 ms. */
  over50usPerSecond: number;
  over200usPerSecond: number;
  over1msPerSecond: number;
  longestMs: number;
  /** Share of the probes' time they did not run (not the hypervisor's steal counter). */
  stalledPercent: number;
}

export interface ProbeResult {
  durationMs: number;
  gapsMs: number[];
  /** When the probe measured, in ms since the epoch. */
  window?: { fromMs: number; toMs: number };
}

/**
 * One spinning probe in its own process; it measures from `startAt` (ms
 * since the epoch, or as soon as it is up if later) for `durationMs`.
 * `measuring` resolves once it does.
 */
export function startProbe(
  durationMs: number,
  startAt: number,
): { pid: number; measuring: Promise<void>; result: Promise<ProbeResult> } {
  const child = spawn(process.execPath, [PROBE, String(durationMs), String(startAt)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const MEASURING = 'measuring\n';
  let out = '';
  child.stdout.setEncoding('utf8');
  const measuring = new Promise<void>((started) => {
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (out.startsWith(MEASURING)) started();
    });
  });
  const result = new Promise<ProbeResult>((done, fail) => {
    child.on('error', fail);
    child.on('close', (code) => {
      if (code !== 0 || !out.startsWith(MEASURING))
        fail(new Error(`host stall probe exited with ${String(code)}`));
      else done(JSON.parse(out.slice(MEASURING.length)) as ProbeResult);
    });
  });
  return { pid: child.pid ?? 0, measuring, result };
}

export async function measureHostStalls(durationMs = 3000): Promise<HostStalls> {
  const startAt = Date.now() + START_DELAY_MS;
  const probes = Array.from({ length: availableParallelism() }, () => startProbe(durationMs, startAt));
  return summarizeStalls(await Promise.all(probes.map((p) => p.result)));
}

/** The probes' gaps as rates per CPU-second, the longest gap and the share of time lost. */
export function summarizeStalls(probes: readonly ProbeResult[]): HostStalls {
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
    stalledPercent: round((stalled / cpuMs) * 100, 2),
  };
}
