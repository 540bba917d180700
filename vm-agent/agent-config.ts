/**
 * `vm-agent.yaml`: what `join` learned and `run` needs, in the config
 * directory next to the credentials (docs/vm.md). No secrets: the key is in
 * `key.pem` (0600). `run` refreshes the probe when the zone's heartbeat
 * answer carries a changed one.
 */

import YAML from 'yaml';
import { ErrorCodes, MeshError } from '../core/errors.js';

export const CONFIG_API_VERSION = 'meshfed.io/v1alpha1';
export const CONFIG_KIND = 'VmAgentConfig';

/** A WorkloadGroup probe, as Istio (and Kubernetes) write it. */
export interface ProbeSpec {
  initialDelaySeconds?: number;
  timeoutSeconds?: number;
  periodSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
  httpGet?: {
    path?: string;
    port: number;
    host?: string;
    scheme?: string;
    httpHeaders?: Array<{ name: string; value: string }>;
  };
  tcpSocket?: { host?: string; port: number };
  exec?: { command: string[] };
}

export interface SidecarPorts {
  inbound: number;
  outbound: number;
  admin: number;
  metrics: number;
}

export interface AgentConfig {
  /** https URL of the zone REST API. */
  zoneCp: string;
  /** Lower-case hex SHA-256 the zone CP's chain must contain; absent only after --insecure-skip-verify. */
  caFingerprint?: string;
  zone: string;
  /** host:port of MDS + CA. */
  grpcAddress: string;
  workloadGroup: string;
  workloadEntry: string;
  namespace: string;
  serviceAccount: string;
  spiffeId: string;
  trustDomain: string;
  address: string;
  hostname?: string;
  servicePort?: number;
  labels: Record<string, string>;
  ports: SidecarPorts;
  /** Requested certificate lifetime; absent: the zone's default. */
  certTtlSeconds?: number;
  heartbeatIntervalSeconds: number;
  probe?: ProbeSpec;
  joinedAt: string;
  /** sha256 of the join key's SPKI (hex). */
  keyFingerprint: string;
}

/** The YAML text of a config, with a header saying where it came from. */
export function formatConfig(config: AgentConfig): string {
  const doc = { apiVersion: CONFIG_API_VERSION, kind: CONFIG_KIND, ...config };
  return (
    '# Written by `meshfed vm-agent join`; read by `meshfed vm-agent run` (docs/vm.md).\n' +
    YAML.stringify(doc, { lineWidth: 0 })
  );
}

function bad(file: string, message: string): MeshError {
  return new MeshError(ErrorCodes.CONFIG, `${file}: ${message}: run meshfed vm-agent join again`);
}

/** Parses and checks a config file's text. */
export function parseConfig(text: string, file: string): AgentConfig {
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (err) {
    throw bad(file, `not YAML (${(err as Error).message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad(file, 'not a mapping');
  const doc = raw as Record<string, unknown>;
  if (doc.kind !== CONFIG_KIND) throw bad(file, `kind must be ${CONFIG_KIND}`);
  const str = (key: string): string => {
    const value = doc[key];
    if (typeof value !== 'string' || value === '') throw bad(file, `${key} is missing`);
    return value;
  };
  const num = (key: string, required: boolean): number | undefined => {
    const value = doc[key];
    if (value === undefined && !required) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
      throw bad(file, `${key} must be a positive number`);
    return value;
  };
  const ports = doc.ports as Partial<SidecarPorts> | undefined;
  const port = (key: keyof SidecarPorts): number => {
    const value = ports?.[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 65535) {
      throw bad(file, `ports.${key} must be a port number`);
    }
    return value;
  };
  const labels: Record<string, string> = {};
  if (doc.labels !== undefined && doc.labels !== null) {
    if (typeof doc.labels !== 'object' || Array.isArray(doc.labels))
      throw bad(file, 'labels must be a mapping');
    for (const [k, v] of Object.entries(doc.labels)) labels[k] = String(v);
  }
  const probe = doc.probe;
  if (probe !== undefined && probe !== null && (typeof probe !== 'object' || Array.isArray(probe))) {
    throw bad(file, 'probe must be a mapping');
  }
  const caFingerprint = doc.caFingerprint;
  const hostname = doc.hostname;
  const servicePort = num('servicePort', false);
  const certTtlSeconds = num('certTtlSeconds', false);
  return {
    zoneCp: str('zoneCp'),
    ...(typeof caFingerprint === 'string' && caFingerprint !== '' ? { caFingerprint } : {}),
    zone: str('zone'),
    grpcAddress: str('grpcAddress'),
    workloadGroup: str('workloadGroup'),
    workloadEntry: str('workloadEntry'),
    namespace: str('namespace'),
    serviceAccount: str('serviceAccount'),
    spiffeId: str('spiffeId'),
    trustDomain: str('trustDomain'),
    address: str('address'),
    ...(typeof hostname === 'string' && hostname !== '' ? { hostname } : {}),
    ...(servicePort === undefined ? {} : { servicePort }),
    labels,
    ports: {
      inbound: port('inbound'),
      outbound: port('outbound'),
      admin: port('admin'),
      metrics: port('metrics'),
    },
    ...(certTtlSeconds === undefined ? {} : { certTtlSeconds }),
    heartbeatIntervalSeconds: num('heartbeatIntervalSeconds', true) ?? 10,
    ...(probe === undefined || probe === null ? {} : { probe: probe as ProbeSpec }),
    joinedAt: str('joinedAt'),
    keyFingerprint: str('keyFingerprint'),
  };
}
