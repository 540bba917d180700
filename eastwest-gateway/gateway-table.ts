/**
 * The gateway's routing table, compiled once per MDS snapshot so a new
 * connection costs one map lookup on its SNI.
 *
 * `validateGatewaySnapshot` checks an untrusted snapshot (it crossed the
 * network) field by field and names the first bad path; a snapshot that
 * fails is NACKed and the previous table stays in force.
 */

import { ErrorCodes, MeshError } from '../core/errors.js';
import {
  GATEWAY_SNAPSHOT_TYPE,
  type GatewayEndpoint,
  type GatewayService,
  type GatewaySnapshot,
} from '../core/mesh/snapshot.js';
import { ANY_SUBSET, formatMeshSni, parseMeshSni } from '../core/mesh/sni.js';
import type { EndpointPool, EndpointState } from './endpoint-state.js';
import type { ServiceStats } from './gateway-metrics.js';
import { createLoadBalancer, type LoadBalancer } from './lb.js';

/** One routable SNI: a service port and a subset (or `_`), with the endpoints to pick from. */
export interface Route {
  readonly sni: string;
  /** `name.namespace`: the metrics label. */
  readonly service: string;
  readonly subset: string;
  readonly port: number;
  /** Endpoints the zone reports healthy, in snapshot order. Empty: refuse with no-healthy-endpoint. */
  readonly endpoints: readonly EndpointState[];
  readonly lb: LoadBalancer;
  /** The service's counters, shared by its routes (resolved here so connections skip the lookup). */
  readonly stats: ServiceStats;
}

/** Why an SNI found no route; the refusal metric's reason. */
export type RouteMiss =
  'non-mesh-sni' | 'not-exported' | 'unknown-service' | 'unknown-port' | 'unknown-subset';

export interface GatewayTable {
  readonly version: string;
  readonly zone: string;
  readonly routes: ReadonlyMap<string, Route>;
  /** Per `name.namespace`: the ports and subsets it exports, to tell a wrong port from a wrong subset. */
  readonly services: ReadonlyMap<string, { ports: ReadonlySet<number>; subsets: ReadonlySet<string> }>;
  /** `name.namespace` of local services pinned to this zone: refused as not-exported. */
  readonly notExported: ReadonlySet<string>;
  /** The snapshot the table was compiled from, for /config_dump. */
  readonly snapshot: GatewaySnapshot;
}

