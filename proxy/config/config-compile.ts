/**
 * Validates a SidecarSnapshot and compiles it for the data path. Anything
 * wrong throws MeshError(VALIDATION) naming the field, which the MDS layer
 * turns into a NACK while the proxy keeps running its last good config.
 * Nothing here touches runtime state: compiling is side-effect free, so a
 * snapshot is either applied whole or not at all.
 */

import { X509Certificate } from 'node:crypto';
import {
  SIDECAR_SNAPSHOT_TYPE,
  type EndpointConfig,
  type InboundPort,
  type LocalityConfig,
  type MtlsMode,
  type PortProtocol,
  type ProxyIdentity,
  type ServicePort,
  type SidecarSnapshot,
} from '../../core/mesh/snapshot.js';
import { formatMeshSni } from '../../core/mesh/sni.js';
import { parseSpiffeId } from '../../core/pki/spiffe.js';
import { pemToDerList } from '../../core/pki/pem.js';
import { compileAuthorization } from '../inbound/authz-engine.js';
import {
  arrayAt,
  integerAt,
  invalid,
  objectAt,
  optionalBoolean,
  optionalObject,
  optionalString,
  stringAt,
  stringList,
  stringMap,
  type Obj,
} from '../../core/resource/config-read.js';
import type {
  ClusterSpec,
  CompiledConfig,
  CompiledInbound,
  CompiledService,
  InboundPortConfig,
} from './config-types.js';
import { compileClusterPolicy } from './policy-compile.js';
import {
  clusterName,
  compileHttpRoutes,
  compileTcpRoutes,
  defaultHttpRoute,
  defaultTcpRoute,
  type RouteContext,
} from './route-compile.js';

const PROTOCOLS: readonly PortProtocol[] = ['http', 'http2', 'grpc', 'tcp'];
const MTLS_MODES: readonly MtlsMode[] = ['STRICT', 'PERMISSIVE', 'DISABLE'];
const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function protocolAt(parent: Obj, path: string): PortProtocol {
  const value = optionalString(parent, 'protocol', path) ?? 'http';
  const lower = value.toLowerCase() as PortProtocol;
  if (!PROTOCOLS.includes(lower)) throw invalid(`${path}.protocol`, `must be one of ${PROTOCOLS.join(', ')}`);
  return lower;
}

function mtlsAt(parent: Obj, name: string, path: string, fallback: MtlsMode): MtlsMode {
  const value = optionalString(parent, name, path) ?? fallback;
  if (!MTLS_MODES.includes(value as MtlsMode)) {
    throw invalid(`${path}.${name}`, `must be one of ${MTLS_MODES.join(', ')}`);
  }
  return value as MtlsMode;
}

function compileProxy(value: unknown): ProxyIdentity {
  const p = objectAt(value, 'proxy');
  const spiffeId = stringAt(p, 'spiffeId', 'proxy');
  try {
    parseSpiffeId(spiffeId);
  } catch (err) {
    throw invalid('proxy.spiffeId', err instanceof Error ? err.message : String(err));
  }
  const workload = stringAt(p, 'workload', 'proxy');
  return {
    proxyId: optionalString(p, 'proxyId', 'proxy') ?? '',
    workload,
    namespace: stringAt(p, 'namespace', 'proxy'),
    serviceAccount: optionalString(p, 'serviceAccount', 'proxy') ?? '',
    spiffeId,
    zone: optionalString(p, 'zone', 'proxy') ?? '',
    labels: stringMap(p, 'labels', 'proxy'),
    canonicalService: optionalString(p, 'canonicalService', 'proxy') ?? workload,
  };
}

