/**
 * The telemetry that climbs the mesh for the dashboard: a proxy reports the
 * requests it made per edge since its last report (MDS `Report`), its zone
 * sums its proxies' reports and sends them on with the zone's VMs (KDS
 * `ZoneTelemetry`), and global keeps a sliding window of them. Both
 * messages carry this module's JSON; what arrives from a peer is checked
 * here before anything reads it (docs/dashboard.md is the contract).
 */

import { ErrorCodes, MeshError } from '../errors.js';
import { LATENCY_SLOTS, addLatency, emptyLatency } from './telemetry-histogram.js';
import { isObject, type Obj } from '../resource/validate-common.js';

export const TELEMETRY_FORMAT_VERSION = 1;
/** Edges one message may carry; a proxy or zone with more folds the rest away (and says so in `dropped`). */
export const MAX_EDGES_PER_MESSAGE = 5000;
/** VMs one zone summary may carry. */
export const MAX_VMS_PER_MESSAGE = 5000;
const MAX_NAME = 253;

export const CODE_CLASSES = ['2xx', '3xx', '4xx', '5xx', 'other'] as const;
/** Response-code class; `other` is 1xx and "no response" (0). */
export type CodeClass = (typeof CODE_CLASSES)[number];
export type CodeCounts = Record<CodeClass, number>;

