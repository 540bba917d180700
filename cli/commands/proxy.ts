/**
 * `meshfed proxy`: run a sidecar (flags, each with an environment
 * variable). Config and certificate come from the zone CP (`--mds-address`,
 * `--mds-ca-file`, `--mds-token-file`) or, for a static proxy (benchmarks,
 * debugging), from `--snapshot-file` with `--cert-file`/`--key-file`/
 * `--trust-bundle-file`. SIGTERM/SIGINT drain gracefully.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { PROCESS_METRICS_SETS, type ProcessMetricsSet } from '../../core/process-metrics.js';
import { parseDuration } from '../../core/resource/duration.js';
import type { ProxyOptions, TcpListenerOption } from '../../proxy/index.js';
import { parseByteSize, parseHost, parsePort } from '../flags.js';
import { exitOnSignal, explainListenError } from '../signals.js';

interface ProxyFlags {
  workload?: string;
  namespace?: string;
  proxyId?: string;
  mdsAddress?: string;
  mdsCaFile?: string;
  mdsTokenFile?: string;
  certTtl?: number;
  outboundPort?: number;
  inboundPort?: number;
  adminPort?: number;
  metricsPort?: number;
  outboundHost?: string;
  inboundHost?: string;
  metricsHost?: string;
  appHost?: string;
  tcpPort?: TcpListenerOption[];
  accessLog?: boolean;
  otlpEndpoint?: string;
  processMetrics?: ProcessMetricsSet;
  snapshotFile?: string;
  certFile?: string;
  keyFile?: string;
  trustBundleFile?: string;
  maxHeaderBytes?: number;
  headerTimeout?: number;
  drainTimeout?: number;
  portsFile?: string;
}

function parseMs(value: string): number {
  try {
    return Math.round(parseDuration(value.trim()));
  } catch {
    throw new InvalidArgumentError('expected a duration such as 500ms, 5s or 1h.');
  }
}

function parseAddress(value: string): string {
  const trimmed = value.trim();
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(trimmed)) {
    throw new InvalidArgumentError('expected host:port, e.g. 10.0.0.5:5678.');
  }
  return trimmed;
}

/** `service:port=localPort`, repeatable; the environment variable takes a comma-separated list. */
function parseTcpPorts(value: string, previous: TcpListenerOption[] = []): TcpListenerOption[] {
  const out = [...previous];
  for (const item of value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')) {
    const match = /^([a-z0-9.-]+):(\d{1,5})=(\d{1,5})$/i.exec(item);
    if (!match)
      throw new InvalidArgumentError(
        `expected service:port=localPort (e.g. db.shop:5432=15432), got "${item}".`,
      );
    const port = Number(match[2]);
    const listenPort = Number(match[3]);
    if (port < 1 || port > 65535 || listenPort > 65535)
      throw new InvalidArgumentError(`ports must be 1-65535 in "${item}".`);
    out.push({ service: (match[1] ?? '').toLowerCase(), port, listenPort });
  }
  return out;
}

