/**
 * The commander program of `meshfed`: global connection options and every
 * command group registered. Separate from main.ts so tests and the
 * completion generator can build it without running it.
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { registerApplyCommand } from './commands/apply.js';
import { registerCaptureCommand } from './commands/capture.js';
import { registerCompletionCommand } from './commands/completion.js';
import { registerConfigCommands } from './commands/config.js';
import { registerDeleteCommand } from './commands/delete.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerGatewayCommand } from './commands/gateway.js';
import { registerGetCommand } from './commands/get.js';
import { registerGlobalCpCommand } from './commands/global-cp.js';
import { registerInspectCommands } from './commands/inspect.js';
import { registerProxyCommand } from './commands/proxy.js';
import { registerTokenCommands } from './commands/token.js';
import { registerVmAgentCommand } from './commands/vm-agent.js';
import { registerZoneCpCommand } from './commands/zone-cp.js';

/** The package version, from the nearest package.json named meshfed above this file. */
export function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
      if (
        typeof pkg === 'object' &&
        pkg !== null &&
        'name' in pkg &&
        pkg.name === 'meshfed' &&
        'version' in pkg
      ) {
        return String(pkg.version);
      }
    } catch {
      // not here: keep climbing
    }
    const parent = path.dirname(dir);
    if (parent === dir) return '0.0.0';
    dir = parent;
  }
}

/** Build the program with every command registered. */
export function buildProgram(): Command {
  const program = new Command('meshfed')
    .description('meshfed: a multi-cluster service mesh')
    .version(packageVersion(), '-v, --version', 'print the meshfed version')
    .option('--server <url>', 'global API URL (env MESHFED_SERVER; default http://127.0.0.1:5681)')
    .option('--token <token>', 'API token (env MESHFED_TOKEN)')
    .option('--token-file <file>', 'file holding the API token (env MESHFED_TOKEN_FILE)')
    .option('--ca-file <file>', 'CA certificate (PEM) of a TLS server (env MESHFED_CA_FILE)')
    .option('--context <name>', 'use this context of the config file instead of the current one')
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
    .showSuggestionAfterError(true);
  registerGlobalCpCommand(program);
  registerZoneCpCommand(program);
  registerDemoCommand(program);
  registerGatewayCommand(program);
  registerProxyCommand(program);
  registerCaptureCommand(program);
  registerApplyCommand(program);
  registerGetCommand(program);
  registerDeleteCommand(program);
  registerInspectCommands(program);
  registerTokenCommands(program);
  registerVmAgentCommand(program);
  registerConfigCommands(program);
  registerCompletionCommand(program);
  return program;
}