const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** An IPv4/IPv6 literal or a DNS name: what net.connect accepts as a host. */
const HOST =
  /^(?:[0-9a-fA-F:.]+|[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*)$/;

function invalid(field: string, message: string): MeshError {
  return new MeshError(ErrorCodes.VALIDATION, `gateway snapshot: ${field}: ${message}`, { field });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function arrayAt(value: unknown, field: string): unknown[] {
  if (!Array.isArray(value)) throw invalid(field, 'must be an array');
  return value;
}

function recordAt(value: unknown, field: string): Record<string, unknown> {
  if (!isRecord(value)) throw invalid(field, 'must be an object');
  return value;
}

function labelAt(value: unknown, field: string): string {
  if (typeof value !== 'string' || !LABEL.test(value)) throw invalid(field, 'must be a DNS-1123 label');
  return value;
}

function portAt(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw invalid(field, 'must be a port number 1..65535');
  }
  return value;
}

function validateEndpoint(value: unknown, field: string): GatewayEndpoint {
  const e = recordAt(value, field);
  if (
    typeof e.address !== 'string' ||
    e.address.length === 0 ||
    e.address.length > 253 ||
    !HOST.test(e.address)
  ) {
    throw invalid(`${field}.address`, 'must be an IP address or a DNS name');
  }
  const port = portAt(e.port, `${field}.port`);
  if (typeof e.healthy !== 'boolean') throw invalid(`${field}.healthy`, 'must be a boolean');
  const workload = e.workload ?? '';
  if (typeof workload !== 'string') throw invalid(`${field}.workload`, 'must be a string');
  return { address: e.address, port, healthy: e.healthy, workload };
}

function validateService(value: unknown, field: string): GatewayService {
  const s = recordAt(value, field);
  const name = labelAt(s.name, `${field}.name`);
  const namespace = labelAt(s.namespace, `${field}.namespace`);
  const ports = arrayAt(s.ports, `${field}.ports`).map((p, i) => portAt(p, `${field}.ports[${i}]`));
  const subsets = new Set<string>();
  const clusters = arrayAt(s.clusters, `${field}.clusters`).map((c, i) => {
    const cf = `${field}.clusters[${i}]`;
    const cluster = recordAt(c, cf);
    const subset = cluster.subset;
    if (typeof subset !== 'string' || (subset !== ANY_SUBSET && !LABEL.test(subset))) {
      throw invalid(`${cf}.subset`, 'must be `_` or a DNS-1123 label');
    }
    if (subsets.has(subset)) throw invalid(`${cf}.subset`, `subset ${subset} appears twice`);
    subsets.add(subset);
    const endpoints = arrayAt(cluster.endpoints, `${cf}.endpoints`).map((e, j) =>
      validateEndpoint(e, `${cf}.endpoints[${j}]`),
    );
    return { subset, endpoints };
  });
  return { name, namespace, ports, clusters };
}

/** Checks an untrusted snapshot and returns it typed; throws MeshError(VALIDATION) naming the bad field. */
export function validateGatewaySnapshot(json: unknown): GatewaySnapshot {
  const root = recordAt(json, '(root)');
  if (root.type !== GATEWAY_SNAPSHOT_TYPE) {
    throw invalid(
      'type',
      `must be ${JSON.stringify(GATEWAY_SNAPSHOT_TYPE)}, got ${JSON.stringify(root.type)}`,
    );
  }
  if (typeof root.zone !== 'string' || root.zone.length === 0)
    throw invalid('zone', 'must be a non-empty string');
  const seen = new Set<string>();
  const services = arrayAt(root.services, 'services').map((s, i) => {
    const service = validateService(s, `services[${i}]`);
    const key = `${service.name}.${service.namespace}`;
    if (seen.has(key)) throw invalid(`services[${i}]`, `service ${key} appears twice`);
    seen.add(key);
    return service;
  });
  const notExported =
    root.notExported === undefined
      ? undefined
      : arrayAt(root.notExported, 'notExported').map((entry, i) => {
          const [name, namespace, ...rest] = typeof entry === 'string' ? entry.split('.') : [];
          if (
            name === undefined ||
            namespace === undefined ||
            rest.length > 0 ||
            !LABEL.test(name) ||
            !LABEL.test(namespace)
          ) {
            throw invalid(`notExported[${i}]`, 'must be `name.namespace` (two DNS-1123 labels)');
          }
          const key = `${name}.${namespace}`;
          if (seen.has(key)) {
            throw invalid(`notExported[${i}]`, `service ${key} appears twice or is also in services`);
          }
          seen.add(key);
          return key;
        });
  return {
    type: GATEWAY_SNAPSHOT_TYPE,
    zone: root.zone,
    services,
    ...(notExported === undefined ? {} : { notExported }),
  };
}

/**
 * Compiles a validated snapshot into a table: one route per service port ×
 * cluster, each with its healthy endpoints pre-filtered and its own LB.
 * Endpoint states come from (and are retained in) `pool`.
 */
export function compileGatewayTable(
  snapshot: GatewaySnapshot,
  version: string,
  pool: EndpointPool,
  lbPolicy: string,
  statsFor: (service: string) => ServiceStats,
): GatewayTable {
  const routes = new Map<string, Route>();
  const services = new Map<string, { ports: ReadonlySet<number>; subsets: ReadonlySet<string> }>();
  const named = new Set<string>();
  for (const service of snapshot.services) {
    const serviceKey = `${service.name}.${service.namespace}`;
    const stats = statsFor(serviceKey);
    const subsets = new Set<string>();
    for (const cluster of service.clusters) {
      subsets.add(cluster.subset);
      const endpoints: EndpointState[] = [];
      for (const e of cluster.endpoints) {
        const state = pool.obtain(e.address, e.port, e.workload);
        named.add(state.key);
        if (e.healthy && !endpoints.includes(state)) endpoints.push(state);
      }
      for (const port of service.ports) {
        const sni = formatMeshSni({
          subset: cluster.subset,
          port,
          service: service.name,
          namespace: service.namespace,
        });
        routes.set(sni, {
          sni,
          service: serviceKey,
          subset: cluster.subset,
          port,
          endpoints,
          lb: createLoadBalancer(lbPolicy),
          stats,
        });
      }
    }
    services.set(serviceKey, { ports: new Set(service.ports), subsets });
  }
  pool.retainOnly(named);
  const notExported = new Set(snapshot.notExported ?? []);
  return { version, zone: snapshot.zone, routes, services, notExported, snapshot };
}

/** Why `serverName` has no route in `table` (only called on the refusal path). */
export function classifyMiss(table: GatewayTable, serverName: string): RouteMiss {
  const sni = parseMeshSni(serverName);
  if (sni === undefined) return 'non-mesh-sni';
  const key = `${sni.service}.${sni.namespace}`;
  const service = table.services.get(key);
  if (service === undefined) return table.notExported.has(key) ? 'not-exported' : 'unknown-service';
  if (!service.ports.has(sni.port)) return 'unknown-port';
  return 'unknown-subset';
}
