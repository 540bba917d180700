/** `meshfed demo` (what `npm start` runs): parses flags, the orchestration is cli/demo/demo.ts. */

import path from 'node:path';
import { Option, type Command } from 'commander';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { formatDemoSummary, startDemo } from '../demo/demo.js';
import { formatErrorLine } from '../exit.js';
import { parsePort } from '../flags.js';
import { exitOnSignal, explainListenError } from '../signals.js';

interface DemoFlags {
  readyFile?: string;
  dataDir: string;
  port: number;
  logFile?: string;
  samples?: string;
  traffic: number;
  netns: boolean;
}

/** Exit status of a demo that could not start because of its environment (a port in use, no root for --netns). */
const EXIT_ENVIRONMENT = 2;

function parseRate(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1000) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `--traffic must be a number of calls per second from 0 to 1000, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

function isEnvironmentError(err: unknown): boolean {
  return err instanceof MeshError && /already in use|--netns/.test(err.message);
}

/** Register `demo` on the root program. */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the whole mesh on this machine (no Kubernetes, no Docker) until Ctrl-C')
    .option('--ready-file <file>', 'write where everything runs as JSON here once it all serves')
    .addOption(new Option('--data-dir <dir>', 'where the demo keeps its state').default('.meshfed/demo'))
    .addOption(
      new Option('--port <port>', 'global API port; 0 puts every part of the demo on a free port')
        .default(5681)
        .argParser(parsePort),
    )
    .option('--log-file <file>', 'component logs (default <data-dir>/demo.log; - for stderr)')
    .option('--samples <dir>', 'sample resources to apply (default deploy/samples of this checkout)')
    .addOption(
      new Option('--traffic <per-second>', 'calls per second frontend → backend; 0 for none')
        .default(4)
        .argParser(parseRate),
    )
    .option('--netns', 'put each zone in its own network namespace (needs root)', false)
    .action(async (flags: DemoFlags) => {
      const cliPath = process.argv[1] ? path.resolve(process.argv[1]) : undefined;
      try {
        const starting = startDemo({
          dataDir: flags.dataDir,
          port: flags.port,
          trafficPerSecond: flags.traffic,
          netns: flags.netns,
          ...(cliPath === undefined ? {} : { cliMain: cliPath }),
          ...(cliPath === undefined ? {} : { cliCommand: [process.execPath, cliPath, 'vm-agent', 'run'] }),
          ...(flags.readyFile === undefined ? {} : { readyFile: flags.readyFile }),
          ...(flags.logFile === undefined ? {} : { logFile: flags.logFile }),
          ...(flags.samples === undefined ? {} : { samplesDir: flags.samples }),
        });
        // Ctrl-C while starting: let the start finish (or fail and clean up), then stop it all.
        exitOnSignal(async () => {
          const started = await starting.catch(() => undefined);
          await started?.close();
        });
        const handle = await starting;
        process.stdout.write(formatDemoSummary(handle.info, cliPath));
      } catch (err) {
        const explained = explainListenError(err, undefined, flags.port);
        if (!isEnvironmentError(explained)) throw explained;
        process.stderr.write(formatErrorLine(explained) + '\n');
        process.exit(EXIT_ENVIRONMENT);
      }
    });
}
