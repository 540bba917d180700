/**
 * The east-west gateway: a TCP listener that routes each connection on the
 * SNI of its TLS ClientHello to a healthy local endpoint and pipes the still
 * encrypted bytes (see gateway-connection.ts), plus the table it routes with,
 * the limits it enforces and its graceful drain.
 */

import net from 'node:net';
import { ErrorCodes, MeshError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { EndpointPool } from './endpoint-state.js';
import { GatewayConnection, type ConnectionHost } from './gateway-connection.js';
import { GatewayMetrics } from './gateway-metrics.js';
import { resolveLimits, type GatewayOptions, type ResolvedLimits } from './gateway-options.js';
import { compileGatewayTable, validateGatewaySnapshot, type GatewayTable } from './gateway-table.js';
import { createLoadBalancer } from './lb.js';
import { LEAST_CONN } from './lb-least-conn.js';
import { ROUND_ROBIN } from './lb-round-robin.js';
import { PreconnectPool } from './preconnect-pool.js';
import { ReadBufferPool } from './read-buffer-pool.js';

/** Policies registered by importing their modules; named here so the imports are not side-effect only. */
export const BUILT_IN_LB_POLICIES = [LEAST_CONN, ROUND_ROBIN] as const;

/** Why the gateway is not ready, or undefined when it is. */
export type NotReadyReason = 'no-snapshot' | 'draining' | 'closed';

/**
 * One upstream read at most. HAProxy's default buffer size: large enough that
 * bulk transfers are not syscall-bound, small enough that a gateway full of
 * idle connections (each holds one while open) stays within its memory limit.
 */
const RELAY_READ_BYTES = 16 * 1024;
/** Buffers kept for the next connections (1 MiB at 16 KiB each). */
const RELAY_READ_BUFFERS_KEPT = 64;

export class Gateway implements ConnectionHost {
  readonly limits: ResolvedLimits;
  readonly metrics: GatewayMetrics;
  readonly readBuffers = new ReadBufferPool(RELAY_READ_BYTES, RELAY_READ_BUFFERS_KEPT);
  readonly preconnect: PreconnectPool;
  readonly logger: Logger;
  private readonly lbPolicy: string;
  private readonly pool = new EndpointPool();
  private readonly connections = new Set<GatewayConnection>();
  private readonly perSource = new Map<string, number>();
  private readonly server: net.Server;
  private table: GatewayTable | undefined;
  private draining = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private snapshotCounter = 0;

  constructor(options: GatewayOptions) {
    this.limits = resolveLimits(options.limits);
    this.lbPolicy = options.lbPolicy ?? LEAST_CONN;
    createLoadBalancer(this.lbPolicy); // fail on an unknown policy name now, not per snapshot
    this.logger = options.logger ?? createLogger('eastwest-gateway');
    this.metrics = new GatewayMetrics(() => this.connections, options.processMetrics ?? true);
    this.preconnect = new PreconnectPool(this.limits.preconnectIdleMs, this.readBuffers, this.metrics);
    this.server = net.createServer(
      { allowHalfOpen: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 },
      (socket) => this.accept(socket),
    );
  }

  /** Start listening; resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host, port, backlog: 4096 }, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.logger.error('listener error', { err }));
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  /**
   * Validate a GatewaySnapshot (object, JSON text or UTF-8 bytes), compile it
   * and swap it in for new connections. Throws MeshError(VALIDATION) naming
   * the bad field: the caller NACKs and the previous table stays in force.
   * Connections already piping keep their endpoint.
   */
  applySnapshot(json: unknown, version?: string): void {
    let parsed = json;
    try {
      if (typeof json === 'string') parsed = JSON.parse(json);
      else if (json instanceof Uint8Array) parsed = JSON.parse(Buffer.from(json).toString('utf8'));
    } catch (err) {
      this.metrics.snapshotsRejected++;
      throw new MeshError(ErrorCodes.VALIDATION, `gateway snapshot is not JSON: ${(err as Error).message}`, {
        cause: err,
      });
    }
    let snapshot;
    try {
      snapshot = validateGatewaySnapshot(parsed);
    } catch (err) {
      this.metrics.snapshotsRejected++;
      throw err;
    }
    const table = compileGatewayTable(
      snapshot,
      version ?? `local-${++this.snapshotCounter}`,
      this.pool,
      this.lbPolicy,
      (service) => this.metrics.service(service),
    );
    this.table = table;
    this.preconnect.retainOnly(new Set([...table.routes.values()].flatMap((route) => route.endpoints)));
    this.metrics.snapshotsApplied++;
    this.metrics.routes = table.routes.size;
    this.logger.info('routing table applied', {
      version: table.version,
      zone: table.zone,
      services: table.services.size,
      routes: table.routes.size,
    });
  }

  currentTable(): GatewayTable | undefined {
    return this.table;
  }

  /** Undefined when ready to take connections; else why not. */
  notReadyReason(): NotReadyReason | undefined {
    if (this.closed) return 'closed';
    if (this.draining) return 'draining';
    if (this.table === undefined) return 'no-snapshot';
    return undefined;
  }

  get activeConnections(): number {
    return this.connections.size;
  }

  /** Endpoint states of the current table, for /config_dump. */
  describeTable(): unknown {
    const table = this.table;
    if (table === undefined) return { version: null, routes: [], notExported: [] };
    const now = Date.now();
    return {
      version: table.version,
      zone: table.zone,
      notExported: [...table.notExported],
      routes: [...table.routes.values()].map((route) => ({
        sni: route.sni,
        service: route.service,
        subset: route.subset,
        port: route.port,
        endpoints: route.endpoints.map((e) => ({
          address: e.address,
          port: e.port,
          workload: e.workload,
          active: e.active,
          ejectedForMs: Math.max(0, e.ejectedUntil - now),
          consecutiveEjections: e.ejections,
          lastEjectionMs: e.lastEjectionMs,
        })),
      })),
    };
  }

  connectionClosed(connection: GatewayConnection): void {
    if (!this.connections.delete(connection)) return;
    this.metrics.active--;
    const n = (this.perSource.get(connection.source) ?? 1) - 1;
    if (n <= 0) this.perSource.delete(connection.source);
    else this.perSource.set(connection.source, n);
    if (this.draining && this.connections.size === 0) this.onDrained?.();
  }

  private onDrained: (() => void) | undefined;

  private accept(socket: net.Socket): void {
    this.metrics.accepted++;
    // Sockets refused below are closed at once; their errors (a reset racing the close) are not ours to log.
    socket.on('error', noop);
    if (this.table === undefined) return this.refuseAtAccept(socket, 'not-ready');
    if (this.connections.size >= this.limits.maxConnections)
      return this.refuseAtAccept(socket, 'limit-total');
    const source = socket.remoteAddress ?? '';
    const fromSource = this.perSource.get(source) ?? 0;
    if (fromSource >= this.limits.maxConnectionsPerSource) return this.refuseAtAccept(socket, 'limit-source');
    socket.off('error', noop);
    this.perSource.set(source, fromSource + 1);
    const connection = new GatewayConnection(this, socket, source);
    this.connections.add(connection);
    this.metrics.active++;
    connection.start();
  }

  private refuseAtAccept(socket: net.Socket, reason: 'not-ready' | 'limit-total' | 'limit-source'): void {
    this.metrics.refusal(reason);
    this.logger.debug('refused a connection', { reason, source: socket.remoteAddress });
    socket.destroy();
  }

  /**
   * Graceful drain: stop accepting, let open connections finish for up to
   * `drainTimeoutMs` (a hello in progress still gets routed), then cut the
   * rest. Idempotent; resolves when every connection is gone.
   */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.draining = true;
    this.preconnect.close();
    this.closing = (async () => {
      const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      if (this.connections.size > 0) {
        this.logger.info('draining', {
          connections: this.connections.size,
          deadlineMs: this.limits.drainTimeoutMs,
        });
        await new Promise<void>((resolve) => {
          // After the deadline, keep waiting for the cut connections' close events so
          // that close() resolves with every counter settled.
          const timer = setTimeout(() => {
            this.logger.warn('drain deadline reached; closing the remaining connections', {
              connections: this.connections.size,
            });
            for (const connection of this.connections) connection.destroy();
          }, this.limits.drainTimeoutMs);
          this.onDrained = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      await serverClosed;
      this.closed = true;
    })();
    return this.closing;
  }

  /** Cut every connection now and stop listening. Idempotent. */
  destroy(): void {
    this.draining = true;
    this.preconnect.close();
    for (const connection of this.connections) connection.destroy();
    if (this.server.listening) this.server.close();
    this.onDrained?.();
  }
}

function noop(): void {}
