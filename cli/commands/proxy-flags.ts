/**
 * `meshfed proxy`'s flags as one table (each with its environment variable)
 * and what a run does with them. Both entries read this table: the full CLI
 * through commander (cli/commands/proxy.ts), the lean sidecar entry through
 * cli/flag-table.ts (cli/proxy-main.ts), which does not load commander. Config
 * and certificate come from the zone CP (`--mds-address`, `--mds-ca-file`,
 * `--mds-token-file`) or, for a static proxy (benchmarks, debugging), from
 * `--snapshot-file` with `--cert-file`/`--key-file`/`--trust-bundle-file`.
 * SIGTERM/SIGINT drain gracefully.
 */

import { writeFileSync } from 'node:fs';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { PROCESS_METRICS_SETS, type ProcessMetricsSet } from '../../core/process-metrics.js';
import type { ProxyOptions, TcpListenerOption } from '../../proxy/index.js';
import type { FlagSpec } from '../flag-table.js';
import {
  FlagValueError,
  parseByteSize,
  parseDurationMs,
  parseHost,
  parseHostPort,
  parsePort,
  readFlagFile,
} from '../flag-values.js';
import { exitOnSignal, explainListenError } from '../signals.js';

export interface ProxyFlags {
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

/** `service:port=localPort`, repeatable; the environment variable takes a comma-separated list. */
function parseTcpPorts(value: string, previous: TcpListenerOption[] = []): TcpListenerOption[] {
  const out = [...previous];
  for (const item of value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')) {
    const match = /^([a-z0-9.-]+):(\d{1,5})=(\d{1,5})$/i.exec(item);
    if (!match)
      throw new FlagValueError(`expected service:port=localPort (e.g. db.shop:5432=15432), got "${item}".`);
    const port = Number(match[2]);
    const listenPort = Number(match[3]);
    if (port < 1 || port > 65535 || listenPort > 65535)
      throw new FlagValueError(`ports must be 1-65535 in "${item}".`);
    out.push({ service: (match[1] ?? '').toLowerCase(), port, listenPort });
  }
  return out;
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
      caPem: readFlagFile(flags.mdsCaFile, '--mds-ca-file'),
      ...(flags.mdsTokenFile === undefined ? {} : { tokenFile: flags.mdsTokenFile }),
      ...(flags.certTtl === undefined
        ? {}
        : { certTtlSeconds: Math.max(1, Math.round(flags.certTtl / 1000)) }),
    };
  }
  if (flags.snapshotFile !== undefined) {
    try {
      options.snapshot = JSON.parse(readFlagFile(flags.snapshotFile, '--snapshot-file')) as unknown;
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
      certChainPem: readFlagFile(flags.certFile, '--cert-file'),
      keyPem: readFlagFile(flags.keyFile, '--key-file'),
      trustBundlePem: readFlagFile(flags.trustBundleFile, '--trust-bundle-file'),
    };
  }
  return options;
}

export const PROXY_DESCRIPTION =
  'run a sidecar proxy (outbound 15001, inbound mTLS 15006, admin 15000, metrics 15090)';

