#!/usr/bin/env node
/**
 * `meshfed-proxy [flags]`: the sidecar on its own, the same flags and
 * environment variables as `meshfed proxy`, without loading the rest of the
 * CLI (every other command group, and what they import). A sidecar runs next
 * to every workload, so the megabytes those modules hold are paid once per
 * pod; the full `meshfed proxy` stays for convenience.
 */

import { Command, CommanderError } from 'commander';
import { registerProxyCommand } from './commands/proxy.js';
import { failAndExit } from './exit.js';

async function main(argv: string[]): Promise<void> {
  // Errors are printed once, by failAndExit, as the full CLI does.
  const program = new Command('meshfed-proxy')
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
    .showSuggestionAfterError(true);
  registerProxyCommand(program);
  try {
    // The one command is implied: `meshfed-proxy --workload x` is `meshfed proxy --workload x`.
    await program.parseAsync([...argv.slice(0, 2), 'proxy', ...argv.slice(2)]);
  } catch (err) {
    if (err instanceof CommanderError && (err.exitCode === 0 || err.code === 'commander.help')) {
      process.exit(err.exitCode);
    }
    failAndExit(err);
  }
}

await main(process.argv);
