/**
 * `meshfed gateway`: run a zone's east-west gateway (flags, each with an
 * environment variable). The table comes from the zone CP over MDS
 * (`--mds-address`, `--mds-ca-file`, `--mds-token-file`) or, for a static
 * gateway, from `--snapshot-file`. SIGTERM/SIGINT drain gracefully.
 */

import { InvalidArgumentError, Option, type Command } from 'commander';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import type { GatewayLimits, GatewayOptions } from '../../eastwest-gateway/index.js';
import { readFlagFile } from '../flag-values.js';
import { parseByteSize, parseDurationMs, parseHost, parseHostPort, parsePort } from '../flags.js';
import { exitOnSignal, explainListenError } from '../signals.js';

interface GatewayFlags {
  host?: string;
  port?: number;
  adminHost?: string;
  adminPort?: number;
  mdsAddress?: string;
  mdsCaFile?: string;
  mdsTokenFile?: string;
  proxyId?: string;
  snapshotFile?: string;
  lbPolicy?: string;
  maxConnections?: number;
  maxConnectionsPerSource?: number;
  helloTimeout?: number;
  idleTimeout?: number;
  connectTimeout?: number;
  connectAttempts?: number;
  drainTimeout?: number;
  maxHelloBytes?: number;
  ejectionBase?: number;
  ejectionMax?: number;
  preconnectIdle?: number;
}

function parseCount(value: string): number {
  const trimmed = value.trim();
  if (!/^\d+$/.test(trimmed) || Number(trimmed) < 1) {
    throw new InvalidArgumentError('expected a positive whole number.');
  }
  return Number(trimmed);
}

