/** `meshfed demo` (what `npm start` runs): parses flags, the orchestration is cli/demo/demo.ts. */

import path from 'node:path';
import { Option, type Command } from 'commander';
import { formatDemoSummary, startDemo } from '../demo/demo.js';
import { parsePort } from '../flags.js';
import { exitOnSignal, explainListenError } from '../signals.js';

interface DemoFlags {
  readyFile?: string;
  dataDir: string;
  port: number;
  logFile?: string;
}

/** Register `demo` on the root program. */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the whole mesh on this machine (no Kubernetes, no Docker) until Ctrl-C')
    .option('--ready-file <file>', 'write where everything runs as JSON here once it all serves')
    .addOption(new Option('--data-dir <dir>', 'where the demo keeps its state').default('.meshfed/demo'))
    .addOption(
      new Option('--port <port>', 'global API port; 0 picks a free one').default(5681).argParser(parsePort),
    )
    .option('--log-file <file>', 'component logs (default <data-dir>/demo.log; - for stderr)')
    .action(async (flags: DemoFlags) => {
      const handle = await startDemo({
        dataDir: flags.dataDir,
        port: flags.port,
        ...(flags.readyFile === undefined ? {} : { readyFile: flags.readyFile }),
        ...(flags.logFile === undefined ? {} : { logFile: flags.logFile }),
      }).catch((err: unknown) => {
        throw explainListenError(err, undefined, flags.port);
      });
      exitOnSignal(() => handle.close());
      const cliPath = process.argv[1] ? path.resolve(process.argv[1]) : undefined;
      process.stdout.write(formatDemoSummary(handle.info, cliPath));
    });
}
