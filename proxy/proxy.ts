/**
 * The sidecar: listeners, the active config and the TLS identity, wired
 * together. A snapshot is compiled first (any error rejects it whole and
 * the last good config keeps serving), then cluster runtimes are updated in
 * place and the active config swapped by reference: requests in flight
 * finish on the config they started with, new ones see the new one.
 */

import http from 'node:http';
import net from 'node:net';
import { createRegistry, type Registry } from '../core/metrics.js';
import { createLogger, type Logger } from '../core/log.js';
import { ErrorCodes, MeshError, isMeshError } from '../core/errors.js';
import { formatIsoTime } from '../core/utc-format.js';
import type { ReceivedSnapshot } from '../core/mds/mds-client.js';
import { SIDECAR_SNAPSHOT_TYPE } from '../core/mesh/snapshot.js';
import { createAdminServer, type AdminSource } from './admin/admin-server.js';
import { createMetricsServer } from './admin/metrics-server.js';
import { ClusterManager, DEFAULT_PLAINTEXT_IDLE_MS, type ClusterRuntime } from './cluster/cluster-runtime.js';
import { compileSnapshot } from './config/config-compile.js';
import type { CompiledConfig, InboundPortConfig } from './config/config-types.js';
import { listenOn } from './http/http-servers.js';
import { InboundListener } from './inbound/inbound-listener.js';
import { formatSourceHeader } from './inbound/inbound-conn.js';
import { localityOfLabels } from './lb/lb-locality.js';
import { OutboundListener } from './outbound/outbound-listener.js';
import { proxyTcp } from './outbound/outbound-tcp.js';
import { findService } from './outbound/outbound-target.js';
import type { ActiveConfig, ProxyContext, ProxyLimits } from './proxy-context.js';
import { resolveProxyOptions, type ProxyOptions, type ResolvedProxyOptions } from './proxy-options.js';
import { AccessLog } from './telemetry/access-log.js';
import { IstioMetrics, type PeerLabels } from './telemetry/istio-metrics.js';
import { OtlpExporter } from './telemetry/otlp-exporter.js';
import { ProxyStats } from './telemetry/proxy-stats.js';
import { TlsMaterial, type ProxyCredentials } from './tls/tls-material.js';
import { SessionCache, type TlsProvider } from './upstream/upstream-connect.js';
import { createPool, type UpstreamPool } from './upstream/upstream-pool.js';

export interface BoundPorts {
  outbound: number;
  inbound: number;
  admin: number;
  metrics: number;
  /** Per-service TCP listeners: `<service>:<port>` → local port. */
  tcp: Record<string, number>;
}

function selfLabels(config: CompiledConfig): PeerLabels {
  const p = config.proxy;
  const app = p.labels.app ?? p.labels['app.kubernetes.io/name'] ?? p.canonicalService;
  const version = p.labels.version ?? p.labels['app.kubernetes.io/version'] ?? 'unknown';
  return {
    workload: p.workload,
    workload_namespace: p.namespace,
    principal: p.spiffeId,
    app,
    version,
    canonical_service: p.canonicalService,
    canonical_revision:
      p.labels['service.istio.io/canonical-revision'] ?? (version === 'unknown' ? 'latest' : version),
    cluster: p.zone || 'unknown',
  };
}

export class SidecarProxy implements ProxyContext, AdminSource {
  readonly logger: Logger;
  readonly options: ResolvedProxyOptions;
  readonly registry: Registry;
  readonly metrics: IstioMetrics;
  readonly stats: ProxyStats;
  readonly accessLog: AccessLog;
  readonly tracer: OtlpExporter | undefined;
  readonly limits: ProxyLimits;
  readonly tlsProvider: TlsProvider;
  readonly appHost: string;
  readonly tunnels = new Set<net.Socket>();
  readonly #clusters: ClusterManager;
  readonly #appPools = new Map<string, UpstreamPool>();
  #active: ActiveConfig | undefined;
  #material: TlsMaterial | undefined;
  #credentials: ProxyCredentials | undefined;
  #lastError: { version: string; error: string; at: string } | undefined;
  #appliedAt = '';
  #draining = false;
  #closed = false;
  readonly #outbound: OutboundListener;
  readonly #inbound: InboundListener;
  readonly #admin: http.Server;
  readonly #metricsServer: http.Server;
  readonly #tcpServers: Array<{ key: string; server: net.Server }> = [];
  readonly ports: BoundPorts = { outbound: 0, inbound: 0, admin: 0, metrics: 0, tcp: {} };