/** Map parsed flags to GatewayOptions, leaving unset ones to the gateway's defaults. */
export function gatewayOptionsFrom(flags: GatewayFlags): GatewayOptions {
  const mdsFlags = [flags.mdsAddress, flags.mdsCaFile, flags.mdsTokenFile];
  const mdsGiven = mdsFlags.filter((f) => f !== undefined).length;
  if (mdsGiven !== 0 && mdsGiven !== 3) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      '--mds-address, --mds-ca-file and --mds-token-file go together: give all three or none',
    );
  }
  if (mdsGiven === 0 && flags.snapshotFile === undefined) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      'the gateway needs a routing table: give --mds-address/--mds-ca-file/--mds-token-file (zone CP) or --snapshot-file',
    );
  }
  const options: GatewayOptions = {};
  if (flags.host !== undefined) options.host = flags.host;
  if (flags.port !== undefined) options.port = flags.port;
  if (flags.adminHost !== undefined) options.adminHost = flags.adminHost;
  if (flags.adminPort !== undefined) options.adminPort = flags.adminPort;
  if (flags.lbPolicy !== undefined) options.lbPolicy = flags.lbPolicy;
  if (flags.mdsAddress !== undefined && flags.mdsCaFile !== undefined && flags.mdsTokenFile !== undefined) {
    options.mds = {
      address: flags.mdsAddress,
      caPem: readFlagFile(flags.mdsCaFile, '--mds-ca-file'),
      tokenFile: flags.mdsTokenFile,
      ...(flags.proxyId === undefined ? {} : { proxyId: flags.proxyId }),
    };
  }
  if (flags.snapshotFile !== undefined) {
    const text = readFlagFile(flags.snapshotFile, '--snapshot-file');
    try {
      options.snapshot = JSON.parse(text);
    } catch (err) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `--snapshot-file ${flags.snapshotFile} is not JSON: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  const limits: GatewayLimits = {};
  if (flags.maxConnections !== undefined) limits.maxConnections = flags.maxConnections;
  if (flags.maxConnectionsPerSource !== undefined)
    limits.maxConnectionsPerSource = flags.maxConnectionsPerSource;
  if (flags.helloTimeout !== undefined) limits.helloTimeoutMs = flags.helloTimeout;
  if (flags.idleTimeout !== undefined) limits.idleTimeoutMs = flags.idleTimeout;
  if (flags.connectTimeout !== undefined) limits.connectTimeoutMs = flags.connectTimeout;
  if (flags.connectAttempts !== undefined) limits.connectAttempts = flags.connectAttempts;
  if (flags.drainTimeout !== undefined) limits.drainTimeoutMs = flags.drainTimeout;
  if (flags.maxHelloBytes !== undefined) limits.maxHelloBytes = flags.maxHelloBytes;
  if (flags.ejectionBase !== undefined) limits.baseEjectionMs = flags.ejectionBase;
  if (flags.ejectionMax !== undefined) limits.maxEjectionMs = flags.ejectionMax;
  if (flags.preconnectIdle !== undefined) limits.preconnectIdleMs = flags.preconnectIdle;
  options.limits = limits;
  return options;
}

/** Register `gateway` on the root program. */
export function registerGatewayCommand(program: Command): void {
  const opt = (flags: string, description: string, env: string): Option =>
    new Option(flags, description).env(env);
  program
    .command('gateway')
    .description("run a zone's east-west gateway: mTLS passthrough by SNI on 15443")
    .addOption(
      opt('--host <addr>', 'listener address (default 0.0.0.0)', 'MESHFED_GATEWAY_HOST').argParser(parseHost),
    )
    .addOption(
      opt(
        '--port <port>',
        'listener port; 0 picks a free one (default 15443)',
        'MESHFED_GATEWAY_PORT',
      ).argParser(parsePort),
    )
    .addOption(
      opt(
        '--admin-host <addr>',
        'admin server address: /ready, /metrics, /config_dump (default 127.0.0.1)',
        'MESHFED_GATEWAY_ADMIN_HOST',
      ).argParser(parseHost),
    )
    .addOption(
      opt('--admin-port <port>', 'admin server port (default 15021)', 'MESHFED_GATEWAY_ADMIN_PORT').argParser(
        parsePort,
      ),
    )
    .addOption(
      opt('--mds-address <host:port>', "the zone CP's MDS address", 'MESHFED_GATEWAY_MDS_ADDRESS').argParser(
        parseHostPort,
      ),
    )
    .addOption(
      opt(
        '--mds-ca-file <file>',
        "PEM of the CA the zone CP's certificate chains to",
        'MESHFED_GATEWAY_MDS_CA_FILE',
      ),
    )
    .addOption(
      opt(
        '--mds-token-file <file>',
        "the gateway's token for the zone CP (re-read at each reconnect)",
        'MESHFED_GATEWAY_MDS_TOKEN_FILE',
      ),
    )
    .addOption(
      opt(
        '--proxy-id <id>',
        'stable id of this gateway instance in MDS (default gateway-<host>-<pid>)',
        'MESHFED_GATEWAY_ID',
      ),
    )
    .addOption(
      opt(
        '--snapshot-file <file>',
        'a static GatewaySnapshot (JSON) to route with, instead of or before MDS',
        'MESHFED_GATEWAY_SNAPSHOT_FILE',
      ),
    )
    .addOption(
      opt('--lb-policy <name>', 'least-conn (default) or round-robin', 'MESHFED_GATEWAY_LB_POLICY').choices([
        'least-conn',
        'round-robin',
      ]),
    )
    .addOption(
      opt(
        '--max-connections <n>',
        'open connections in all (default 16384)',
        'MESHFED_GATEWAY_MAX_CONNECTIONS',
      ).argParser(parseCount),
    )
    .addOption(
      opt(
        '--max-connections-per-source <n>',
        'open connections from one source IP (default 1024)',
        'MESHFED_GATEWAY_MAX_CONNECTIONS_PER_SOURCE',
      ).argParser(parseCount),
    )
    .addOption(
      opt(
        '--hello-timeout <duration>',
        'time to receive the ClientHello (default 5s)',
        'MESHFED_GATEWAY_HELLO_TIMEOUT',
      ).argParser(parseDurationMs),
    )
    .addOption(
      opt(
        '--idle-timeout <duration>',
        'close a connection idle this long (default 1h)',
        'MESHFED_GATEWAY_IDLE_TIMEOUT',
      ).argParser(parseDurationMs),
    )
    .addOption(
      opt(
        '--connect-timeout <duration>',
        'per endpoint connect timeout (default 5s)',
        'MESHFED_GATEWAY_CONNECT_TIMEOUT',
      ).argParser(parseDurationMs),
    )
    .addOption(
      opt(
        '--connect-attempts <n>',
        'endpoints tried per connection (default 3)',
        'MESHFED_GATEWAY_CONNECT_ATTEMPTS',
      ).argParser(parseCount),
    )
    .addOption(
      opt(
        '--drain-timeout <duration>',
        'on SIGTERM, how long open connections may finish (default 25s)',
        'MESHFED_GATEWAY_DRAIN_TIMEOUT',
      ).argParser(parseDurationMs),
    )
    .addOption(
      opt(
        '--max-hello-bytes <bytes>',
        'largest ClientHello, e.g. 16Ki (default)',
        'MESHFED_GATEWAY_MAX_HELLO_BYTES',
      ).argParser(parseByteSize),
    )
    .addOption(
      opt(
        '--ejection-base <duration>',
        'first ejection of an endpoint that refused a connect; doubles per repeat (default 1s)',
        'MESHFED_GATEWAY_EJECTION_BASE',
      ).argParser(parseDurationMs),
    )
    .addOption(
      opt(
        '--ejection-max <duration>',
        'longest ejection (default 60s)',
        'MESHFED_GATEWAY_EJECTION_MAX',
      ).argParser(parseDurationMs),
    )
    .addOption(
      opt(
        '--preconnect-idle <duration>',
        'how long a spare connection opened ahead of demand to a busy endpoint waits for a client; 0 turns preconnecting off (default 5s)',
        'MESHFED_GATEWAY_PRECONNECT_IDLE',
      ).argParser(parseDurationMs),
    )
    .action(async (flags: GatewayFlags) => {
      const options = gatewayOptionsFrom(flags);
      // Loaded here, not at the top: client commands should not pay for the gateway's modules.
      const { startGateway } = await import('../../eastwest-gateway/index.js');
      const handle = await startGateway(options).catch((err: unknown) => {
        throw explainListenError(
          err,
          options.host ?? '0.0.0.0',
          options.port ?? 15443,
          '--port or --admin-port',
        );
      });
      exitOnSignal(() => handle.close());
      createLogger('cli').info('east-west gateway running', {
        port: handle.port,
        adminPort: handle.adminPort,
        source: options.mds === undefined ? 'snapshot-file' : 'mds',
      });
    });
}
