/**
 * `meshfed token create --kind K [...]` and `meshfed token revoke ID`.
 * Token kinds are a table: a new kind is one entry naming the flags it needs.
 */

import { InvalidArgumentError, Option, type Command } from 'commander';
import { ErrorCodes, MeshError, isMeshError } from '../../core/errors.js';
import { clientFor } from '../connection.js';

/** Flags a token kind may take, by their request-body key. */
type TokenField = 'zone' | 'workload' | 'workloadGroup' | 'uses' | 'namespace' | 'serviceAccount' | 'role';

export interface TokenKindSpec {
  description: string;
  required: TokenField[];
  optional: TokenField[];
  /** Kinds the first server release issues; others are forwarded and may be refused. */
  supportedSince?: 'v1';
}

/** Every token kind the CLI knows. */
export const TOKEN_KINDS: Record<string, TokenKindSpec> = {
  admin: {
    description: 'read-write access to the global API',
    required: [],
    optional: [],
    supportedSince: 'v1',
  },
  readonly: {
    description: 'read-only access to the global API',
    required: [],
    optional: [],
    supportedSince: 'v1',
  },
  zone: {
    description: 'a zone control plane connecting over KDS',
    required: ['zone'],
    optional: [],
    supportedSince: 'v1',
  },
  proxy: {
    description:
      'a sidecar (or, with --role gateway, an east-west gateway) of one workload; ask the zone API',
    required: ['workload'],
    optional: ['zone', 'namespace', 'serviceAccount', 'role'],
  },
  vm: {
    description:
      'a VM joining a workload group of one zone (meshfed vm-agent join); ask the zone API or global; --namespace when the group name is not unique',
    required: ['zone', 'workloadGroup'],
    optional: ['uses', 'namespace'],
    supportedSince: 'v1',
  },
};

const flagOf: Record<TokenField, string> = {
  zone: '--zone',
  workload: '--workload',
  workloadGroup: '--workload-group',
  uses: '--uses',
  namespace: '--namespace',
  serviceAccount: '--service-account',
  role: '--role',
};

interface CreateOptions {
  kind: string;
  name?: string;
  ttl?: string;
  zone?: string;
  workload?: string;
  workloadGroup?: string;
  uses?: number;
  namespace?: string;
  serviceAccount?: string;
  role?: string;
  output?: 'token' | 'json';
}

function parsePositiveInt(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1)
    throw new InvalidArgumentError('expected a positive integer');
  return Number(value);
}

/**
 * The POST /api/v1/tokens body for the flags given, checking the kind's
 * required flags and refusing flags it does not take.
 */
export function tokenRequestBody(opts: CreateOptions): Record<string, unknown> {
  const spec = TOKEN_KINDS[opts.kind];
  if (!spec) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `unknown token kind "${opts.kind}"; one of: ${Object.keys(TOKEN_KINDS).join(', ')}`,
    );
  }
  const body: Record<string, unknown> = { kind: opts.kind };
  if (opts.name !== undefined) body.name = opts.name;
  if (opts.ttl !== undefined) body.ttl = opts.ttl;
  for (const field of Object.keys(flagOf) as TokenField[]) {
    const value = opts[field];
    const allowed = spec.required.includes(field) || spec.optional.includes(field);
    if (value === undefined) {
      if (spec.required.includes(field)) {
        throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `a ${opts.kind} token needs ${flagOf[field]}`);
      }
      continue;
    }
    if (!allowed) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `${flagOf[field]} does not apply to a ${opts.kind} token`,
      );
    }
    body[field] = value;
  }
  return body;
}

/** Register `token create` and `token revoke` on the root program. */
export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('issue and revoke API tokens');

  token
    .command('create')
    .description('issue a token and print it (only the token, for $(...))')
    .addOption(
      new Option(
        '--kind <kind>',
        Object.entries(TOKEN_KINDS)
          .map(([k, s]) => `${k}: ${s.description}`)
          .join('; '),
      )
        .choices(Object.keys(TOKEN_KINDS))
        .makeOptionMandatory(),
    )
    .option('--name <name>', 'a label for the token (shown when listing, logged on use)')
    .option('--ttl <duration>', "lifetime, e.g. 30m, 24h, 7d (default: the server's)")
    .option('--zone <zone>', 'zone the token is bound to (zone, proxy, vm)')
    .option('--workload <name>', 'workload the token is bound to (proxy)')
    .option('--workload-group <name>', 'workload group a VM joins (vm)')
    .option('--uses <n>', 'how many times the token may be used (vm)', parsePositiveInt)
    .option('--namespace <ns>', 'namespace of the workload (proxy; default default)')
    .option('--service-account <name>', 'service account the workload runs as (proxy; default default)')
    .option('--role <role>', 'sidecar (default) or gateway (proxy)')
    .addOption(
      new Option('-o, --output <format>', 'token only, or the whole answer').choices(['token', 'json']),
    )
    .action(async (opts: CreateOptions, command: Command) => {
      const body = tokenRequestBody(opts);
      const { client } = await clientFor(command);
      let answer: unknown;
      try {
        answer = await client.request('POST', '/api/v1/tokens', body);
      } catch (err) {
        const spec = TOKEN_KINDS[opts.kind];
        // Only a refusal of the kind itself means "not here": a zone refusing a bad field says so itself.
        if (
          spec?.supportedSince === undefined &&
          isMeshError(err) &&
          err.details?.httpStatus === 400 &&
          err.field === 'kind'
        ) {
          throw new MeshError(
            err.code,
            `token kind "${opts.kind}" is not supported by this server yet (server said: ${err.message})`,
            { cause: err },
          );
        }
        throw err;
      }
      const issued = typeof answer === 'object' && answer !== null ? (answer as Record<string, unknown>) : {};
      if (opts.output === 'json') {
        process.stdout.write(JSON.stringify(issued, null, 2) + '\n');
        return;
      }
      if (typeof issued.token !== 'string')
        throw new MeshError(ErrorCodes.DECODE, 'the server answered without a token');
      process.stdout.write(issued.token + '\n');
    });

  token
    .command('revoke')
    .description('revoke a token by its id')
    .argument('<id>', 'token id (from `token create -o json`)')
    .action(async (id: string, _opts: unknown, command: Command) => {
      const { client } = await clientFor(command);
      await client.request('DELETE', `/api/v1/tokens/${encodeURIComponent(id)}`);
      process.stdout.write(`token "${id}" revoked\n`);
    });
}
