/**
 * DestinationRule `trafficPolicy` (already merged top-level ← subset by the
 * zone CP) compiled per cluster port: load balancer, connection pool
 * limits, outlier detection, locality settings, TLS mode. Defaults are
 * Istio's: LEAST_REQUEST, effectively unlimited pools (2^32-1), 10 s
 * connect timeout, no outlier detection unless configured.
 */

import { parseLocalityRules } from '../../core/mesh/locality-rules.js';
import type { PortProtocol } from '../../core/mesh/snapshot.js';
import {
  arrayAt,
  invalid,
  objectAt,
  optionalDuration,
  optionalInteger,
  optionalObject,
  optionalString,
  type Obj,
} from '../../core/resource/config-read.js';
import type { ClusterPolicy, LbPolicyName, LocalityPolicy, OutlierPolicy } from './config-types.js';

const UNLIMITED = 4_294_967_295;

const H2_UPGRADE_POLICIES = ['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE'] as const;

function h2UpgradePolicy(http: Obj | undefined, path: string): (typeof H2_UPGRADE_POLICIES)[number] {
  const value = http === undefined ? undefined : optionalString(http, 'h2UpgradePolicy', path);
  if (value === undefined) return 'DEFAULT';
  const known = H2_UPGRADE_POLICIES.find((p) => p === value);
  if (known === undefined) {
    throw invalid(`${path}.h2UpgradePolicy`, `must be one of ${H2_UPGRADE_POLICIES.join(', ')}`);
  }
  return known;
}

function lbPolicy(
  lb: Obj | undefined,
  path: string,
): { name: LbPolicyName; locality: LocalityPolicy | undefined } {
  if (lb === undefined) return { name: 'LEAST_REQUEST', locality: undefined };
  const simple = optionalString(lb, 'simple', path);
  let name: LbPolicyName;
  switch (simple) {
    case undefined:
    case 'UNSPECIFIED':
    case 'LEAST_REQUEST':
    case 'LEAST_CONN':
      name = 'LEAST_REQUEST';
      break;
    case 'ROUND_ROBIN':
    case 'PASSTHROUGH':
      // PASSTHROUGH dials the original destination, which an explicit proxy does not have.
      name = 'ROUND_ROBIN';
      break;
    case 'RANDOM':
      name = 'RANDOM';
      break;
    default:
      throw invalid(`${path}.simple`, `unknown load balancer "${simple}"`);
  }
  const setting = optionalObject(lb, 'localityLbSetting', path);
  return {
    name,
    locality: setting === undefined ? undefined : parseLocalityRules(setting, `${path}.localityLbSetting`),
  };
}

function outlierPolicy(value: Obj, path: string): OutlierPolicy {
  const consecutive5xx = optionalInteger(value, 'consecutive5xxErrors', path);
  const legacy = optionalInteger(value, 'consecutiveErrors', path);
  const gateway = optionalInteger(value, 'consecutiveGatewayErrors', path);
  return {
    consecutive5xx: consecutive5xx ?? (legacy === undefined ? 5 : 0),
    // Istio maps the deprecated consecutiveErrors to gateway errors.
    consecutiveGateway: gateway ?? legacy ?? 0,
    intervalMs: optionalDuration(value, 'interval', path) ?? 10_000,
    baseEjectionMs: optionalDuration(value, 'baseEjectionTime', path) ?? 30_000,
    maxEjectionPercent: optionalInteger(value, 'maxEjectionPercent', path, 0, 100) ?? 10,
    minHealthPercent: optionalInteger(value, 'minHealthPercent', path, 0, 100) ?? 0,
  };
}

interface PolicyParts {
  loadBalancer?: Obj;
  connectionPool?: Obj;
  outlierDetection?: Obj;
  tls?: Obj;
}

function partsOf(policy: Obj, path: string): PolicyParts {
  const parts: PolicyParts = {};
  const lb = optionalObject(policy, 'loadBalancer', path);
  const pool = optionalObject(policy, 'connectionPool', path);
  const outlier = optionalObject(policy, 'outlierDetection', path);
  const tls = optionalObject(policy, 'tls', path);
  if (lb) parts.loadBalancer = lb;
  if (pool) parts.connectionPool = pool;
  if (outlier) parts.outlierDetection = outlier;
  if (tls) parts.tls = tls;
  return parts;
}

/**
 * The effective policy of one port of a cluster. `portLevelSettings` for
 * that port replace the top-level sections they set, as in Istio.
 */
export function compileClusterPolicy(
  trafficPolicy: Obj,
  port: number,
  protocol: PortProtocol,
  path: string,
): ClusterPolicy {
  const parts = partsOf(trafficPolicy, path);
  const levels = arrayAt(trafficPolicy, 'portLevelSettings', path);
  for (let i = 0; i < levels.length; i++) {
    const p = `${path}.portLevelSettings[${i}]`;
    const level = objectAt(levels[i], p);
    const portObj = optionalObject(level, 'port', p);
    const number =
      portObj === undefined ? undefined : optionalInteger(portObj, 'number', `${p}.port`, 1, 65535);
    if (number === port) Object.assign(parts, partsOf(level, p));
  }
  const { name, locality } = lbPolicy(parts.loadBalancer, `${path}.loadBalancer`);
  const pool = parts.connectionPool;
  const tcp = pool === undefined ? undefined : optionalObject(pool, 'tcp', `${path}.connectionPool`);
  const http = pool === undefined ? undefined : optionalObject(pool, 'http', `${path}.connectionPool`);
  const tcpPath = `${path}.connectionPool.tcp`;
  const httpPath = `${path}.connectionPool.http`;
  const positive = (n: number | undefined): number => (n === undefined || n === 0 ? UNLIMITED : n);
  const upgrade = h2UpgradePolicy(http, httpPath);
  const tlsMode = parts.tls === undefined ? undefined : optionalString(parts.tls, 'mode', `${path}.tls`);
  return {
    lb: name,
    maxConnections: positive(tcp && optionalInteger(tcp, 'maxConnections', tcpPath)),
    http1MaxPendingRequests: positive(http && optionalInteger(http, 'http1MaxPendingRequests', httpPath)),
    http2MaxRequests: positive(http && optionalInteger(http, 'http2MaxRequests', httpPath)),
    maxRequestsPerConnection: (http && optionalInteger(http, 'maxRequestsPerConnection', httpPath)) ?? 0,
    maxRetries: positive(http && optionalInteger(http, 'maxRetries', httpPath)),
    connectTimeoutMs: (tcp && optionalDuration(tcp, 'connectTimeout', tcpPath)) ?? 10_000,
    idleTimeoutMs: (http && optionalDuration(http, 'idleTimeout', httpPath)) ?? 0,
    h2: protocol === 'http2' || protocol === 'grpc' || (protocol === 'http' && upgrade === 'UPGRADE'),
    h2ToProxies: protocol !== 'tcp' && upgrade !== 'DO_NOT_UPGRADE',
    outlier:
      parts.outlierDetection === undefined
        ? undefined
        : outlierPolicy(parts.outlierDetection, `${path}.outlierDetection`),
    locality: locality?.enabled === false ? undefined : locality,
    plaintext: tlsMode === 'DISABLE',
  };
}