function compileTrust(value: unknown): { trustDomain: string; roots: string[] } {
  const t = objectAt(value, 'trust');
  const trustDomain = stringAt(t, 'trustDomain', 'trust');
  const roots = stringList(t, 'roots', 'trust');
  roots.forEach((pem, i) => {
    try {
      const ders = pemToDerList(pem);
      if (ders.length === 0) throw new Error('no CERTIFICATE block');
      for (const der of ders) new X509Certificate(der);
    } catch (err) {
      throw invalid(
        `trust.roots[${i}]`,
        `not a PEM certificate: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  });
  return { trustDomain, roots };
}

function compileInbound(value: unknown): CompiledInbound {
  const inbound = objectAt(value, 'inbound');
  const defaultMtls = mtlsAt(inbound, 'defaultMtls', 'inbound', 'PERMISSIVE');
  const ports: InboundPortConfig[] = [];
  const byPort = new Map<number, InboundPortConfig>();
  arrayAt(inbound, 'ports', 'inbound').forEach((raw, i) => {
    const p = `inbound.ports[${i}]`;
    const port = objectAt(raw, p) as Obj & Partial<InboundPort>;
    const number = integerAt(port, 'port', p, 1, 65535);
    if (byPort.has(number)) throw invalid(`${p}.port`, `port ${number} is listed twice`);
    const config: InboundPortConfig = {
      port: number,
      targetPort: integerAt(port, 'targetPort', p, 1, 65535),
      protocol: protocolAt(port, p),
      mtls: mtlsAt(port, 'mtls', p, defaultMtls),
      name: optionalString(port, 'name', p) ?? `port-${number}`,
      clusterName: `inbound|${number}||`,
    };
    ports.push(config);
    byPort.set(number, config);
  });
  const authorization = arrayAt(inbound, 'authorization', 'inbound');
  return {
    ports,
    byPort,
    defaultMtls,
    allStrict: defaultMtls === 'STRICT' && ports.every((p) => p.mtls === 'STRICT'),
    authz: compileAuthorization(authorization, 'inbound.authorization'),
  };
}

function compileEndpoint(value: unknown, path: string): EndpointConfig {
  const e = objectAt(value, path);
  const via = optionalString(e, 'via', path) ?? 'sidecar';
  if (via !== 'sidecar' && via !== 'gateway' && via !== 'plaintext') {
    throw invalid(`${path}.via`, 'must be sidecar, gateway or plaintext');
  }
  const address = stringAt(e, 'address', path);
  if (address === '') throw invalid(`${path}.address`, 'must not be empty');
  const weight = e.weight ?? 1;
  if (typeof weight !== 'number' || !(weight >= 0) || !Number.isFinite(weight)) {
    throw invalid(`${path}.weight`, 'must be a number ≥ 0');
  }
  const identities = stringList(e, 'identities', path);
  identities.forEach((id, i) => {
    try {
      parseSpiffeId(id);
    } catch (err) {
      throw invalid(`${path}.identities[${i}]`, err instanceof Error ? err.message : String(err));
    }
  });
  if (via !== 'plaintext' && identities.length === 0) {
    throw invalid(`${path}.identities`, 'an mTLS endpoint needs the identities its peer may present');
  }
  const endpoint: EndpointConfig = {
    address,
    port: integerAt(e, 'port', path, 1, 65535),
    via,
    zone: optionalString(e, 'zone', path) ?? '',
    weight,
    healthy: optionalBoolean(e, 'healthy', path) ?? true,
    labels: stringMap(e, 'labels', path),
    identities,
  };
  const locality = optionalString(e, 'locality', path);
  const workload = optionalString(e, 'workload', path);
  if (locality !== undefined) endpoint.locality = locality;
  if (workload !== undefined) endpoint.workload = workload;
  return endpoint;
}

interface RawService {
  host: string;
  name: string;
  namespace: string;
  aliases: string[];
  ports: ServicePort[];
  raw: Obj;
  path: string;
}

function readService(value: unknown, path: string): RawService {
  const s = objectAt(value, path);
  const host = stringAt(s, 'host', path).toLowerCase();
  const name = stringAt(s, 'name', path);
  const namespace = stringAt(s, 'namespace', path);
  if (!LABEL.test(name)) throw invalid(`${path}.name`, 'must be a DNS-1123 label');
  if (!LABEL.test(namespace)) throw invalid(`${path}.namespace`, 'must be a DNS-1123 label');
  const seen = new Set<number>();
  const ports = arrayAt(s, 'ports', path).map((raw, i) => {
    const p = `${path}.ports[${i}]`;
    const port = objectAt(raw, p);
    const number = integerAt(port, 'port', p, 1, 65535);
    if (seen.has(number)) throw invalid(`${p}.port`, `port ${number} is listed twice`);
    seen.add(number);
    return {
      name: optionalString(port, 'name', p) ?? `port-${number}`,
      port: number,
      protocol: protocolAt(port, p),
    };
  });
  if (ports.length === 0) throw invalid(`${path}.ports`, 'a service needs at least one port');
  return {
    host,
    name,
    namespace,
    aliases: stringList(s, 'aliases', path).map((a) => a.toLowerCase()),
    ports,
    raw: s,
    path,
  };
}

function localityOf(s: Obj, path: string): LocalityConfig {
  const l = optionalObject(s, 'locality', path);
  if (l === undefined) return { preferLocalZone: true, pinnedToZone: false };
  const p = `${path}.locality`;
  const locality: LocalityConfig = {
    preferLocalZone: optionalBoolean(l, 'preferLocalZone', p) ?? true,
    pinnedToZone: optionalBoolean(l, 'pinnedToZone', p) ?? false,
  };
  const setting = optionalObject(l, 'setting', p);
  if (setting !== undefined) locality.setting = setting;
  return locality;
}

function defaultHttpPortOf(ports: ServicePort[]): ServicePort | undefined {
  const http = ports.filter((p) => p.protocol !== 'tcp');
  if (http.length === 1) return http[0];
  return http.find((p) => p.port === 80) ?? http[0];
}

/**
 * Validates and compiles a snapshot. `json` is the parsed MDS payload.
 * @throws MeshError VALIDATION naming the offending field.
 */
export function compileSnapshot(json: unknown): CompiledConfig {
  const root = objectAt(json, 'snapshot');
  if (root.type !== SIDECAR_SNAPSHOT_TYPE) {
    throw invalid('type', `must be "${SIDECAR_SNAPSHOT_TYPE}", got ${JSON.stringify(root.type)}`);
  }
  const proxy = compileProxy(root.proxy);
  const trust = compileTrust(root.trust);
  const inbound = compileInbound(root.inbound);
  const outbound = objectAt(root.outbound, 'outbound');
  const telemetry = optionalObject(root, 'telemetry', 'snapshot');

  const raws = arrayAt(outbound, 'services', 'outbound').map((s, i) =>
    readService(s, `outbound.services[${i}]`),
  );
  const byHostRaw = new Map<string, RawService>();
  for (const s of raws) {
    if (byHostRaw.has(s.host)) throw invalid(`${s.path}.host`, `service ${s.host} is listed twice`);
    byHostRaw.set(s.host, s);
  }
  for (const s of raws) {
    for (const alias of s.aliases) {
      // The first service keeps an ambiguous short name, as the FQDN always works.
      if (!byHostRaw.has(alias)) byHostRaw.set(alias, s);
    }
  }
  const lookupService = (host: string): { host: string; ports: number[] } | undefined => {
    const s = byHostRaw.get(host.toLowerCase());
    return s === undefined ? undefined : { host: s.host, ports: s.ports.map((p) => p.port) };
  };

  const clusters: ClusterSpec[] = [];
  const services: CompiledService[] = raws.map((s) => {
    const ctx: RouteContext = { proxy, servicePorts: s.ports.map((p) => p.port), lookupService };
    const locality = localityOf(s.raw, s.path);
    const seenSubsets = new Set<string>();
    arrayAt(s.raw, 'clusters', s.path).forEach((rawCluster, i) => {
      const p = `${s.path}.clusters[${i}]`;
      const c = objectAt(rawCluster, p);
      const subset = stringAt(c, 'subset', p);
      if (subset !== '_' && !LABEL.test(subset))
        throw invalid(`${p}.subset`, 'must be `_` or a DNS-1123 label');
      if (seenSubsets.has(subset)) throw invalid(`${p}.subset`, `subset ${subset} is listed twice`);
      seenSubsets.add(subset);
      const trafficPolicy = optionalObject(c, 'trafficPolicy', p) ?? {};
      const endpoints = arrayAt(c, 'endpoints', p).map((e, j) => compileEndpoint(e, `${p}.endpoints[${j}]`));
      for (const port of s.ports) {
        clusters.push({
          name: clusterName(port.port, subset, s.host),
          host: s.host,
          serviceName: s.name,
          namespace: s.namespace,
          port: port.port,
          protocol: port.protocol,
          subset,
          sni: formatMeshSni({ subset, port: port.port, service: s.name, namespace: s.namespace }),
          policy: compileClusterPolicy(trafficPolicy, port.port, port.protocol, `${p}.trafficPolicy`),
          endpoints,
          locality,
        });
      }
    });
    if (!seenSubsets.has('_'))
      throw invalid(`${s.path}.clusters`, 'must hold the `_` cluster (the whole service)');
    return {
      host: s.host,
      name: s.name,
      namespace: s.namespace,
      ports: s.ports,
      portMap: new Map(s.ports.map((p) => [p.port, p])),
      defaultHttpPort: defaultHttpPortOf(s.ports),
      http: compileHttpRoutes(arrayAt(s.raw, 'http', s.path), `${s.path}.http`, ctx),
      defaultRoute: defaultHttpRoute(s.host, ctx),
      tcp: compileTcpRoutes(arrayAt(s.raw, 'tcp', s.path), `${s.path}.tcp`, ctx),
      defaultTcpRoute: defaultTcpRoute(s.host, ctx),
    };
  });
  const byHost = new Map<string, CompiledService>();
  const byFqdn = new Map(services.map((s) => [s.host, s]));
  for (const [name, raw] of byHostRaw) {
    const svc = byFqdn.get(raw.host);
    if (svc !== undefined) byHost.set(name, svc);
  }
  return {
    snapshot: root as unknown as SidecarSnapshot,
    proxy,
    trustDomain: trust.trustDomain,
    roots: trust.roots,
    inbound,
    outbound: { byHost, services },
    clusters,
    accessLog:
      telemetry === undefined ? false : (optionalBoolean(telemetry, 'accessLog', 'telemetry') ?? false),
  };
}
