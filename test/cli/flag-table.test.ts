/**
 * The lean sidecar entry's flag parser (cli/flag-table.ts) over the proxy's
 * flag table: values, environment fallbacks, repeatable and switch flags, and
 * refusals in the same words commander gives `meshfed proxy` for the same
 * input (both parse the one table, commands/proxy-flags.ts).
 */

import { describe, expect, it } from '@jest/globals';
import { Command } from 'commander';
import { PROXY_FLAGS } from '../../cli/commands/proxy-flags.js';
import { registerProxyCommand } from '../../cli/commands/proxy.js';
import { formatHelp, parseFlags } from '../../cli/flag-table.js';
import { ErrorCodes, MeshError } from '../../core/errors.js';

const parse = (args: string[], env: NodeJS.ProcessEnv = {}): Record<string, unknown> =>
  parseFlags(PROXY_FLAGS, args, env).values;

function refusal(args: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    parseFlags(PROXY_FLAGS, args, env);
  } catch (err) {
    expect(err).toBeInstanceOf(MeshError);
    expect((err as MeshError).code).toBe(ErrorCodes.INVALID_ARGUMENT);
    return (err as Error).message;
  }
  throw new Error(`accepted ${args.join(' ')}`);
}

/** What commander says to `meshfed proxy <args>` with `env`, without running the proxy. */
async function commanderRefusal(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const program = new Command('meshfed').exitOverride().configureOutput({ outputError: () => undefined });
  registerProxyCommand(program);
  program.commands[0]?.action(() => undefined);
  const saved = { ...process.env };
  for (const key of Object.keys(process.env)) if (key.startsWith('MESHFED_')) delete process.env[key];
  Object.assign(process.env, env);
  try {
    await program.parseAsync(['node', 'meshfed', 'proxy', ...args]);
  } catch (err) {
    return (err as Error).message.replace(/^error: /, '');
  } finally {
    process.env = saved;
  }
  throw new Error(`commander accepted ${args.join(' ')}`);
}