export function emptyCodes(): CodeCounts {
  return { '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0, other: 0 };
}

/** The class of an HTTP status (0 = no response). */
export function codeClassOf(status: number): CodeClass {
  if (status >= 200 && status < 300) return '2xx';
  if (status >= 300 && status < 400) return '3xx';
  if (status >= 400 && status < 500) return '4xx';
  if (status >= 500 && status < 600) return '5xx';
  return 'other';
}

/** Requests in `codes` (all classes). */
export function totalOf(codes: CodeCounts): number {
  let n = 0;
  for (const c of CODE_CLASSES) n += codes[c];
  return n;
}

/** Requests that failed: 5xx and no response. 4xx are the caller's doing and count as served, as Linkerd counts. */
export function failuresOf(codes: CodeCounts): number {
  return codes['5xx'] + codes.other;
}

export interface EdgeSource {
  workload: string;
  namespace: string;
  /** Canonical service (the `app` label) of the calling workload. */
  service: string;
  zone: string;
}

export interface EdgeDestination {
  service: string;
  namespace: string;
  /** Zone of the endpoint that answered; `unknown` when the proxy answered itself (fault, no endpoint). */
  zone: string;
}

/** Requests on one edge (source workload → destination service) in one interval. */
export interface EdgeSample {
  source: EdgeSource;
  destination: EdgeDestination;
  codes: CodeCounts;
  /** Latency histogram over LATENCY_BUCKETS_MS (non-cumulative, +Inf last). */
  latency: number[];
  latencySumMs: number;
}

/** MDS Report.json: what one proxy did since its previous report. */
export interface ProxyTelemetryReport {
  version: number;
  /** How long the report covers. */
  intervalMs: number;
  edges: EdgeSample[];
}

/** A VM (WorkloadEntry enrolled by the vm-agent) as its zone sees it. */
export interface VmStatus {
  name: string;
  namespace: string;
  address: string;
  /** WorkloadGroup the VM joined through. */
  group: string;
  healthy: boolean;
  /** Its sidecar holds an MDS stream to the zone now. */
  proxyConnected: boolean;
  /** ISO time its workload certificate expires, when the zone CA issued (or saw) it. */
  certificateExpiry?: string;
}

/** KDS ZoneTelemetry.json: the sum of the zone's proxy reports since the previous summary, and its VMs. */
export interface ZoneTelemetrySummary {
  version: number;
  zone: string;
  /** ISO time the summary was cut. */
  at: string;
  /** How long the summary covers. */
  intervalMs: number;
  /** Sidecar proxies connected to the zone. */
  proxies: number;
  edges: EdgeSample[];
  vms: VmStatus[];
  /** Edges folded away because a message would exceed MAX_EDGES_PER_MESSAGE. */
  dropped?: number;
}

/** Where global hands each zone's summaries (the dashboard's aggregator). */
export interface ZoneTelemetrySink {
  report(zone: string, summary: ZoneTelemetrySummary): void;
}

/** One string key per edge (source workload and zone → destination service and answering zone). */
export function edgeKeyOf(e: { source: EdgeSource; destination: EdgeDestination }): string {
  const s = e.source;
  const d = e.destination;
  return `${s.zone}|${s.namespace}|${s.workload}|${s.service}|${d.namespace}|${d.service}|${d.zone}`;
}

/** Adds `sample` into the edge of the same key in `edges` (a copy is kept, `sample` is not retained). */
export function mergeEdge(edges: Map<string, EdgeSample>, sample: EdgeSample): void {
  const key = edgeKeyOf(sample);
  let into = edges.get(key);
  if (into === undefined) {
    into = {
      source: { ...sample.source },
      destination: { ...sample.destination },
      codes: emptyCodes(),
      latency: emptyLatency(),
      latencySumMs: 0,
    };
    edges.set(key, into);
  }
  for (const c of CODE_CLASSES) into.codes[c] += sample.codes[c];
  addLatency(into.latency, sample.latency);
  into.latencySumMs += sample.latencySumMs;
}

export function encodeTelemetry(value: ProxyTelemetryReport | ZoneTelemetrySummary): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/** Decodes and checks an MDS Report. DECODE naming the first bad field otherwise. */
export function parseProxyReport(json: Buffer | Uint8Array): ProxyTelemetryReport {
  const value = parseJson(json, 'Report');
  const version = int(value.version, 'Report.version');
  if (version !== TELEMETRY_FORMAT_VERSION) {
    throw bad(`Report.version ${version} is not supported; this build reads ${TELEMETRY_FORMAT_VERSION}`);
  }
  return {
    version,
    intervalMs: int(value.intervalMs, 'Report.intervalMs'),
    edges: edgesOf(value.edges, 'Report.edges'),
  };
}

/** Decodes and checks a KDS ZoneTelemetry; `zone` must be the stream's zone. */
export function parseZoneTelemetry(json: Buffer | Uint8Array, zone: string): ZoneTelemetrySummary {
  const value = parseJson(json, 'ZoneTelemetry');
  const version = int(value.version, 'ZoneTelemetry.version');
  if (version !== TELEMETRY_FORMAT_VERSION) {
    throw bad(
      `ZoneTelemetry.version ${version} is not supported; this build reads ${TELEMETRY_FORMAT_VERSION}`,
    );
  }
  const named = str(value.zone, 'ZoneTelemetry.zone');
  if (named !== zone)
    throw bad(`ZoneTelemetry.zone is ${JSON.stringify(named)}, the stream's zone is ${zone}`);
  const at = str(value.at, 'ZoneTelemetry.at');
  if (Number.isNaN(Date.parse(at))) throw bad('ZoneTelemetry.at must be an ISO time');
  if (!Array.isArray(value.vms)) throw bad('ZoneTelemetry.vms must be an array');
  if (value.vms.length > MAX_VMS_PER_MESSAGE)
    throw bad(`ZoneTelemetry.vms has more than ${MAX_VMS_PER_MESSAGE}`);
  const vms = value.vms.map((v: unknown, i: number) => vmOf(v, `ZoneTelemetry.vms[${i}]`));
  return {
    version,
    zone: named,
    at,
    intervalMs: int(value.intervalMs, 'ZoneTelemetry.intervalMs'),
    proxies: int(value.proxies, 'ZoneTelemetry.proxies'),
    edges: edgesOf(value.edges, 'ZoneTelemetry.edges'),
    vms,
    ...(value.dropped === undefined ? {} : { dropped: int(value.dropped, 'ZoneTelemetry.dropped') }),
  };
}

function bad(message: string): MeshError {
  return new MeshError(ErrorCodes.DECODE, message);
}

function parseJson(json: Buffer | Uint8Array, what: string): Obj {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(json).toString('utf8'));
  } catch (err) {
    throw bad(`${what} is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(value)) throw bad(`${what} must be a JSON object`);
  return value;
}

function int(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw bad(`${field} must be a non-negative integer`);
  }
  return value;
}

function num(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw bad(`${field} must be a non-negative number`);
  }
  return value;
}

function str(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length > MAX_NAME) {
    throw bad(`${field} must be a string of at most ${MAX_NAME} characters`);
  }
  return value;
}

function edgesOf(value: unknown, field: string): EdgeSample[] {
  if (!Array.isArray(value)) throw bad(`${field} must be an array`);
  if (value.length > MAX_EDGES_PER_MESSAGE)
    throw bad(`${field} has more than ${MAX_EDGES_PER_MESSAGE} edges`);
  return value.map((e: unknown, i: number) => edgeOf(e, `${field}[${i}]`));
}

function edgeOf(value: unknown, field: string): EdgeSample {
  if (!isObject(value) || !isObject(value.source) || !isObject(value.destination) || !isObject(value.codes)) {
    throw bad(`${field} must be {source, destination, codes, latency, latencySumMs}`);
  }
  const s = value.source;
  const d = value.destination;
  const codes = emptyCodes();
  for (const c of CODE_CLASSES) codes[c] = int(value.codes[c] ?? 0, `${field}.codes.${c}`);
  if (!Array.isArray(value.latency) || value.latency.length !== LATENCY_SLOTS) {
    throw bad(`${field}.latency must be an array of ${LATENCY_SLOTS} counts`);
  }
  const latency = value.latency.map((n: unknown, i: number) => int(n, `${field}.latency[${i}]`));
  return {
    source: {
      workload: str(s.workload, `${field}.source.workload`),
      namespace: str(s.namespace, `${field}.source.namespace`),
      service: str(s.service, `${field}.source.service`),
      zone: str(s.zone, `${field}.source.zone`),
    },
    destination: {
      service: str(d.service, `${field}.destination.service`),
      namespace: str(d.namespace, `${field}.destination.namespace`),
      zone: str(d.zone, `${field}.destination.zone`),
    },
    codes,
    latency,
    latencySumMs: num(value.latencySumMs, `${field}.latencySumMs`),
  };
}

function vmOf(value: unknown, field: string): VmStatus {
  if (!isObject(value)) throw bad(`${field} must be an object`);
  if (typeof value.healthy !== 'boolean' || typeof value.proxyConnected !== 'boolean') {
    throw bad(`${field}.healthy and .proxyConnected must be booleans`);
  }
  const expiry = value.certificateExpiry;
  if (expiry !== undefined && (typeof expiry !== 'string' || Number.isNaN(Date.parse(expiry)))) {
    throw bad(`${field}.certificateExpiry must be an ISO time`);
  }
  return {
    name: str(value.name, `${field}.name`),
    namespace: str(value.namespace, `${field}.namespace`),
    address: str(value.address, `${field}.address`),
    group: str(value.group, `${field}.group`),
    healthy: value.healthy,
    proxyConnected: value.proxyConnected,
    ...(expiry === undefined ? {} : { certificateExpiry: expiry }),
  };
}
