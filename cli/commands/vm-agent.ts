/**
 * `meshfed vm-agent join|run|leave|status`: flags only; the work is in
 * vm-agent/ (docs/vm.md). `--token`/`--token-file` are the program's
 * global options, read here as the join token.
 */

import { realpathSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { parseAtLeastSecondMs, parseDurationSeconds, parseHost, parsePort } from '../flags.js';
import { exitOnSignal } from '../signals.js';

const DEFAULT_CONFIG_DIR = '/etc/meshfed';
const DEFAULT_UNIT_DIR = '/etc/systemd/system';

interface JoinFlags {
  zoneCp?: string;
  caFingerprint?: string;
  insecureSkipVerify?: boolean;
  address?: string;
  hostname?: string;
  servicePort?: number;
  labels?: Record<string, string>;
  inboundPort?: number;
  outboundPort?: number;
  adminPort?: number;
  metricsPort?: number;
  certTtl?: number;
  systemd?: boolean;
  systemdDir: string;
  systemdUser?: string;
  configDir: string;
  output?: 'text' | 'json';
}

function parseServicePort(value: string): number {
  const port = parsePort(value);
  if (port === 0)
    throw new InvalidArgumentError('the service port is where the local service listens, 1-65535.');
  return port;
}

/** `k=v,k2=v2`, repeatable. */
function parseLabels(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const out = { ...previous };
  for (const item of value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`expected key=value, got "${item}".`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/** How systemd should start this meshfed: the installed command if it is this one, else node and this CLI. */
function meshfedCommand(): string[] {
  const script = process.argv[1] ?? '';
  let self = script;
  try {
    self = realpathSync(script);
  } catch {
    // keep argv[1]
  }
  try {
    if (realpathSync('/usr/local/bin/meshfed') === self) return ['/usr/local/bin/meshfed'];
  } catch {
    // not installed there
  }
  return [process.execPath, self];
}

async function joinToken(command: Command): Promise<string> {
  const globals = command.optsWithGlobals<{ token?: string; tokenFile?: string }>();
  if (globals.token !== undefined && globals.token !== '') return globals.token;
  if (globals.tokenFile !== undefined) {
    try {
      return (await readFile(globals.tokenFile, 'utf8')).trim();
    } catch (err) {
      throw new MeshError(ErrorCodes.CONFIG, `--token-file ${globals.tokenFile}: ${(err as Error).message}`);
    }
  }
  const fromEnv = process.env.MESHFED_JOIN_TOKEN;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv.trim();
  throw new MeshError(
    ErrorCodes.INVALID_ARGUMENT,
    'join needs a join token: --token <token>, --token-file <file> or MESHFED_JOIN_TOKEN (meshfed token create --kind vm --zone <zone> --workload-group <group>)',
  );
}

function configDirOption(): Option {
  return new Option('--config-dir <dir>', 'where the VM credentials and config live')
    .env('MESHFED_VM_CONFIG_DIR')
    .default(DEFAULT_CONFIG_DIR);
}

/** Register `vm-agent` and its subcommands on the root program. */
export function registerVmAgentCommand(program: Command): void {
  const vm = program
    .command('vm-agent')
    .description('enroll this machine into the mesh and run its sidecar (docs/vm.md)');

  vm.command('join')
    .description(
      'enroll this VM: key generated here, certificate from the zone CA, WorkloadEntry created; the join token comes from --token, --token-file or MESHFED_JOIN_TOKEN',
    )
    .addOption(
      new Option('--zone-cp <url>', "the zone CP's REST API, https://host:5682").env('MESHFED_ZONE_CP'),
    )
    .addOption(
      new Option(
        '--ca-fingerprint <sha256:hex>',
        'pin the mesh root (or zone CA); default: the one the token carries',
      ).env('MESHFED_CA_FINGERPRINT'),
    )
    .option('--insecure-skip-verify', 'trust whatever certificate the zone CP presents (trust on first use)')
    .addOption(
      new Option(
        '--address <ip>',
        'the address the mesh reaches this VM at (default: first non-loopback IPv4)',
      ).argParser(parseHost),
    )
    .option('--hostname <name>', "this VM's name, for operators (default: the host name)")
    .addOption(
      new Option('--service-port <port>', 'where the local service listens').argParser(parseServicePort),
    )
    .addOption(
      new Option('--labels <k=v,...>', 'extra labels of the WorkloadEntry (repeatable)').argParser(
        parseLabels,
      ),
    )
    .addOption(
      new Option('--inbound-port <port>', 'sidecar inbound mTLS port (default 15006)').argParser(parsePort),
    )
    .addOption(
      new Option('--outbound-port <port>', 'sidecar outbound proxy port (default 15001)').argParser(
        parsePort,
      ),
    )
    .addOption(new Option('--admin-port <port>', 'sidecar admin port (default 15000)').argParser(parsePort))
    .addOption(
      new Option('--metrics-port <port>', 'sidecar Prometheus port (default 15090)').argParser(parsePort),
    )
    .addOption(
      new Option(
        '--cert-ttl <duration>',
        "certificate lifetime to ask for (default: the zone's, 1h)",
      ).argParser(parseDurationSeconds),
    )
    .option(
      '--systemd',
      'install the systemd unit (and enable it when systemd runs); default: when systemd runs',
    )
    .option('--no-systemd', 'do not install the systemd unit')
    .option('--systemd-dir <dir>', 'where the unit goes', DEFAULT_UNIT_DIR)
    .option('--systemd-user <user>', 'user the unit runs the agent as (default meshfed)')
    .addOption(configDirOption())
    .addOption(new Option('-o, --output <format>', 'summary text, or JSON').choices(['text', 'json']))
    .action(async (flags: JoinFlags, command: Command) => {
      // An environment variable set but empty (docker-compose's `${VAR:-}`) means "not given".
      if (flags.caFingerprint === '') delete flags.caFingerprint;
      if (flags.zoneCp === '') delete flags.zoneCp;
      if (flags.zoneCp === undefined) {
        throw new MeshError(
          ErrorCodes.INVALID_ARGUMENT,
          "join needs --zone-cp: the zone CP's REST API, https://host:5682",
        );
      }
      const token = await joinToken(command);
      const { joinMesh, joinSummary } = await import('../../vm-agent/index.js');
      const ports = {
        ...(flags.inboundPort === undefined ? {} : { inbound: flags.inboundPort }),
        ...(flags.outboundPort === undefined ? {} : { outbound: flags.outboundPort }),
        ...(flags.adminPort === undefined ? {} : { admin: flags.adminPort }),
        ...(flags.metricsPort === undefined ? {} : { metrics: flags.metricsPort }),
      };
      const result = await joinMesh({
        zoneCp: flags.zoneCp,
        token,
        ...(flags.caFingerprint === undefined ? {} : { caFingerprint: flags.caFingerprint }),
        ...(flags.insecureSkipVerify === true ? { insecureSkipVerify: true } : {}),
        ...(flags.address === undefined ? {} : { address: flags.address }),
        ...(flags.hostname === undefined ? {} : { hostname: flags.hostname }),
        ...(flags.servicePort === undefined ? {} : { servicePort: flags.servicePort }),
        ...(flags.labels === undefined ? {} : { labels: flags.labels }),
        ports,
        ...(flags.certTtl === undefined ? {} : { certTtlSeconds: flags.certTtl }),
        configDir: flags.configDir,
        systemd: flags.systemd === undefined ? 'auto' : flags.systemd ? 'on' : 'off',
        systemdDir: flags.systemdDir,
        ...(flags.systemdUser === undefined ? {} : { systemdUser: flags.systemdUser }),
        command: meshfedCommand(),
      });
      for (const warning of result.warnings) process.stderr.write(warning + '\n');
      if (flags.output === 'json') process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      else process.stdout.write(joinSummary(result) + '\n');
    });

  vm.command('run')
    .description(
      "run this VM's sidecar, renew its certificate, run its probe and heartbeat (what systemd starts)",
    )
    .addOption(configDirOption())
    .addOption(
      new Option(
        '--drain-timeout <duration>',
        'how long stopping waits for requests in flight (default 10s)',
      ).argParser(parseAtLeastSecondMs),
    )
    .action(async (flags: { configDir: string; drainTimeout?: number }) => {
      const { runAgent } = await import('../../vm-agent/index.js');
      const handle = await runAgent({
        configDir: flags.configDir,
        ...(flags.drainTimeout === undefined ? {} : { drainTimeoutMs: flags.drainTimeout }),
      });
      exitOnSignal(() => handle.close());
    });

  vm.command('leave')
    .description(
      'deregister this VM, revoke its certificate, stop and disable the unit, remove the credentials',
    )
    .addOption(configDirOption())
    .option('--systemd-dir <dir>', 'where join put the unit', DEFAULT_UNIT_DIR)
    .option('--no-systemd', 'leave systemd alone')
    .option('--force', 'remove the local credentials even if the zone CP cannot be told')
    .addOption(new Option('-o, --output <format>', 'summary text, or JSON').choices(['text', 'json']))
    .action(
      async (flags: {
        configDir: string;
        systemdDir: string;
        systemd?: boolean;
        force?: boolean;
        output?: string;
      }) => {
        const { leaveMesh, leaveSummary } = await import('../../vm-agent/index.js');
        const result = await leaveMesh({
          configDir: flags.configDir,
          systemdDir: flags.systemdDir,
          noSystemd: flags.systemd === false,
          force: flags.force === true,
        });
        if (flags.output === 'json') process.stdout.write(JSON.stringify(result, null, 2) + '\n');
        else process.stdout.write(leaveSummary(result) + '\n');
      },
    );

  vm.command('status')
    .description('identity, certificate expiry, zone connection and probe state of this VM')
    .addOption(configDirOption())
    .addOption(new Option('-o, --output <format>', 'text, or JSON').choices(['text', 'json']))
    .action(async (flags: { configDir: string; output?: string }) => {
      const { vmStatus, formatStatus } = await import('../../vm-agent/index.js');
      const report = await vmStatus(flags.configDir);
      if (flags.output === 'json') process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      else process.stdout.write(formatStatus(report) + '\n');
    });
}
