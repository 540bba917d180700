/** `meshfed global-cp`: run the global control plane (flags, each with an environment variable). */

import { Option, type Command } from 'commander';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import type { GlobalCpOptions } from '../../global-cp/options.js';
import { parseDurationMs, parseHost, parsePort, parseStoreUrl, parseTrustDomain } from '../flags.js';
import { exitOnSignal, explainListenError } from '../signals.js';
import { addRestServerOptions } from '../rest-server-options.js';

interface GlobalCpFlags {
  host?: string;
  port?: number;
  store?: string;
  dataDir: string;
  adminTokenFile?: string;
  caCert?: string;
  caKey?: string;
  trustDomain?: string;
  tlsCert?: string;
  tlsKey?: string;
  maxBodyBytes?: number;
  kdsHost?: string;
  kdsPort?: number;
  zoneGracePeriod?: number;
  kdsDnsNames?: string[];
}

/** Map parsed flags to GlobalCpOptions, leaving unset ones to the server's defaults. */
export function globalCpOptionsFrom(flags: GlobalCpFlags): GlobalCpOptions {
  if ((flags.caCert === undefined) !== (flags.caKey === undefined)) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      '--ca-cert and --ca-key go together: give both or neither',
    );
  }
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      '--tls-cert and --tls-key go together: give both or neither',
    );
  }
  const options: GlobalCpOptions = { dataDir: flags.dataDir };
  if (flags.host !== undefined) options.host = flags.host;
  if (flags.port !== undefined) options.port = flags.port;
  if (flags.store !== undefined) options.storeUrl = flags.store;
  if (flags.adminTokenFile !== undefined) options.adminTokenFile = flags.adminTokenFile;
  if (flags.caCert !== undefined) options.caCertFile = flags.caCert;
  if (flags.caKey !== undefined) options.caKeyFile = flags.caKey;
  if (flags.trustDomain !== undefined) options.trustDomain = flags.trustDomain;
  if (flags.tlsCert !== undefined) options.tlsCertFile = flags.tlsCert;
  if (flags.tlsKey !== undefined) options.tlsKeyFile = flags.tlsKey;
  if (flags.maxBodyBytes !== undefined) options.maxBodyBytes = flags.maxBodyBytes;
  if (flags.kdsHost !== undefined) options.kdsHost = flags.kdsHost;
  if (flags.kdsPort !== undefined) options.kdsPort = flags.kdsPort;
  if (flags.zoneGracePeriod !== undefined) options.zoneGracePeriodMs = flags.zoneGracePeriod;
  if (flags.kdsDnsNames !== undefined && flags.kdsDnsNames.length > 0)
    options.kdsDnsNames = flags.kdsDnsNames;
  return options;
}

/** Register `global-cp` on the root program. */
export function registerGlobalCpCommand(program: Command): void {
  addRestServerOptions(program.command('global-cp'))
    .description('run the global control plane (policy API, trust root, KDS zone sync, dashboard)')
    .addOption(
      new Option('--host <addr>', 'address the API binds to (default 127.0.0.1)')
        .env('MESHFED_GLOBAL_HOST')
        .argParser(parseHost),
    )
    .addOption(
      new Option('--port <port>', 'API port; 0 picks a free one (default 5681)')
        .env('MESHFED_GLOBAL_PORT')
        .argParser(parsePort),
    )
    .addOption(
      new Option(
        '--store <url>',
        'memory://, file:///abs/dir or redis://host:port/db (default: file store under --data-dir)',
      )
        .env('MESHFED_STORE')
        .argParser(parseStoreUrl),
    )
    .addOption(
      new Option('--data-dir <dir>', 'directory for the file store and the admin token')
        .env('MESHFED_DATA_DIR')
        .default('.meshfed/global'),
    )
    .addOption(
      new Option(
        '--admin-token-file <file>',
        'where the admin token is written (default <data-dir>/admin-token)',
      ).env('MESHFED_ADMIN_TOKEN_FILE'),
    )
    .addOption(
      new Option('--ca-cert <file>', 'operator-provided root CA certificate (PEM); needs --ca-key').env(
        'MESHFED_CA_CERT',
      ),
    )
    .addOption(new Option('--ca-key <file>', 'key of --ca-cert (PEM)').env('MESHFED_CA_KEY'))
    .addOption(
      new Option('--trust-domain <domain>', 'trust domain of a new mesh root (default cluster.local)')
        .env('MESHFED_TRUST_DOMAIN')
        .argParser(parseTrustDomain),
    )
    .addOption(
      new Option(
        '--kds-host <addr>',
        'address the KDS server (zone sync, always TLS) binds to (default: --host)',
      )
        .env('MESHFED_KDS_HOST')
        .argParser(parseHost),
    )
    .addOption(
      new Option('--kds-port <port>', 'KDS port; 0 picks a free one (default 5685, or free when --port is 0)')
        .env('MESHFED_KDS_PORT')
        .argParser(parsePort),
    )
    .addOption(
      new Option(
        '--zone-grace-period <duration>',
        "how long a disconnected zone's services stay in other zones' catalogs (default 60s)",
      )
        .env('MESHFED_ZONE_GRACE_PERIOD')
        .argParser(parseDurationMs),
    )
    .addOption(
      new Option('--kds-dns-names <names>', 'extra DNS names for the KDS server certificate, comma-separated')
        .env('MESHFED_KDS_DNS_NAMES')
        .argParser((value: string) =>
          value
            .split(',')
            .map((n) => n.trim())
            .filter((n) => n !== ''),
        ),
    )
    .action(async (flags: GlobalCpFlags) => {
      const options = globalCpOptionsFrom(flags);
      // Loaded here, not at the top: client commands should not pay for the server's modules.
      const { startGlobalCp } = await import('../../global-cp/global-cp.js');
      const handle = await startGlobalCp(options).catch((err: unknown) => {
        throw explainListenError(err, options.host, options.port, '--port or --kds-port');
      });
      exitOnSignal(() => handle.close());
      createLogger('cli').info('global control plane listening', {
        url: handle.url,
        port: handle.port,
        kds: handle.kdsAddress,
        adminTokenFile: handle.adminTokenFile,
      });
    });
}
