/**
 * What every listener of one proxy shares: the active config (swapped
 * atomically by reference), the TLS identity, telemetry, limits. Handlers
 * read `active()` once per request and keep that reference, so a config
 * swap never changes a request halfway.
 */

import type { Socket } from 'node:net';
import type { Logger } from '../core/log.js';
import type { ClusterRuntime } from './cluster/cluster-runtime.js';
import type { CompiledConfig, InboundPortConfig } from './config/config-types.js';
import type { AccessLog } from './telemetry/access-log.js';
import type { IstioMetrics, PeerLabels } from './telemetry/istio-metrics.js';
import type { OtlpExporter } from './telemetry/otlp-exporter.js';
import type { ProxyStats } from './telemetry/proxy-stats.js';
import type { TlsMaterial } from './tls/tls-material.js';
import type { TlsProvider } from './upstream/upstream-connect.js';
import type { UpstreamPool } from './upstream/upstream-pool.js';

export interface ActiveConfig {
  version: string;
  config: CompiledConfig;
  clusters: ReadonlyMap<string, ClusterRuntime>;
  /** This proxy as metric labels. */
  self: PeerLabels;
  /** `x-meshfed-source` value outbound requests carry (the peer's metrics name us with it). */
  sourceHeader: string;
}

export interface ProxyLimits {
  /** Request bodies up to this size are kept for retries and mirrors. */
  replayLimit: number;
  /** Mirrored requests in flight at most (beyond that mirrors are skipped). */
  maxMirrorsInFlight: number;
}

export interface ProxyContext {
  readonly logger: Logger;
  active(): ActiveConfig | undefined;
  material(): TlsMaterial | undefined;
  readonly tlsProvider: TlsProvider;
  readonly metrics: IstioMetrics;
  readonly stats: ProxyStats;
  readonly accessLog: AccessLog;
  readonly tracer: OtlpExporter | undefined;
  readonly limits: ProxyLimits;
  /** Pool to the local app for an inbound port. */
  appPool(port: InboundPortConfig): UpstreamPool;
  /** Where the app listens (default 127.0.0.1). */
  readonly appHost: string;
  /** True once close() began: new keep-alive requests are told to close. */
  draining(): boolean;
  /** Sockets of open tunnels (TCP, CONNECT, upgrades), cut by a hard stop. */
  readonly tunnels: Set<Socket>;
}
