/**
 * Options of `startProxy`, their defaults (DESIGN.md's ports) and the
 * up-front checks that name the bad option, so a typo fails at start and
 * not on the first request.
 */

import { isIP } from 'node:net';
import { ErrorCodes, MeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { PROCESS_METRICS_SETS, type ProcessMetricsSet } from '../core/process-metrics.js';
import type { AccessLogSink } from './telemetry/access-log.js';
import type { ProxyCredentials } from './tls/tls-material.js';

export interface ProxyPorts {
  /** Outbound listener (apps' HTTP proxy); default 15001; 0 = a free port. */
  outbound?: number;
  /** Inbound mTLS listener; default 15006. */
  inbound?: number;
  /** Admin (loopback only); default 15000. */
  admin?: number;
  /** Prometheus; default 15090. */
  metrics?: number;
}

export interface TcpListenerOption {
  /** Service FQDN or alias, as in the snapshot. */
  service: string;
  /** The service port (a tcp port of the service). */
  port: number;
  /** Local port the app connects to; 0 = a free port. */
  listenPort: number;
}

export interface ZoneCpOptions {
  /** host:port of the zone CP's gRPC server (MDS + CA). */
  address: string;
  /** PEM roots the zone CP's certificate chains to. */
  caPem: string;
  /** Bootstrap proxy token, or a file holding it (re-read at every use, so a rotated file is picked up). */
  token?: string;
  tokenFile?: string;
  /** Requested certificate lifetime; default the CA's (1 h). */
  certTtlSeconds?: number;
}

export interface ProxyLimitsOptions {
  /** Largest request head; default 16 KiB (beyond: 431). */
  maxHeaderBytes?: number;
  /** Time for a client to send its request head; default 10 s (then 408). */
  headersTimeoutMs?: number;
  /** Idle downstream keep-alive connections close after this; default 60 s. */
  keepAliveTimeoutMs?: number;
  /** Request bodies kept for retries and mirrors; default 1 MiB. */
  replayLimit?: number;
  /** How long close() waits for requests in flight; default 10 s. */
  drainTimeoutMs?: number;
  /** Metric series cap; default 5000. */
  maxSeries?: number;
}

export interface ProxyOptions {
  /** Unique per running proxy; default `<workload>.<namespace>-<random>`. */
  proxyId?: string;
  workload?: string;
  namespace?: string;
  ports?: ProxyPorts;
  /** Outbound listener address; default 127.0.0.1 (only local apps use it). */
  outboundHost?: string;
  /** Inbound listener address; default 0.0.0.0 (peers connect to it). */
  inboundHost?: string;
  /** Prometheus listener address; default 0.0.0.0. */
  metricsHost?: string;
  /** Admin listener address; must be a loopback address; default 127.0.0.1. */
  adminHost?: string;
  /** Where the app listens; default 127.0.0.1. */
  appHost?: string;
  tcpListeners?: TcpListenerOption[];
  /** Force the access log on (the snapshot can also turn it on), or send it to a function. */
  accessLog?: boolean;
  accessLogSink?: AccessLogSink;
  /** OTLP/HTTP collector base URL (spans go to <url>/v1/traces); tracing is off without it. */
  otlpEndpoint?: string;
  /** Process metrics on the Prometheus port (core/process-metrics.ts); default `lean`. */
  processMetrics?: ProcessMetricsSet;
  limits?: ProxyLimitsOptions;
  /** Get config and certificates from a zone CP (MDS + CA). */
  zoneCp?: ZoneCpOptions;
  /** A snapshot to start with (no control plane, e.g. benchmarks). */
  snapshot?: unknown;
  /** Static credentials (no CA). */
  credentials?: ProxyCredentials;
  logger?: Logger;
}

export interface ResolvedProxyOptions {
  proxyId: string;
  workload: string;
  namespace: string;
  ports: Required<ProxyPorts>;
  outboundHost: string;
  inboundHost: string;
  metricsHost: string;
  adminHost: string;
  appHost: string;
  tcpListeners: TcpListenerOption[];
  accessLog: boolean;
  processMetrics: ProcessMetricsSet;
  limits: Required<ProxyLimitsOptions>;
}

function bad(message: string): MeshError {
  return new MeshError(ErrorCodes.CONFIG, message);
}

function checkPort(value: number | undefined, name: string, fallback: number): number {
  const port = value ?? fallback;
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw bad(`${name} must be a port number 0-65535, got ${String(value)}`);
  return port;
}

function checkPositive(value: number | undefined, name: string, fallback: number): number {
  const n = value ?? fallback;
  if (!Number.isFinite(n) || n <= 0) throw bad(`${name} must be a positive number, got ${String(value)}`);
  return n;
}

function checkHost(value: string | undefined, name: string, fallback: string): string {
  const host = value ?? fallback;
  if (host === '' || (isIP(host) === 0 && !/^[a-z0-9.-]+$/i.test(host)))
    throw bad(`${name} must be an IP address or host name, got ${JSON.stringify(value)}`);
  return host;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function resolveProxyOptions(options: ProxyOptions): ResolvedProxyOptions {
  const workload = options.workload ?? '';
  const namespace = options.namespace ?? '';
  if (options.zoneCp !== undefined) {
    if (!workload || !namespace) throw bad('workload and namespace are required with a zone control plane');
    if (!/^[^:]+:\d+$|^\[[^\]]+\]:\d+$/.test(options.zoneCp.address))
      throw bad(`zone CP address must be host:port, got ${JSON.stringify(options.zoneCp.address)}`);
    if (!options.zoneCp.caPem.includes('BEGIN CERTIFICATE'))
      throw bad('zone CP CA must be a PEM certificate');
    if (
      options.zoneCp.token === undefined &&
      options.zoneCp.tokenFile === undefined &&
      options.credentials === undefined
    ) {
      throw bad('a zone CP needs a proxy token (or token file) to obtain a certificate');
    }
  }
  const adminHost = options.adminHost ?? '127.0.0.1';
  if (!LOOPBACK.has(adminHost) && !adminHost.startsWith('127.'))
    throw bad(`the admin listener is loopback only; ${adminHost} is not a loopback address`);
  const ports = {
    outbound: checkPort(options.ports?.outbound, 'outbound port', 15001),
    inbound: checkPort(options.ports?.inbound, 'inbound port', 15006),
    admin: checkPort(options.ports?.admin, 'admin port', 15000),
    metrics: checkPort(options.ports?.metrics, 'metrics port', 15090),
  };
  const tcpListeners = options.tcpListeners ?? [];
  tcpListeners.forEach((l, i) => {
    if (!l.service) throw bad(`tcpListeners[${i}].service is required`);
    checkPort(l.port, `tcpListeners[${i}].port`, 0);
    checkPort(l.listenPort, `tcpListeners[${i}].listenPort`, 0);
  });
  if (options.otlpEndpoint !== undefined && !isHttpUrl(options.otlpEndpoint)) {
    throw bad(`otlpEndpoint must be an http(s) URL, got ${JSON.stringify(options.otlpEndpoint)}`);
  }
  const processMetrics = options.processMetrics ?? 'lean';
  if (!PROCESS_METRICS_SETS.includes(processMetrics)) {
    throw bad(
      `processMetrics must be one of ${PROCESS_METRICS_SETS.join(', ')}, got ${JSON.stringify(processMetrics)}`,
    );
  }
  const l = options.limits ?? {};
  return {
    proxyId:
      options.proxyId ??
      `${workload || 'proxy'}.${namespace || 'default'}-${Math.random().toString(36).slice(2, 10)}`,
    workload,
    namespace,
    ports,
    outboundHost: checkHost(options.outboundHost, 'outboundHost', '127.0.0.1'),
    inboundHost: checkHost(options.inboundHost, 'inboundHost', '0.0.0.0'),
    metricsHost: checkHost(options.metricsHost, 'metricsHost', '0.0.0.0'),
    adminHost,
    appHost: checkHost(options.appHost, 'appHost', '127.0.0.1'),
    tcpListeners,
    accessLog: options.accessLog ?? false,
    processMetrics,
    limits: {
      maxHeaderBytes: checkPositive(l.maxHeaderBytes, 'maxHeaderBytes', 16 * 1024),
      headersTimeoutMs: checkPositive(l.headersTimeoutMs, 'headersTimeoutMs', 10_000),
      keepAliveTimeoutMs: checkPositive(l.keepAliveTimeoutMs, 'keepAliveTimeoutMs', 60_000),
      replayLimit: checkPositive(l.replayLimit, 'replayLimit', 1 << 20),
      drainTimeoutMs: checkPositive(l.drainTimeoutMs, 'drainTimeoutMs', 10_000),
      maxSeries: checkPositive(l.maxSeries, 'maxSeries', 5000),
    },
  };
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}
