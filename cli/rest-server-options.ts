/** Options every meshfed REST server takes (global CP, zone CP): TLS and the body limit. */

import { Option, type Command } from 'commander';
import { parseByteSize } from './flags.js';

/** Adds --tls-cert, --tls-key and --max-body-bytes with their environment variables. */
export function addRestServerOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--tls-cert <file>', 'serve the REST API over TLS with this certificate (PEM)').env(
        'MESHFED_TLS_CERT',
      ),
    )
    .addOption(new Option('--tls-key <file>', 'key of --tls-cert (PEM)').env('MESHFED_TLS_KEY'))
    .addOption(
      new Option('--max-body-bytes <bytes>', 'largest request body, e.g. 4Mi')
        .env('MESHFED_MAX_BODY_BYTES')
        .argParser(parseByteSize),
    );
}