  constructor(options: ProxyOptions) {
    this.options = resolveProxyOptions(options);
    this.logger = options.logger ?? createLogger('proxy');
    this.appHost = this.options.appHost;
    this.registry = createRegistry('proxy', this.options.processMetrics);
    this.metrics = new IstioMetrics(this.registry, this.options.limits.maxSeries);
    this.stats = new ProxyStats(this.registry, () => this.#ejections());
    this.accessLog = new AccessLog(this.options.accessLog, options.accessLogSink);
    this.tracer =
      options.otlpEndpoint === undefined
        ? undefined
        : new OtlpExporter(options.otlpEndpoint, this.options.workload || 'meshfed-proxy', this.logger);
    this.limits = { replayLimit: this.options.limits.replayLimit, maxMirrorsInFlight: 1024 };
    const sessions = new SessionCache();
    this.tlsProvider = { material: () => this.#material, sessions };
    this.#clusters = new ClusterManager(this.tlsProvider);
    const httpLimits = {
      maxHeaderBytes: this.options.limits.maxHeaderBytes,
      headersTimeoutMs: this.options.limits.headersTimeoutMs,
      keepAliveTimeoutMs: this.options.limits.keepAliveTimeoutMs,
    };
    this.#outbound = new OutboundListener(this, httpLimits);
    this.#inbound = new InboundListener(this, httpLimits);
    this.#admin = createAdminServer(this);
    this.#metricsServer = createMetricsServer(this.registry);
  }

  active(): ActiveConfig | undefined {
    return this.#active;
  }

  material(): TlsMaterial | undefined {
    return this.#material;
  }

  draining(): boolean {
    return this.#draining;
  }

  get version(): string {
    return this.#active?.version ?? '';
  }

  async listen(): Promise<void> {
    const o = this.options;
    this.ports.admin = await listenOn(this.#admin, o.ports.admin, o.adminHost);
    this.ports.metrics = await listenOn(this.#metricsServer, o.ports.metrics, o.metricsHost);
    this.ports.inbound = await this.#inbound.listen(o.ports.inbound, o.inboundHost);
    this.ports.outbound = await this.#outbound.listen(o.ports.outbound, o.outboundHost);
    for (const l of o.tcpListeners) {
      const key = `${l.service}:${l.port}`;
      const server = net.createServer({ noDelay: true }, (socket) => {
        this.tunnels.add(socket);
        socket.once('close', () => this.tunnels.delete(socket));
        this.#tcpConnection(l.service, l.port, socket);
      });
      this.ports.tcp[key] = await listenOn(server, l.listenPort, o.outboundHost);
      this.#tcpServers.push({ key, server });
    }
  }

  #tcpConnection(serviceName: string, port: number, socket: net.Socket): void {
    const active = this.#active;
    const service =
      active === undefined ? undefined : findService(active.config.outbound, serviceName.toLowerCase());
    if (active === undefined || service === undefined || !service.portMap.has(port)) {
      this.stats.downstreamErrors.inc({ reason: 'tcp_no_route' });
      socket.destroy();
      return;
    }
    proxyTcp(this, active, service, port, socket, undefined);
  }

  /**
   * Validates, compiles and activates a snapshot.
   * @throws MeshError VALIDATION (or PKI, when its trust roots do not fit the credentials); the previous config stays active.
   */
  applySnapshot(json: unknown, version?: string): void {
    if (this.#closed) throw new MeshError(ErrorCodes.CLOSED, 'proxy is closed');
    const v = version ?? `local-${Date.now()}`;
    let compiled: CompiledConfig;
    let material = this.#material;
    try {
      compiled = compileSnapshot(json);
      if (this.#credentials !== undefined && !sameRoots(material, compiled.roots)) {
        material = TlsMaterial.load(this.#credentials, compiled.roots);
      }
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.noteRejected(v, message);
      throw isMeshError(err) ? err : new MeshError(ErrorCodes.VALIDATION, message, { cause: err });
    }
    if (material !== this.#material && material !== undefined) this.#useMaterial(material);
    const proxy = compiled.proxy;
    this.#clusters.apply(compiled.clusters, {
      zone: proxy.zone,
      locality: localityOfLabels(proxy.labels),
      labels: proxy.labels,
    });
    const self = selfLabels(compiled);
    const previous = this.#active;
    this.#active = {
      version: v,
      config: compiled,
      clusters: new Map(this.#clusters.clusters),
      self: previous !== undefined && sameLabels(previous.self, self) ? previous.self : self,
      sourceHeader: formatSourceHeader(self),
    };
    this.accessLog.enabled = this.options.accessLog || compiled.accessLog;
    this.#appliedAt = formatIsoTime();
    this.#pruneAppPools(compiled.inbound.ports);
    this.stats.configUpdates.inc({ result: 'applied' });
    this.logger.info('snapshot applied', {
      version: v,
      services: compiled.outbound.services.length,
      clusters: compiled.clusters.length,
    });
  }

  /**
   * Applies a snapshot as MDS delivers it (the sidecar bundle's control
   * plane link and the VM agent's). One of another kind, a gateway's, is
   * refused by name before it is compiled.
   * @throws MeshError VALIDATION, as applySnapshot.
   */
  applyReceived(snapshot: ReceivedSnapshot): void {
    if (snapshot.type !== SIDECAR_SNAPSHOT_TYPE) {
      throw new MeshError(
        ErrorCodes.VALIDATION,
        `a sidecar takes ${SIDECAR_SNAPSHOT_TYPE} snapshots, not ${snapshot.type}`,
      );
    }
    this.applySnapshot(snapshot.json, snapshot.version);
  }

  /** Records a refused snapshot (also ones refused before reaching applySnapshot: bad JSON, wrong type). Counted once per version. */
  noteRejected(version: string, error: string): void {
    if (this.#lastError?.version === version && this.#lastError.error === error) return;
    this.stats.configUpdates.inc({ result: 'rejected' });
    this.#lastError = { version, error, at: formatIsoTime() };
    this.logger.warn('snapshot rejected; keeping the last good config', { version, error });
  }

  /**
   * Installs a certificate chain and key. New connections use them at once;
   * open ones keep the old until they close.
   * @throws MeshError PKI naming what is wrong.
   */
  setCredentials(credentials: ProxyCredentials): void {
    if (this.#closed) throw new MeshError(ErrorCodes.CLOSED, 'proxy is closed');
    const material = TlsMaterial.load(credentials, this.#active?.config.roots ?? []);
    this.#credentials = credentials;
    this.#useMaterial(material);
    this.logger.info('workload certificate installed', {
      spiffeId: material.spiffeId,
      notAfter: formatIsoTime(material.notAfter.getTime()),
    });
  }

  #useMaterial(material: TlsMaterial): void {
    this.#material = material;
    this.#inbound.setSecureContext(material.serverOptions);
    // Sessions resumed across a rotation would carry the old identity.
    this.tlsProvider.sessions.clear();
    this.stats.certExpiry.set(Math.floor(material.notAfter.getTime() / 1000));
  }

  appPool(port: InboundPortConfig): UpstreamPool {
    const h2 = port.protocol === 'http2' || port.protocol === 'grpc';
    const key = `${port.targetPort}|${h2 ? 'h2' : 'h1'}`;
    let pool = this.#appPools.get(key);
    if (pool === undefined) {
      pool = createPool(
        {
          address: this.appHost,
          port: port.targetPort,
          tls: false,
          sni: '',
          alpn: [],
          identities: [],
          connectTimeoutMs: 5000,
          h2,
          maxRequestsPerConnection: 0,
          idleTimeoutMs: DEFAULT_PLAINTEXT_IDLE_MS,
          maxConnections: 4_294_967_295,
        },
        undefined,
      );
      this.#appPools.set(key, pool);
    }
    return pool;
  }

  #pruneAppPools(ports: readonly InboundPortConfig[]): void {
    const keep = new Set(
      ports.map((p) => `${p.targetPort}|${p.protocol === 'http2' || p.protocol === 'grpc' ? 'h2' : 'h1'}`),
    );
    for (const [key, pool] of this.#appPools) {
      if (!keep.has(key)) {
        pool.close();
        this.#appPools.delete(key);
      }
    }
  }

  #ejections(): Array<{ cluster: string; active: number; total: number }> {
    const out: Array<{ cluster: string; active: number; total: number }> = [];
    for (const c of this.#clusters.clusters.values()) {
      const total = c.ejectionsTotal;
      if (total === 0) continue;
      out.push({ cluster: c.name, active: c.endpoints.filter((e) => e.ejected).length, total });
    }
    return out;
  }

  notReadyReason(): string | undefined {
    if (this.#closed) return 'shutting down';
    if (this.#draining) return 'draining';
    if (this.#active === undefined) return 'no configuration from the control plane yet';
    if (this.#material === undefined) return 'no workload certificate yet';
    return undefined;
  }

  configDump(): unknown {
    return {
      version: this.#active?.version ?? '',
      appliedAt: this.#appliedAt,
      lastRejected: this.#lastError ?? null,
      snapshot: this.#active?.config.snapshot ?? null,
    };
  }

  clusters(): unknown {
    return [...this.#clusters.clusters.values()].map((c) => clusterSummary(c));
  }

  statsJson(): Record<string, number> {
    const stats: Record<string, number> = {
      'downstream_rq_active.inbound': this.stats.active.inbound,
      'downstream_rq_active.outbound': this.stats.active.outbound,
      'metrics.series': this.metrics.seriesCount,
      'metrics.series_overflowed': this.metrics.overflowed,
      'tls.session_cache_entries': this.tlsProvider.sessions.size,
    };
    const mem = process.memoryUsage();
    stats['server.memory_rss_bytes'] = mem.rss;
    stats['server.memory_heap_total_bytes'] = mem.heapTotal;
    stats['server.memory_heap_used_bytes'] = mem.heapUsed;
    stats['server.memory_external_bytes'] = mem.external;
    for (const c of this.#clusters.clusters.values()) {
      const p = `cluster.${c.name}`;
      stats[`${p}.upstream_rq_active`] = c.breaker.active;
      stats[`${p}.upstream_rq_pending_active`] = c.breaker.pending;
      stats[`${p}.upstream_rq_pending_overflow`] = c.breaker.overflows;
      stats[`${p}.upstream_rq_retry_active`] = c.breaker.retries;
      stats[`${p}.outlier_detection.ejections_total`] = c.ejectionsTotal;
      stats[`${p}.membership_total`] = c.endpoints.length;
      stats[`${p}.membership_healthy`] = c.endpoints.filter((e) => e.available).length;
      stats[`${p}.upstream_cx_active`] = c.endpoints.reduce((n, e) => n + e.pool.connections(), 0);
    }
    return stats;
  }

  statsText(): string {
    return (
      Object.entries(this.statsJson())
        .map(([k, v]) => `${k}: ${v}`)
        .join('\n') + '\n'
    );
  }

  certs(): unknown {
    const m = this.#material;
    if (m === undefined) return { certificate: null };
    return {
      spiffeId: m.spiffeId,
      notAfter: formatIsoTime(m.notAfter.getTime()),
      chain: m.chain,
      roots: m.roots.length,
    };
  }

  /** Graceful: stop accepting, let requests in flight finish (up to the drain timeout), then close everything. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#draining = true;
    this.#outbound.close();
    this.#inbound.close();
    for (const { server } of this.#tcpServers) server.close();
    const deadline = Date.now() + this.options.limits.drainTimeoutMs;
    while (this.stats.active.inbound + this.stats.active.outbound > 0 && Date.now() < deadline) {
      this.#outbound.closeIdle();
      this.#inbound.closeIdle();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await this.tracer?.close();
    this.accessLog.flush();
    this.destroy();
  }

  /** Hard stop: every connection is cut. Idempotent. */
  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#draining = true;
    this.#outbound.destroy();
    this.#inbound.destroy();
    for (const { server } of this.#tcpServers) server.close();
    for (const socket of this.tunnels) socket.destroy();
    this.tunnels.clear();
    this.#clusters.destroy();
    for (const pool of this.#appPools.values()) pool.destroy();
    this.#appPools.clear();
    this.#admin.closeAllConnections();
    this.#admin.close();
    this.#metricsServer.closeAllConnections();
    this.#metricsServer.close();
    this.accessLog.flush();
    void this.tracer?.close();
  }

  get closed(): boolean {
    return this.#closed;
  }
}

function sameRoots(material: TlsMaterial | undefined, roots: readonly string[]): boolean {
  return material !== undefined && material.extraRootsKey === roots.join('\n');
}

function sameLabels(a: PeerLabels, b: PeerLabels): boolean {
  for (const k of Object.keys(a) as Array<keyof PeerLabels>) if (a[k] !== b[k]) return false;
  return true;
}

function clusterSummary(c: ClusterRuntime): unknown {
  return {
    name: c.name,
    sni: c.spec.sni,
    lb: c.spec.policy.lb,
    h2: c.spec.policy.h2,
    h2ToProxies: c.spec.policy.h2ToProxies,
    circuitBreaker: { active: c.breaker.active, pending: c.breaker.pending, overflows: c.breaker.overflows },
    ejectionsTotal: c.ejectionsTotal,
    endpoints: c.endpoints.map((e) => ({
      address: `${e.config.address}:${e.config.port}`,
      via: e.config.via,
      zone: e.config.zone,
      weight: e.config.weight,
      healthy: e.config.healthy,
      ejected: e.ejected,
      activeRequests: e.active,
      protocol: e.pool.h2 ? 'h2' : 'http/1.1',
      connections: e.pool.connections(),
    })),
  };
}
