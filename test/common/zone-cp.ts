/**
 * A zone control plane in-process for tests: memory store, REST and gRPC
 * on free ports, a temp data dir, and (unless told otherwise) a `static`
 * discovery source the test fills directly, so a test controls exactly
 * which services and workloads exist. `issueProxyToken` and `apply` talk
 * to the real REST API with the zone's admin token.
 */

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  registerDiscoverySource,
  type DiscoverySource,
  type LocalService,
  type WorkloadEndpoint,
} from '../../zone-cp/discovery/discovery.js';
import type { ZoneCpHandle, ZoneCpOptions } from '../../zone-cp/options.js';
import { startZoneCp } from '../../zone-cp/zone-cp.js';
import { http } from './http.js';

/** A discovery source whose content the test sets. */
export class StaticDiscovery implements DiscoverySource {
  readonly name = 'static';
  private servicesList: LocalService[] = [];
  private workloadsList: WorkloadEndpoint[] = [];
  private readonly listeners = new Set<() => void>();

  async start(): Promise<void> {}

  services(): readonly LocalService[] {
    return this.servicesList;
  }

  workloads(): readonly WorkloadEndpoint[] {
    return this.workloadsList;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Replace everything; workloads not in any service may be passed in `extraWorkloads`. */
  set(services: LocalService[], extraWorkloads: WorkloadEndpoint[] = []): void {
    this.servicesList = services;
    const byKey = new Map<string, WorkloadEndpoint>();
    for (const w of [...services.flatMap((s) => s.endpoints), ...extraWorkloads])
      byKey.set(`${w.namespace}/${w.name}`, w);
    this.workloadsList = [...byKey.values()];
    for (const listener of this.listeners) listener();
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}

/** Sources created by the `static` factory, by zone name (the factory gets `zone` from the zone CP). */
const staticSources = new Map<string, StaticDiscovery>();
registerDiscoverySource('static', (options: { zone: string }) => {
  const source = new StaticDiscovery();
  staticSources.set(options.zone, source);
  return source;
});

/** A workload endpoint with sensible defaults. */
export function workload(
  name: string,
  namespace: string,
  overrides: Partial<WorkloadEndpoint> = {},
): WorkloadEndpoint {
  return {
    name,
    namespace,
    address: '127.0.0.1',
    inboundPort: 15006,
    labels: { app: name },
    serviceAccount: name,
    weight: 1,
    healthy: true,
    sidecar: true,
    ports: { http: 8080 },
    source: 'static',
    ...overrides,
  };
}

/** A service with one HTTP port (80 → target `http`). */
export function service(
  name: string,
  namespace: string,
  endpoints: WorkloadEndpoint[],
  overrides: Partial<LocalService> = {},
): LocalService {
  return {
    name,
    namespace,
    ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'http' }],
    endpoints,
    exportTo: ['*'],
    source: 'static',
    ...overrides,
  };
}

export interface TestZoneCp {
  cp: ZoneCpHandle;
  /** The zone's admin token. */
  admin: string;
  /** The static source (undefined when `discovery` was overridden). */
  discovery: StaticDiscovery | undefined;
  dir: string;
  /** POST /api/v1/tokens for a proxy token; returns the token. */
  issueProxyToken(fields: Record<string, string>): Promise<string>;
  /** POST /api/v1/apply with YAML; throws unless 200. */
  apply(yaml: string): Promise<unknown>;
  close(): Promise<void>;
}

let counter = 0;

/** Starts a zone CP named `zone` (default zone-test-N) and waits until it is ready. */
export async function startTestZoneCp(options: Partial<ZoneCpOptions> = {}): Promise<TestZoneCp> {
  const dir = await mkdtemp(join(tmpdir(), 'meshfed-zone-'));
  const zone = options.zone ?? `zone-test-${++counter}`;
  const cp = await startZoneCp({
    storeUrl: 'memory://',
    port: 0,
    grpcPort: 0,
    discovery: [{ name: 'static' }],
    ...options,
    zone,
    dataDir: options.dataDir ?? dir,
  });
  await cp.ready();
  const admin = (await readFile(cp.adminTokenFile, 'utf8')).trim();
  return {
    cp,
    admin,
    discovery: staticSources.get(zone),
    dir,
    async issueProxyToken(fields) {
      const answer = await http(`${cp.restUrl}/api/v1/tokens`, {
        method: 'POST',
        token: admin,
        contentType: 'application/json',
        body: JSON.stringify({ kind: 'proxy', ...fields }),
      });
      if (answer.status !== 201) throw new Error(`token request answered ${answer.status}: ${answer.text}`);
      return (answer.json as { token: string }).token;
    },
    async apply(yaml) {
      const answer = await http(`${cp.restUrl}/api/v1/apply`, {
        method: 'POST',
        token: admin,
        contentType: 'application/yaml',
        body: yaml,
      });
      if (answer.status !== 200) throw new Error(`apply answered ${answer.status}: ${answer.text}`);
      return answer.json;
    },
    async close() {
      await cp.close();
      staticSources.delete(zone);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