/** Every flag of `meshfed proxy`, in the order `--help` lists them. */
export const PROXY_FLAGS: readonly FlagSpec[] = [
  {
    flags: '--workload <name>',
    description: 'workload (Pod or WorkloadEntry) name',
    env: 'MESHFED_PROXY_WORKLOAD',
  },
  {
    flags: '--namespace <ns>',
    description: 'workload namespace',
    env: 'MESHFED_PROXY_NAMESPACE',
  },
  {
    flags: '--proxy-id <id>',
    description: 'unique id of this proxy instance (default <workload>.<namespace>-<random>)',
    env: 'MESHFED_PROXY_ID',
  },
  {
    flags: '--mds-address <host:port>',
    description: 'zone CP gRPC address (MDS + CA)',
    env: 'MESHFED_MDS_ADDRESS',
    parse: parseHostPort,
  },
  {
    flags: '--mds-ca-file <file>',
    description: "PEM CA of the zone CP's certificate",
    env: 'MESHFED_MDS_CA_FILE',
  },
  {
    flags: '--mds-token-file <file>',
    description: 'proxy token for the first certificate (re-read on use)',
    env: 'MESHFED_MDS_TOKEN_FILE',
  },
  {
    flags: '--cert-ttl <duration>',
    description: 'requested certificate lifetime, e.g. 1h',
    env: 'MESHFED_PROXY_CERT_TTL',
    parse: parseDurationMs,
  },
  {
    flags: '--outbound-port <port>',
    description: 'outbound listener; 0 = free (default 15001)',
    env: 'MESHFED_PROXY_OUTBOUND_PORT',
    parse: parsePort,
  },
  {
    flags: '--inbound-port <port>',
    description: 'inbound mTLS listener; 0 = free (default 15006)',
    env: 'MESHFED_PROXY_INBOUND_PORT',
    parse: parsePort,
  },
  {
    flags: '--admin-port <port>',
    description: 'admin (loopback); 0 = free (default 15000)',
    env: 'MESHFED_PROXY_ADMIN_PORT',
    parse: parsePort,
  },
  {
    flags: '--metrics-port <port>',
    description: 'Prometheus; 0 = free (default 15090)',
    env: 'MESHFED_PROXY_METRICS_PORT',
    parse: parsePort,
  },
  {
    flags: '--outbound-host <addr>',
    description: 'outbound listener address (default 127.0.0.1)',
    env: 'MESHFED_PROXY_OUTBOUND_HOST',
    parse: parseHost,
  },
  {
    flags: '--inbound-host <addr>',
    description: 'inbound listener address (default 0.0.0.0)',
    env: 'MESHFED_PROXY_INBOUND_HOST',
    parse: parseHost,
  },
  {
    flags: '--metrics-host <addr>',
    description: 'Prometheus listener address (default 0.0.0.0)',
    env: 'MESHFED_PROXY_METRICS_HOST',
    parse: parseHost,
  },
  {
    flags: '--app-host <addr>',
    description: 'where the app listens (default 127.0.0.1)',
    env: 'MESHFED_PROXY_APP_HOST',
    parse: parseHost,
  },
  {
    flags: '--tcp-port <service:port=localPort>',
    description: 'local TCP listener for a service port, repeatable (env: comma-separated)',
    env: 'MESHFED_PROXY_TCP_PORTS',
    parse: parseTcpPorts,
    repeatable: true,
  },
  {
    flags: '--access-log',
    description: 'write a JSON access log line per request to stdout',
    env: 'MESHFED_PROXY_ACCESS_LOG',
  },
  {
    flags: '--otlp-endpoint <url>',
    description: 'export spans to this OTLP/HTTP collector',
    env: 'MESHFED_OTLP_ENDPOINT',
  },
  {
    flags: '--process-metrics <set>',
    description:
      'process metrics on the Prometheus port: lean (computed when scraped), full (adds the event-loop delay histogram and GC durations, sampled continuously) or off',
    env: 'MESHFED_PROXY_PROCESS_METRICS',
    choices: PROCESS_METRICS_SETS,
  },
  {
    flags: '--snapshot-file <file>',
    description: 'static SidecarSnapshot JSON (no zone CP)',
    env: 'MESHFED_PROXY_SNAPSHOT_FILE',
  },
  {
    flags: '--cert-file <file>',
    description: 'static certificate chain (PEM)',
    env: 'MESHFED_PROXY_CERT_FILE',
  },
  {
    flags: '--key-file <file>',
    description: 'key of --cert-file (PEM)',
    env: 'MESHFED_PROXY_KEY_FILE',
  },
  {
    flags: '--trust-bundle-file <file>',
    description: 'roots to trust (PEM)',
    env: 'MESHFED_PROXY_TRUST_BUNDLE_FILE',
  },
  {
    flags: '--max-header-bytes <bytes>',
    description: 'largest request head (default 16Ki)',
    env: 'MESHFED_PROXY_MAX_HEADER_BYTES',
    parse: parseByteSize,
  },
  {
    flags: '--header-timeout <duration>',
    description: 'time for a client to send its request head (default 10s)',
    env: 'MESHFED_PROXY_HEADER_TIMEOUT',
    parse: parseDurationMs,
  },
  {
    flags: '--drain-timeout <duration>',
    description: 'how long shutdown waits for requests in flight (default 10s)',
    env: 'MESHFED_PROXY_DRAIN_TIMEOUT',
    parse: parseDurationMs,
  },
  {
    flags: '--ports-file <file>',
    description: 'write the bound ports as JSON here once listening',
    env: 'MESHFED_PROXY_PORTS_FILE',
  },
];

/** Start the proxy the flags describe, drain it on SIGTERM/SIGINT, and write --ports-file once listening. */
export async function runProxy(flags: ProxyFlags): Promise<void> {
  const options = proxyOptionsFrom(flags);
  // Loaded here, not at the top: `meshfed` commands other than proxy should not pay for the proxy's modules.
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
}
