#!/usr/bin/env node
/**
 * The `meshfed` command. This file only runs the program (cli/program.ts) and
 * maps failures to one line on stderr; every command lives in
 * cli/commands/ and delegates to the components.
 */

import { CommanderError } from 'commander';
import { failAndExit } from './exit.js';
import { buildProgram } from './program.js';

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    // --help, --version and a bare command group have already printed what they print.
    if (err instanceof CommanderError && (err.exitCode === 0 || err.code === 'commander.help')) {
      process.exit(err.exitCode);
    }
    failAndExit(err);
  }
}

await main(process.argv);
