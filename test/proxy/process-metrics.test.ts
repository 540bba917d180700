/**
 * Every component's registry (core/metrics createRegistry) exposes the same
 * process metrics as prom-client's collectDefaultMetrics, without loading
 * prom-client's index and the @opentelemetry/api it pulls in (≈ 7.5 MiB of
 * resident memory per sidecar); the `lean` set a sidecar runs with leaves
 * out the two that run between scrapes and the one that loads node:v8
 * (core/process-metrics.ts).
 */

import { describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as Prom from 'prom-client';
import { createRegistry } from '../../core/metrics.js';
import { resolveProxyOptions } from '../../proxy/proxy-options.js';
import { assertCliBuilt, CLI_MAIN } from '../common/cli.js';

function metricNames(text: string): string[] {
  return [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] as string).sort();
}

/** prom-client's own default metrics: the reference (its index is loaded here only). */
async function referenceNames(): Promise<string[]> {
  const promClient = createRequire(import.meta.url)('prom-client') as typeof Prom;
  const reference = new promClient.Registry();
  promClient.collectDefaultMetrics({ register: reference });
  return metricNames(await reference.metrics());
}

/** Runs `script` (an ES module) in a fresh Node process with core/metrics.js as `metrics`; its stdout as JSON. */
async function inFreshProcess(script: string): Promise<unknown> {
  assertCliBuilt();
  const metrics = path.resolve(path.dirname(CLI_MAIN), '../core/metrics.js');
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(
      process.execPath,
      ['--input-type=module', '-e', `const metrics = await import(${JSON.stringify(metrics)});\n${script}`],
      (err, out) => (err ? reject(err) : resolve(out)),
    ),
  );
  return JSON.parse(stdout);
}

/** What only the full set has: the two sampled between scrapes, and V8's per-space sizes (node:v8). */
const FULL_ONLY =
  /^nodejs_(gc_duration_seconds|eventloop_lag_(min|max|mean|stddev|p50|p90|p99)_seconds|heap_space_size_(total|used|available)_bytes)$/;

describe('process metrics', () => {
  test('full: the ones prom-client collects by default, with live values', async () => {
    const text = await createRegistry('proxy', 'full').metrics();
    expect(metricNames(text)).toEqual(await referenceNames());
    const cpu = /^process_cpu_seconds_total\{component="proxy"\} (\S+)$/m.exec(text);
    expect(Number(cpu?.[1])).toBeGreaterThan(0);
    const rss = /^process_resident_memory_bytes\{component="proxy"\} (\S+)$/m.exec(text);
    expect(Number(rss?.[1])).toBeGreaterThan(10 * 1024 * 1024);
  });

  test('lean: all but the event-loop delay histogram, the GC durations and the heap spaces; the lag is measured at the scrape', async () => {
    const registry = createRegistry('proxy', 'lean');
    const text = await registry.metrics();
    const expected = (await referenceNames()).filter((name) => !FULL_ONLY.test(name));
    expect(expected).toContain('nodejs_heap_size_used_bytes');
    expect(expected).toContain('nodejs_eventloop_lag_seconds');
    expect(metricNames(text)).toEqual(expected);
    // Measured during this scrape: a number, not prom-client's value from the previous one.
    const lag = /^nodejs_eventloop_lag_seconds\{component="proxy"\} (\S+)$/m.exec(text);
    expect(Number(lag?.[1])).toBeGreaterThan(0);
    expect(metricNames(await createRegistry('proxy', 'off').metrics())).toEqual([]);
  });

  test('lean starts neither the event-loop monitor nor the GC observer: node:perf_hooks and node:v8 are not even loaded', async () => {
    const loaded = await inFreshProcess(`
      const has = () => ['perf_hooks', 'v8'].filter((m) => process.moduleLoadList.includes('NativeModule ' + m));
      const lean = metrics.createRegistry('proxy', 'lean');
      await lean.metrics();
      const afterLean = has();
      await metrics.createRegistry('proxy', 'full').metrics();
      console.log(JSON.stringify([afterLean, has()]));
    `);
    // The second value shows the check can fail: the full set loads both.
    expect(loaded).toEqual([[], ['perf_hooks', 'v8']]);
  });

  test('a sidecar runs the lean set unless told otherwise, and an unknown set is refused by name', () => {
    expect(resolveProxyOptions({}).processMetrics).toBe('lean');
    expect(resolveProxyOptions({ processMetrics: 'full' }).processMetrics).toBe('full');
    expect(() => resolveProxyOptions({ processMetrics: 'verbose' as 'full' })).toThrow(
      'processMetrics must be one of lean, full, off, got "verbose"',
    );
  });

  test('load neither prom-client’s index nor @opentelemetry/api', async () => {
    const loaded = await inFreshProcess(`
      const { createRequire } = await import('node:module');
      await metrics.createRegistry('proxy', 'full').metrics();
      const files = Object.keys(createRequire(import.meta.url).cache);
      console.log(JSON.stringify(files.filter((f) => /@opentelemetry|prom-client\\/index\\.js/.test(f))));
    `);
    expect(loaded).toEqual([]);
  });
});
