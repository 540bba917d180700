/**
 * Every component's registry (core/metrics createRegistry) exposes the same
 * process metrics as prom-client's collectDefaultMetrics, without loading
 * prom-client's index and the @opentelemetry/api it pulls in (≈ 7.5 MiB of
 * resident memory per sidecar).
 */

import { describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as Prom from 'prom-client';
import { createRegistry } from '../../core/metrics.js';
import { assertCliBuilt, CLI_MAIN } from '../common/cli.js';

function metricNames(text: string): string[] {
  return [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] as string).sort();
}

describe('process metrics', () => {
  test('are the ones prom-client collects by default, with live values', async () => {
    // The reference: prom-client's own index, loaded here only.
    const promClient = createRequire(import.meta.url)('prom-client') as typeof Prom;
    const reference = new promClient.Registry();
    promClient.collectDefaultMetrics({ register: reference });
    const registry = createRegistry('proxy');
    const text = await registry.metrics();
    expect(metricNames(text)).toEqual(metricNames(await reference.metrics()));
    const cpu = /^process_cpu_seconds_total\{component="proxy"\} (\S+)$/m.exec(text);
    expect(Number(cpu?.[1])).toBeGreaterThan(0);
    const rss = /^process_resident_memory_bytes\{component="proxy"\} (\S+)$/m.exec(text);
    expect(Number(rss?.[1])).toBeGreaterThan(10 * 1024 * 1024);
  });

  test('load neither prom-client’s index nor @opentelemetry/api', async () => {
    assertCliBuilt();
    const metrics = path.resolve(path.dirname(CLI_MAIN), '../core/metrics.js');
    const script = `
      import { createRequire } from 'node:module';
      const { createRegistry } = await import(${JSON.stringify(metrics)});
      await createRegistry('proxy').metrics();
      const loaded = Object.keys(createRequire(import.meta.url).cache);
      console.log(JSON.stringify(loaded.filter((f) => /@opentelemetry|prom-client\\/index\\.js/.test(f))));
    `;
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['--input-type=module', '-e', script], (err, out) =>
        err ? reject(err) : resolve(out),
      ),
    );
    expect(JSON.parse(stdout)).toEqual([]);
  });
});
