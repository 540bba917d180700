/**
 * `meshfed config set-context|use-context|view|current-context|get-contexts|delete-context`:
 * the kubeconfig-like client file.
 */

import path from 'node:path';
import type { Command } from 'commander';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import {
  configPath,
  formatClientConfig,
  loadClientConfig,
  redactClientConfig,
  saveClientConfig,
  upsertContext,
} from '../client-config.js';
import { connectionFlags } from '../connection.js';
import { formatTable } from '../output-table.js';

/** Register the `config` command group on the root program. */
export function registerConfigCommands(program: Command): void {
  const config = program
    .command('config')
    .description(`edit the client config file ($MESHFED_CONFIG or ~/.meshfed/config)`);

  // --server, --token, --token-file and --ca-file are the root program's
  // options (commander parses them anywhere on the line), read here through
  // optsWithGlobals; they are repeated for `--help`.
  config
    .command('set-context')
    .description('create or update a context (the first one becomes current)')
    .argument('<name>', 'context name')
    .option('--server <url>', 'API URL, e.g. https://global.example:5681')
    .option('--token <token>', 'token stored in the file')
    .option('--token-file <file>', 'file the token is read from at each call')
    .option('--ca-file <file>', 'CA certificate (PEM) that signed the server certificate')
    .option('--namespace <ns>', 'default namespace for this context')
    .action(async (name: string, opts: { namespace?: string }, command: Command) => {
      const flags = connectionFlags(command);
      const file = configPath();
      const current = await loadClientConfig(file);
      if (flags.server !== undefined) validateServer(flags.server);
      const { config: next, created } = upsertContext(current, name, {
        ...(flags.server === undefined ? {} : { server: flags.server }),
        ...(flags.token === undefined ? {} : { token: flags.token }),
        ...(flags.tokenFile === undefined ? {} : { tokenFile: path.resolve(flags.tokenFile) }),
        ...(flags.caFile === undefined ? {} : { caFile: path.resolve(flags.caFile) }),
        ...(opts.namespace === undefined ? {} : { namespace: opts.namespace }),
      });
      await saveClientConfig(next, file);
      process.stdout.write(`Context "${name}" ${created ? 'created' : 'modified'}.\n`);
    });

  config
    .command('use-context')
    .description('make a context the current one')
    .argument('<name>', 'context name')
    .action(async (name: string) => {
      const file = configPath();
      const current = await loadClientConfig(file);
      if (!current.contexts.some((c) => c.name === name)) {
        throw new MeshError(ErrorCodes.CONFIG, `no context "${name}" in ${file}`);
      }
      await saveClientConfig({ ...current, currentContext: name }, file);
      process.stdout.write(`Switched to context "${name}".\n`);
    });

  config
    .command('current-context')
    .description('print the current context name')
    .action(async () => {
      const file = configPath();
      const current = await loadClientConfig(file);
      if (!current.currentContext)
        throw new MeshError(ErrorCodes.CONFIG, `no current context set in ${file}`);
      process.stdout.write(current.currentContext + '\n');
    });

  config
    .command('view')
    .description('print the config file, tokens redacted')
    .action(async () => {
      const current = await loadClientConfig(configPath());
      process.stdout.write(formatClientConfig(redactClientConfig(current)));
    });

  config
    .command('get-contexts')
    .description('list contexts; * marks the current one')
    .action(async () => {
      const current = await loadClientConfig(configPath());
      const rows = current.contexts.map((c) => [
        c.name === current.currentContext ? '*' : '',
        c.name,
        c.server,
        c.namespace ?? '',
      ]);
      process.stdout.write(formatTable(['CURRENT', 'NAME', 'SERVER', 'NAMESPACE'], rows));
    });

  config
    .command('delete-context')
    .description('remove a context')
    .argument('<name>', 'context name')
    .action(async (name: string) => {
      const file = configPath();
      const current = await loadClientConfig(file);
      if (!current.contexts.some((c) => c.name === name)) {
        throw new MeshError(ErrorCodes.CONFIG, `no context "${name}" in ${file}`);
      }
      const contexts = current.contexts.filter((c) => c.name !== name);
      const currentContext = current.currentContext === name ? undefined : current.currentContext;
      await saveClientConfig({ ...(currentContext ? { currentContext } : {}), contexts }, file);
      process.stdout.write(`Deleted context "${name}".\n`);
    });
}

function validateServer(server: string): void {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `--server "${server}" is not a URL (expected http(s)://host:port)`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `--server "${server}" must be an http or https URL`);
  }
}
