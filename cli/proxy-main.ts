#!/usr/bin/env node
/**
 * `meshfed-proxy [flags]`: the sidecar on its own, the same flags and
 * environment variables as `meshfed proxy` (one table, commands/proxy-flags.ts),
 * without the rest of the CLI: not the other command groups and what they
 * import, and not commander, whose parser alone held 1.5 MiB of a sidecar's
 * resident memory (node:util's parseArgs, through cli/flag-table.ts, does the
 * same here). A sidecar runs next to every workload, so those megabytes are
 * paid once per pod; the webhook injects this entry.
 */

import { formatHelp, parseFlags } from './flag-table.js';
import { PROXY_DESCRIPTION, PROXY_FLAGS, runProxy, type ProxyFlags } from './commands/proxy-flags.js';
import { failAndExit } from './exit.js';

async function main(args: string[]): Promise<void> {
  try {
    const parsed = parseFlags(PROXY_FLAGS, args);
    if (parsed.help) {
      process.stdout.write(formatHelp('meshfed-proxy [options]', PROXY_DESCRIPTION, PROXY_FLAGS));
      return;
    }
    await runProxy(parsed.values as ProxyFlags);
  } catch (err) {
    failAndExit(err);
  }
}

// No top-level await: scripts/bundle-sidecar.ts builds this entry into a
// CommonJS file, which has none (main handles its own errors).
void main(process.argv.slice(2));
