/**
 * Test fixtures for KDS: a real global CP (in-process, memory or Redis
 * store) and zone clients over real gRPC/TLS, each with its own MemoryStore
 * as the zone store and a settable inventory.
 */

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGlobalCp } from '../../global-cp/global-cp.js';
import type { GlobalCpHandle, GlobalCpOptions } from '../../global-cp/options.js';
import type { KdsSettings } from '../../global-cp/kds/kds-settings.js';
import { MemoryStore } from '../../core/store/store-memory.js';
import type { Store } from '../../core/store/store.js';
import type { ZoneInventory } from '../../core/mesh/inventory.js';
import { KdsClient, type KdsClientOptions } from '../../zone-cp/kds/kds-client.js';
import { ORIGIN_LABEL } from '../../core/auth/internal-kinds.js';
import { http } from '../common/http.js';
import { Metadata, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import { kdsServiceClient } from '../../core/kds/kds-grpc.js';
import { kdsChannelCredentials } from '../../zone-cp/kds/kds-client-tls.js';
import {
  decodePayload,
  type ChangesPayload,
  type GlobalMessage,
  type HelloMessage,
  type ZoneMessage,
} from '../../core/kds/kds-messages.js';
import {
  KDS_CAPABILITIES,
  KDS_MIN_PROTOCOL_VERSION,
  KDS_PROTOCOL_VERSION,
} from '../../core/kds/kds-protocol.js';
import { startKdsServer, type KdsServer } from '../../global-cp/kds/kds-server.js';
import { TokenService } from '../../core/auth/token-service.js';
import { createRootCa, loadCa } from '../../core/pki/ca.js';
import { createLogger } from '../../core/log.js';
import { createRegistry, type Registry } from '../../core/metrics.js';
import { keyOf, type Resource } from '../../core/resource/resource.js';

/** Settings that make a test run in seconds rather than minutes. */
export const FAST_KDS: Partial<KdsSettings> = {
  statusIntervalMs: 50,
  leaseMs: 1500,
  progressIntervalMs: 200,
  inventoryWriteIntervalMs: 20,
  gracePeriodMs: 60_000,
};

export interface TestGlobal {
  cp: GlobalCpHandle;
  admin: string;
  dir: string;
  apply(yaml: string): Promise<void>;
  remove(path: string): Promise<void>;
  zoneToken(zone: string, ttl?: string): Promise<{ token: string; id: string }>;
  get(path: string): Promise<{ status: number; json: unknown }>;
  close(): Promise<void>;
}

export async function startTestGlobal(
  options: Partial<GlobalCpOptions> = {},
  kds: Partial<KdsSettings> = {},
): Promise<TestGlobal> {
  const dir = await mkdtemp(join(tmpdir(), 'meshfed-kds-'));
  const cp = await startGlobalCp({
    port: 0,
    kdsPort: 0,
    dataDir: dir,
    storeUrl: 'memory://',
    ...options,
    kds: { ...FAST_KDS, ...kds, ...options.kds },
  });
  const admin = (await readFile(cp.adminTokenFile, 'utf8')).trim();
  return globalHandle(cp, admin, dir);
}

export function globalHandle(cp: GlobalCpHandle, admin: string, dir: string): TestGlobal {
  return {
    cp,
    admin,
    dir,
    async apply(yaml) {
      const answer = await http(`${cp.url}/api/v1/apply`, {
        method: 'POST',
        token: admin,
        body: yaml,
        contentType: 'application/yaml',
      });
      if (answer.status !== 200) throw new Error(`apply answered ${answer.status}: ${answer.text}`);
    },
    async remove(path) {
      const answer = await http(`${cp.url}${path}`, { method: 'DELETE', token: admin });
      if (answer.status !== 200) throw new Error(`DELETE ${path} answered ${answer.status}: ${answer.text}`);
    },
    async zoneToken(zone, ttl) {
      const answer = await http(`${cp.url}/api/v1/tokens`, {
        method: 'POST',
        token: admin,
        body: JSON.stringify({ kind: 'zone', zone, name: zone, ...(ttl === undefined ? {} : { ttl }) }),
        contentType: 'application/json',
      });
      if (answer.status !== 201) throw new Error(`token create answered ${answer.status}: ${answer.text}`);
      const body = answer.json as { token: string; id: string };
      return { token: body.token, id: body.id };
    },
    async get(path) {
      const answer = await http(`${cp.url}${path}`, { token: admin });
      return { status: answer.status, json: answer.json };
    },
    async close() {
      await cp.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface TestZone {
  name: string;
  store: Store;
  client: KdsClient;
  setInventory(inventory: Omit<ZoneInventory, 'zone'>): void;
  /** Names (namespace/name) of global-origin objects of a kind in the zone store. */
  synced(kind: string): Promise<string[]>;
  close(): Promise<void>;
}

export interface TestZoneOptions extends Partial<KdsClientOptions> {
  /** Reuse a store (a restarted zone CP); default a new MemoryStore. */
  store?: Store;
  /** Keep the store open on close (to restart a client on it). */
  keepStore?: boolean;
  /** The inventory from the start (a restarted zone CP knows its services before it dials). */
  initialInventory?: Omit<ZoneInventory, 'zone'>;
}

/** Where a zone finds global: a whole GlobalCpHandle or just its KDS address and CA. */
export interface KdsEndpoint {
  cp: Pick<GlobalCpHandle, 'kdsAddress' | 'caCertPem'>;
}

export async function startTestZone(
  name: string,
  global: KdsEndpoint & { zoneToken(zone: string): Promise<{ token: string }> },
  options: TestZoneOptions = {},
): Promise<TestZone> {
  const store = options.store ?? new MemoryStore();
  let inventory: ZoneInventory = { services: [], ...options.initialInventory, zone: name };
  const token = options.token ?? (await global.zoneToken(name)).token;
  const client = new KdsClient({
    zone: name,
    globalAddresses: [global.cp.kdsAddress],
    globalCaPem: global.cp.caCertPem,
    store,
    inventory: () => inventory,
    status: () => ({ connectedProxies: 3, errors: [] }),
    backoff: { initialMs: 50, maxMs: 500 },
    inventoryDebounceMs: 10,
    statusIntervalMs: 100,
    ...options,
    token,
  });
  client.start();
  return {
    name,
    store,
    client,
    setInventory(next) {
      inventory = { ...next, zone: name };
      client.notifyInventoryChanged();
    },
    async synced(kind) {
      const listed = await store.list({ kind, labelSelector: `${ORIGIN_LABEL}=global` });
      return listed.items.map((i) => `${i.metadata.namespace ?? ''}/${i.metadata.name}`).sort();
    },
    async close() {
      await client.close();
      if (options.keepStore !== true) await store.close();
    },
  };
}

export function peerAuthentication(name: string, namespace = 'demo', extraLabels = ''): string {
  return `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: ${name}
  namespace: ${namespace}
${extraLabels === '' ? '' : `  labels: {${extraLabels}}\n`}spec:
  mtls: {mode: STRICT}
`;
}

/** A simple inventory with one service and its healthy endpoint count. */
export function inventoryWith(
  service: string,
  healthy: number,
  gatewayPort = 15443,
): Omit<ZoneInventory, 'zone'> {
  return {
    gateway: { address: '127.0.0.1', port: gatewayPort },
    services: [
      {
        name: service,
        namespace: 'demo',
        ports: [{ name: 'http', port: 8080, protocol: 'http' }],
        endpointGroups: [
          { labels: { app: service, version: 'v1' }, healthy, total: healthy, identities: [] },
        ],
      },
    ],
  };
}

/** A hand-driven KDS stream, for protocol-level tests (bad Hellos, floods, old versions). */
export interface RawStream {
  messages: GlobalMessage[];
  write(message: ZoneMessage): void;
  /** Resolves with the stream's final status. */
  status: Promise<{ code: number; details: string; meshCode: string | undefined }>;
  call: ClientDuplexStream<ZoneMessage, GlobalMessage>;
  close(): void;
}

export function openRawStream(
  global: KdsEndpoint,
  token: string | undefined,
  options: { read?: boolean; caPem?: string } = {},
): RawStream {
  const Client = kdsServiceClient();
  const client = new Client(
    global.cp.kdsAddress,
    kdsChannelCredentials(options.caPem ?? global.cp.caCertPem),
    {
      'grpc.ssl_target_name_override': 'global-cp.meshfed',
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    },
  );
  const metadata = new Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  const call = (
    client as unknown as { Sync(m: Metadata): ClientDuplexStream<ZoneMessage, GlobalMessage> }
  ).Sync(metadata);
  const messages: GlobalMessage[] = [];
  call.on('data', (m: GlobalMessage) => messages.push(m));
  // A reader that stopped: grpc-js then stops reading the HTTP/2 stream, so flow control pushes back on global.
  if (options.read === false) call.pause();
  call.on('error', () => undefined);
  const status = new Promise<{ code: number; details: string; meshCode: string | undefined }>((resolve) => {
    call.on('status', (s: StatusObject) => {
      const meshCode = s.metadata.get('meshfed-error-code')[0];
      resolve({
        code: s.code,
        details: s.details,
        meshCode: typeof meshCode === 'string' ? meshCode : undefined,
      });
      client.close();
    });
  });
  return {
    messages,
    call,
    status,
    write: (message) => call.write(message),
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

/** A Hello as a current zone sends it. */
export function hello(zone: string, overrides: Partial<HelloMessage> = {}): ZoneMessage {
  return {
    hello: {
      protocol_version: KDS_PROTOCOL_VERSION,
      min_protocol_version: KDS_MIN_PROTOCOL_VERSION,
      capabilities: [...KDS_CAPABILITIES],
      zone,
      software_version: 'test',
      store_id: '',
      applied_revision: '0',
      csr_pem: '',
      ...overrides,
    },
  };
}

/** Decoded payloads of the Changes messages received so far. */
export async function changesOf(
  stream: RawStream,
): Promise<Array<{ full: boolean; synced: boolean; revision: number; payload: ChangesPayload }>> {
  const out = [];
  for (const m of stream.messages) {
    if (m.changes) {
      out.push({
        full: m.changes.full,
        synced: m.changes.synced,
        revision: Number(m.changes.revision),
        payload: await decodePayload(m.changes.payload, m.changes.encoding, 1 << 30),
      });
    }
  }
  return out;
}

/** A KDS server on a store the test controls (small history, direct writes), without the REST API. */
export interface BareKds extends KdsEndpoint {
  store: MemoryStore;
  server: KdsServer;
  metrics: Registry;
  zoneToken(zone: string, ttlSeconds?: number): Promise<{ token: string; id: string }>;
  put(resource: Resource): Promise<number>;
  remove(kind: string, namespace: string, name: string): Promise<number>;
  close(): Promise<void>;
}

export async function startBareKds(
  options: { historySize?: number; settings?: Partial<KdsSettings>; store?: MemoryStore } = {},
): Promise<BareKds> {
  const store = options.store ?? new MemoryStore({ historySize: options.historySize ?? 10_000 });
  const logger = createLogger('test-kds');
  const tokens = await TokenService.open(store, logger);
  const material = createRootCa({ trustDomain: 'cluster.local' });
  const trustRoot = loadCa(material.certPem, material.keyPem);
  const metrics = createRegistry('global-cp', 'off');
  const server = await startKdsServer({
    store,
    tokens,
    trustRoot,
    host: '127.0.0.1',
    port: 0,
    metricsRegistry: metrics,
    logger,
    softwareVersion: 'test',
    settings: { ...FAST_KDS, ...options.settings },
  });
  return {
    cp: { kdsAddress: server.address, caCertPem: trustRoot.certPem },
    store,
    server,
    metrics,
    async zoneToken(zone, ttlSeconds) {
      const issued = await tokens.issue('zone', zone, {
        zone,
        ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
      });
      return { token: issued.token, id: issued.claims.jti };
    },
    async put(resource) {
      const existing = await store.get(keyOf(resource));
      const stored = existing === undefined ? await store.create(resource) : await store.update(resource);
      return Number(stored.metadata.resourceVersion);
    },
    async remove(kind, namespace, name) {
      await store.delete({ kind, namespace, name });
      return store.currentRevision();
    },
    async close() {
      await server.close();
      tokens.close();
      await store.close();
    },
  };
}

export function pa(name: string, mode = 'STRICT', namespace = 'demo'): Resource {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: { name, namespace },
    spec: { mtls: { mode } },
  };
}

/** The value of one metric sample in Prometheus text, or undefined. */
export async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const text = await registry.metrics();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    const body = match[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => body.includes(`${k}="${v}"`))) return Number(match[3]);
  }
  return undefined;
}
