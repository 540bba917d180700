/**
 * Settings of an east-west gateway. Every one has a CLI flag and an
 * environment variable (`meshfed gateway --help`); docs/gateway.md lists
 * them with their defaults and the reasons for them.
 */

import { ErrorCodes, MeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';

export const DEFAULT_GATEWAY_PORT = 15443;
/** Istio's gateway health port; the admin server also serves Prometheus metrics. */
export const DEFAULT_ADMIN_PORT = 15021;

export interface GatewayLimits {
  /** Connections open at once across all sources. Default 16384. */
  maxConnections?: number;
  /** Connections open at once from one source IP. Default 1024. */
  maxConnectionsPerSource?: number;
  /** A client must deliver its whole ClientHello within this. Default 5000 ms. */
  helloTimeoutMs?: number;
  /** Close a piping connection after this long without a byte either way. Default 1 h (Envoy's tcp_proxy default). */
  idleTimeoutMs?: number;
  /** Give up connecting to one endpoint after this long (and try another). Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Endpoints tried for one connection before refusing it. Default 3. */
  connectAttempts?: number;
  /** Largest ClientHello accepted, bytes. Default 16 KiB. */
  maxHelloBytes?: number;
  /** On close(), how long open connections may run before they are cut. Default 25000 ms. */
  drainTimeoutMs?: number;
  /** First ejection of an endpoint that refused a connect; doubles per consecutive ejection. Default 1000 ms. */
  baseEjectionMs?: number;
  /** Longest one ejection lasts. Default 60000 ms. */
  maxEjectionMs?: number;
  /**
   * How long a spare upstream connection, opened ahead of demand to an endpoint
   * that is taking connections, waits for one before it is closed; 0 turns
   * preconnecting off. Keep it below the endpoints' TLS handshake timeout
   * (the sidecar's is 10 s). Default 5000 ms.
   */
  preconnectIdleMs?: number;
}

/** How the gateway gets its table from the zone control plane over MDS. */
export interface GatewayMdsOptions {
  /** The zone CP's gRPC address, host:port (default port 5678). */
  address: string;
  /** PEM of the CA the zone CP's TLS certificate chains to. */
  caPem: string;
  /** File holding the gateway's token; read at every (re)connect so a rotated token is picked up. */
  tokenFile: string;
  /** Stable id of this gateway instance; default `gateway-<hostname>-<pid>`. */
  proxyId?: string;
}

export interface GatewayOptions {
  /** Listener address. Default 0.0.0.0: other zones reach the gateway over the network. */
  host?: string;
  /** Listener port. Default 15443; 0 picks a free one. */
  port?: number;
  /** Admin server (/ready, /healthz, /metrics, /config_dump) address. Default 127.0.0.1. */
  adminHost?: string;
  /** Admin server port. Default 15021; 0 picks a free one. */
  adminPort?: number;
  /** Load-balancing policy by registry name: `least-conn` (default) or `round-robin`. */
  lbPolicy?: string;
  limits?: GatewayLimits;
  /** Where the routing table comes from. Without it (and without `snapshot`) the gateway waits for applySnapshot(). */
  mds?: GatewayMdsOptions;
  /** A table to start with (a static gateway, tests, the benchmark): the JSON of a GatewaySnapshot. */
  snapshot?: unknown;
  /** Collect Node process metrics on the registry. Default true. */
  processMetrics?: boolean;
  logger?: Logger;
}

export interface ResolvedLimits {
  maxConnections: number;
  maxConnectionsPerSource: number;
  helloTimeoutMs: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  connectAttempts: number;
  maxHelloBytes: number;
  drainTimeoutMs: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
  preconnectIdleMs: number;
}

const DEFAULT_LIMITS: ResolvedLimits = {
  maxConnections: 16384,
  maxConnectionsPerSource: 1024,
  helloTimeoutMs: 5000,
  idleTimeoutMs: 3_600_000,
  connectTimeoutMs: 5000,
  connectAttempts: 3,
  maxHelloBytes: 16 * 1024,
  drainTimeoutMs: 25_000,
  baseEjectionMs: 1000,
  maxEjectionMs: 60_000,
  preconnectIdleMs: 5000,
};

/** Bounds per limit: [min, max]. Timers above 2^31-1 ms would fire at once in Node. */
const LIMIT_BOUNDS: Record<keyof ResolvedLimits, [number, number]> = {
  maxConnections: [1, 10_000_000],
  maxConnectionsPerSource: [1, 10_000_000],
  helloTimeoutMs: [1, 600_000],
  idleTimeoutMs: [1, 2_147_483_647],
  connectTimeoutMs: [1, 600_000],
  connectAttempts: [1, 100],
  maxHelloBytes: [512, 1024 * 1024],
  drainTimeoutMs: [0, 2_147_483_647],
  baseEjectionMs: [1, 3_600_000],
  maxEjectionMs: [1, 86_400_000],
  preconnectIdleMs: [0, 600_000],
};

/** Fills defaults and checks every limit up front with a message naming it. */
export function resolveLimits(limits: GatewayLimits = {}): ResolvedLimits {
  const resolved = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(LIMIT_BOUNDS) as Array<keyof ResolvedLimits>) {
    const value = limits[key];
    if (value === undefined) continue;
    const [min, max] = LIMIT_BOUNDS[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `limits.${key} must be an integer from ${min} to ${max}`,
        {
          field: `limits.${key}`,
        },
      );
    }
    resolved[key] = value;
  }
  if (resolved.maxEjectionMs < resolved.baseEjectionMs) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      'limits.maxEjectionMs must not be below limits.baseEjectionMs',
      {
        field: 'limits.maxEjectionMs',
      },
    );
  }
  return resolved;
}

/** Checks a port option: integer 0..65535. */
export function checkPort(value: number | undefined, field: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${field} must be a port from 0 to 65535`, { field });
  }
  return value;
}