/** What commander makes of `meshfed proxy <args>` with `env`: the command's option values. */
async function commanderValues(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<Record<string, unknown>> {
  const program = new Command('meshfed').exitOverride().configureOutput({ outputError: () => undefined });
  registerProxyCommand(program);
  let values: Record<string, unknown> = {};
  program.commands[0]?.action((opts: Record<string, unknown>) => {
    values = opts;
  });
  const saved = { ...process.env };
  for (const key of Object.keys(process.env)) if (key.startsWith('MESHFED_')) delete process.env[key];
  Object.assign(process.env, env);
  try {
    await program.parseAsync(['node', 'meshfed', 'proxy', ...args]);
  } finally {
    process.env = saved;
  }
  return values;
}

describe('the lean entry flag parser', () => {
  it('makes of a full command line and its variables exactly what commander makes of them', async () => {
    const args = [
      ...['--workload', 'web', '--namespace=shop', '--proxy-id', '-web-1'],
      ...['--mds-address', '[::1]:5678', '--mds-ca-file', '/ca.pem', '--cert-ttl', '2h'],
      ...['--outbound-port', '15001', '--inbound-port', '0', '--max-header-bytes', '64Ki'],
      ...['--tcp-port', 'db.shop:5432=15432', '--tcp-port', 'cache:6379=16379', '--access-log'],
      ...['--process-metrics', 'full', '--header-timeout', '2s', '--drain-timeout', '1m'],
    ];
    const env = {
      MESHFED_MDS_TOKEN_FILE: '/token',
      MESHFED_PROXY_ADMIN_PORT: '15000',
      MESHFED_PROXY_INBOUND_HOST: '0.0.0.0',
      MESHFED_PROXY_OUTBOUND_PORT: '9999',
    };
    const lean = parse(args, env);
    expect(lean).toEqual(await commanderValues(args, env));
    expect(lean.outboundPort).toBe(15001);
    expect(lean.proxyId).toBe('-web-1');
  });

  it('reads flags in both spellings, each parsed, under commander-style keys', () => {
    expect(
      parse(['--workload', 'web', '--namespace=shop', '--outbound-port', '0', '--max-header-bytes', '32Ki']),
    ).toEqual({ workload: 'web', namespace: 'shop', outboundPort: 0, maxHeaderBytes: 32 * 1024 });
    expect(parse(['--header-timeout', '1500ms', '--mds-address', 'zone-cp.mesh:5678'])).toEqual({
      headerTimeout: 1500,
      mdsAddress: 'zone-cp.mesh:5678',
    });
  });

  it('takes the next argument as a flag`s value even when it starts with a dash, as commander does', () => {
    expect(parse(['--proxy-id', '-a', '--workload', '--help'])).toEqual({
      proxyId: '-a',
      workload: '--help',
    });
    expect(parseFlags(PROXY_FLAGS, ['--workload', '--help']).help).toBe(false);
  });

  it('falls back to each flag`s variable, the flag winning', () => {
    const env = { MESHFED_PROXY_WORKLOAD: 'from-env', MESHFED_PROXY_INBOUND_PORT: '16006' };
    expect(parse([], env)).toEqual({ workload: 'from-env', inboundPort: 16006 });
    expect(parse(['--workload', 'from-flag'], env)).toEqual({ workload: 'from-flag', inboundPort: 16006 });
  });

  it('turns a switch on from the flag or from its variable being set, as commander does', () => {
    expect(parse(['--access-log'])).toEqual({ accessLog: true });
    expect(parse([], { MESHFED_PROXY_ACCESS_LOG: '' })).toEqual({ accessLog: true });
    expect(parse([])).toEqual({});
  });

  it('collects a repeatable flag, and a comma list from its variable', () => {
    expect(parse(['--tcp-port', 'db.shop:5432=15432', '--tcp-port', 'cache:6379=16379'])).toEqual({
      tcpPort: [
        { service: 'db.shop', port: 5432, listenPort: 15432 },
        { service: 'cache', port: 6379, listenPort: 16379 },
      ],
    });
    expect(parse([], { MESHFED_PROXY_TCP_PORTS: 'db.shop:5432=15432, cache:6379=16379' })).toEqual(
      parse(['--tcp-port', 'db.shop:5432=15432', '--tcp-port', 'cache:6379=16379']),
    );
  });

  it('refuses bad values and choices in the words commander uses for `meshfed proxy`', async () => {
    const cases: Array<[string[], NodeJS.ProcessEnv]> = [
      [['--outbound-port', 'many'], {}],
      [[], { MESHFED_PROXY_OUTBOUND_PORT: '70000' }],
      [['--process-metrics', 'everything'], {}],
      [[], { MESHFED_PROXY_PROCESS_METRICS: 'some' }],
      [['--tcp-port', 'db:5432'], {}],
      [['--header-timeout', 'soon'], {}],
      [['--max-header-bytes', 'lots'], {}],
      [['--mds-address', 'no-port'], {}],
      // A value starting with '-' is the flag's value, refused by its parser, not a missing one.
      [['--outbound-port', '-1'], {}],
      // Every occurrence is checked, not only the last.
      [['--outbound-port', 'many', '--outbound-port', '1'], {}],
    ];
    for (const [args, env] of cases) {
      const lean = refusal(args, env);
      expect(lean).toMatch(
        /^option '--[a-z-]+ <[a-zA-Z:=]+>' (argument|value) '.*' (from env '[A-Z_]+' )?is invalid\. /,
      );
      expect(lean).toBe(await commanderRefusal(args, env));
    }
  });

  it('refuses unknown options, missing values, values to switches and positional arguments', () => {
    expect(refusal(['--workloud', 'x'])).toBe("unknown option '--workloud' (Did you mean --workload?)");
    expect(refusal(['--zzz'])).toBe("unknown option '--zzz' (--help lists the flags)");
    expect(refusal(['--workload'])).toMatch(/^option '--workload <name>' argument missing/);
    expect(refusal(['--access-log=yes'])).toBe("option '--access-log' takes no value");
    expect(refusal(['proxy'])).toMatch(/^unexpected argument 'proxy'/);
  });

  it('asks for help with -h or --help, listing every flag with its variable', () => {
    expect(parseFlags(PROXY_FLAGS, ['-h']).help).toBe(true);
    expect(parseFlags(PROXY_FLAGS, ['--workload', 'x', '--help']).help).toBe(true);
    // Help wins over a stray word or an unknown flag, as in commander; not over a bad value, nor after `--`.
    expect(parseFlags(PROXY_FLAGS, ['-h', '--bogus']).help).toBe(true);
    expect(parseFlags(PROXY_FLAGS, ['extra', '--help']).help).toBe(true);
    expect(refusal(['-h', '--outbound-port', 'many'])).toMatch(
      /^option '--outbound-port <port>' argument 'many'/,
    );
    expect(refusal(['--', '-h'])).toMatch(/^unexpected argument '-h'/);
    expect(refusal(['--help=1'])).toBe("option '-h, --help' takes no value");
    const help = formatHelp('meshfed-proxy [options]', 'run a sidecar', PROXY_FLAGS);
    for (const spec of PROXY_FLAGS) {
      expect(help).toContain(spec.flags);
      expect(help).toContain(`env: ${spec.env}`);
    }
    expect(help).toContain('choices: lean, full, off');
  });
});