function readFile(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new MeshError(ErrorCodes.CONFIG, `${flag} ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Map parsed flags to ProxyOptions, leaving unset ones to the proxy's defaults. */
export function proxyOptionsFrom(flags: ProxyFlags): ProxyOptions {
  const mds = [flags.mdsAddress, flags.mdsCaFile].filter((f) => f !== undefined).length;
  if (mds === 1)
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, '--mds-address and --mds-ca-file go together');
  const staticCreds = [flags.certFile, flags.keyFile, flags.trustBundleFile].filter(
    (f) => f !== undefined,
  ).length;
  if (staticCreds !== 0 && staticCreds !== 3) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      '--cert-file, --key-file and --trust-bundle-file go together',
    );
  }
  if (mds === 0 && flags.snapshotFile === undefined) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      'give --mds-address with --mds-ca-file and --mds-token-file, or a static --snapshot-file',
    );
  }
  if (mds === 0 && staticCreds === 0) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      'without a zone CP the proxy needs --cert-file, --key-file and --trust-bundle-file',
    );
  }
  if (mds === 2 && flags.mdsTokenFile === undefined && staticCreds === 0) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      '--mds-token-file is needed to get a certificate from the zone CA',
    );
  }
  const options: ProxyOptions = {
    ports: {
      ...(flags.outboundPort === undefined ? {} : { outbound: flags.outboundPort }),
      ...(flags.inboundPort === undefined ? {} : { inbound: flags.inboundPort }),
      ...(flags.adminPort === undefined ? {} : { admin: flags.adminPort }),
      ...(flags.metricsPort === undefined ? {} : { metrics: flags.metricsPort }),
    },
    limits: {
      ...(flags.maxHeaderBytes === undefined ? {} : { maxHeaderBytes: flags.maxHeaderBytes }),
      ...(flags.headerTimeout === undefined ? {} : { headersTimeoutMs: flags.headerTimeout }),
      ...(flags.drainTimeout === undefined ? {} : { drainTimeoutMs: flags.drainTimeout }),
    },
  };
  if (flags.workload !== undefined) options.workload = flags.workload;
  if (flags.namespace !== undefined) options.namespace = flags.namespace;
  if (flags.proxyId !== undefined) options.proxyId = flags.proxyId;
  if (flags.outboundHost !== undefined) options.outboundHost = flags.outboundHost;
  if (flags.inboundHost !== undefined) options.inboundHost = flags.inboundHost;
  if (flags.metricsHost !== undefined) options.metricsHost = flags.metricsHost;
  if (flags.appHost !== undefined) options.appHost = flags.appHost;
  if (flags.tcpPort !== undefined) options.tcpListeners = flags.tcpPort;
  if (flags.accessLog !== undefined) options.accessLog = flags.accessLog;
  if (flags.otlpEndpoint !== undefined) options.otlpEndpoint = flags.otlpEndpoint;
  if (flags.processMetrics !== undefined) options.processMetrics = flags.processMetrics;
  if (flags.mdsAddress !== undefined && flags.mdsCaFile !== undefined) {
    options.zoneCp = {
      address: flags.mdsAddress,
      caPem: readFile(flags.mdsCaFile, '--mds-ca-file'),
      ...(flags.mdsTokenFile === undefined ? {} : { tokenFile: flags.mdsTokenFile }),
      ...(flags.certTtl === undefined
        ? {}
        : { certTtlSeconds: Math.max(1, Math.round(flags.certTtl / 1000)) }),
    };
  }
  if (flags.snapshotFile !== undefined) {
    try {
      options.snapshot = JSON.parse(readFile(flags.snapshotFile, '--snapshot-file')) as unknown;
    } catch (err) {
      if (err instanceof MeshError) throw err;
      throw new MeshError(
        ErrorCodes.CONFIG,
        `--snapshot-file ${flags.snapshotFile} is not JSON: ${(err as Error).message}`,
      );
    }
  }
  if (flags.certFile !== undefined && flags.keyFile !== undefined && flags.trustBundleFile !== undefined) {
    options.credentials = {
      certChainPem: readFile(flags.certFile, '--cert-file'),
      keyPem: readFile(flags.keyFile, '--key-file'),
      trustBundlePem: readFile(flags.trustBundleFile, '--trust-bundle-file'),
    };
  }
  return options;
}

/** Register `proxy` on the root program. */
export function registerProxyCommand(program: Command): void {
  program
    .command('proxy')
    .description('run a sidecar proxy (outbound 15001, inbound mTLS 15006, admin 15000, metrics 15090)')
    .addOption(
      new Option('--workload <name>', 'workload (Pod or WorkloadEntry) name').env('MESHFED_PROXY_WORKLOAD'),
    )
    .addOption(new Option('--namespace <ns>', 'workload namespace').env('MESHFED_PROXY_NAMESPACE'))
    .addOption(
      new Option(
        '--proxy-id <id>',
        'unique id of this proxy instance (default <workload>.<namespace>-<random>)',
      ).env('MESHFED_PROXY_ID'),
    )
    .addOption(
      new Option('--mds-address <host:port>', 'zone CP gRPC address (MDS + CA)')
        .env('MESHFED_MDS_ADDRESS')
        .argParser(parseAddress),
    )
    .addOption(
      new Option('--mds-ca-file <file>', "PEM CA of the zone CP's certificate").env('MESHFED_MDS_CA_FILE'),
    )
    .addOption(
      new Option('--mds-token-file <file>', 'proxy token for the first certificate (re-read on use)').env(
        'MESHFED_MDS_TOKEN_FILE',
      ),
    )
    .addOption(
      new Option('--cert-ttl <duration>', 'requested certificate lifetime, e.g. 1h')
        .env('MESHFED_PROXY_CERT_TTL')
        .argParser(parseMs),
    )
    .addOption(
      new Option('--outbound-port <port>', 'outbound listener; 0 = free (default 15001)')
        .env('MESHFED_PROXY_OUTBOUND_PORT')
        .argParser(parsePort),
    )
    .addOption(
      new Option('--inbound-port <port>', 'inbound mTLS listener; 0 = free (default 15006)')
        .env('MESHFED_PROXY_INBOUND_PORT')
        .argParser(parsePort),
    )
    .addOption(
      new Option('--admin-port <port>', 'admin (loopback); 0 = free (default 15000)')
        .env('MESHFED_PROXY_ADMIN_PORT')
        .argParser(parsePort),
    )
    .addOption(
      new Option('--metrics-port <port>', 'Prometheus; 0 = free (default 15090)')
        .env('MESHFED_PROXY_METRICS_PORT')
        .argParser(parsePort),
    )
    .addOption(
      new Option('--outbound-host <addr>', 'outbound listener address (default 127.0.0.1)')
        .env('MESHFED_PROXY_OUTBOUND_HOST')
        .argParser(parseHost),
    )
    .addOption(
      new Option('--inbound-host <addr>', 'inbound listener address (default 0.0.0.0)')
        .env('MESHFED_PROXY_INBOUND_HOST')
        .argParser(parseHost),
    )
    .addOption(
      new Option('--metrics-host <addr>', 'Prometheus listener address (default 0.0.0.0)')
        .env('MESHFED_PROXY_METRICS_HOST')
        .argParser(parseHost),
    )
    .addOption(
      new Option('--app-host <addr>', 'where the app listens (default 127.0.0.1)')
        .env('MESHFED_PROXY_APP_HOST')
        .argParser(parseHost),
    )
    .addOption(
      new Option(
        '--tcp-port <service:port=localPort>',
        'local TCP listener for a service port, repeatable (env: comma-separated)',
      )
        .env('MESHFED_PROXY_TCP_PORTS')
        .argParser(parseTcpPorts),
    )
    .addOption(
      new Option('--access-log', 'write a JSON access log line per request to stdout').env(
        'MESHFED_PROXY_ACCESS_LOG',
      ),
    )
    .addOption(
      new Option('--otlp-endpoint <url>', 'export spans to this OTLP/HTTP collector').env(
        'MESHFED_OTLP_ENDPOINT',
      ),
    )
    .addOption(
      new Option(
        '--process-metrics <set>',
        'process metrics on the Prometheus port: lean (computed when scraped), full (adds the event-loop delay histogram and GC durations, sampled continuously) or off',
      )
        .choices(PROCESS_METRICS_SETS)
        .env('MESHFED_PROXY_PROCESS_METRICS'),
    )
    .addOption(
      new Option('--snapshot-file <file>', 'static SidecarSnapshot JSON (no zone CP)').env(
        'MESHFED_PROXY_SNAPSHOT_FILE',
      ),
    )
    .addOption(
      new Option('--cert-file <file>', 'static certificate chain (PEM)').env('MESHFED_PROXY_CERT_FILE'),
    )
    .addOption(new Option('--key-file <file>', 'key of --cert-file (PEM)').env('MESHFED_PROXY_KEY_FILE'))
    .addOption(
      new Option('--trust-bundle-file <file>', 'roots to trust (PEM)').env('MESHFED_PROXY_TRUST_BUNDLE_FILE'),
    )
    .addOption(
      new Option('--max-header-bytes <bytes>', 'largest request head (default 16Ki)')
        .env('MESHFED_PROXY_MAX_HEADER_BYTES')
        .argParser(parseByteSize),
    )
    .addOption(
      new Option('--header-timeout <duration>', 'time for a client to send its request head (default 10s)')
        .env('MESHFED_PROXY_HEADER_TIMEOUT')
        .argParser(parseMs),
    )
    .addOption(
      new Option('--drain-timeout <duration>', 'how long shutdown waits for requests in flight (default 10s)')
        .env('MESHFED_PROXY_DRAIN_TIMEOUT')
        .argParser(parseMs),
    )
    .addOption(
      new Option('--ports-file <file>', 'write the bound ports as JSON here once listening').env(
        'MESHFED_PROXY_PORTS_FILE',
      ),
    )
    .action(async (flags: ProxyFlags) => {
      const options = proxyOptionsFrom(flags);
      // Loaded here, not at the top: client commands should not pay for the proxy's modules.
      const { startProxy } = await import('../../proxy/index.js');
      const handle = await startProxy(options).catch((err: unknown) => {
        throw explainListenError(
          err,
          options.outboundHost,
          options.ports?.outbound ?? 15001,
          '--outbound-port, --inbound-port, --admin-port or --metrics-port',
        );
      });
      exitOnSignal(() => handle.close());
      if (flags.portsFile !== undefined)
        writeFileSync(flags.portsFile, JSON.stringify({ proxyId: handle.proxyId, ...handle.ports }) + '\n');
      createLogger('cli').info('proxy running', { proxyId: handle.proxyId, ports: handle.ports });
    });
}
