/**
 * What the dashboard shows, as one JSON document (GET
 * /api/v1/dashboard/state, and each SSE `state` event): the zones and
 * their sync state, the service graph (services per zone from the
 * cross-zone catalog, edges with golden signals from the zones'
 * telemetry), the policies with how far each zone has applied them, and
 * the VMs. docs/dashboard.md describes every field.
 */

import type { ServiceCatalog } from '../../core/mesh/inventory.js';
import type { StoredResource } from '../../core/resource/resource.js';
import type { Store } from '../../core/store/store.js';
import type { VmStatus } from '../../core/telemetry/telemetry-report.js';
import type { EdgeSignals, GlobalTelemetry } from '../telemetry/global-telemetry.js';
import { isObject, type Obj } from '../../core/resource/validate-common.js';

/** The kinds listed as policies (what global syncs to zones). */
export const POLICY_KINDS = [
  'VirtualService',
  'DestinationRule',
  'ServiceEntry',
  'PeerAuthentication',
  'AuthorizationPolicy',
  'Mesh',
] as const;

export interface ZoneView {
  name: string;
  enabled: boolean;
  connected: boolean;
  /** ISO time of the last change the zone acknowledged. */
  lastSync: string | null;
  /** Global revision the zone has applied. */
  configRevision: number | null;
  /** Changes sent and not acknowledged yet. */
  lag: number;
  proxies: number;
  version: string;
  errors: string[];
  /** ISO time of the zone's last telemetry summary. */
  lastTelemetry: string | null;
}

export interface ServiceNode {
  /** `<zone>/<namespace>/<name>`. */
  id: string;
  zone: string;
  namespace: string;
  name: string;
  /** Healthy and total endpoints the zone reported; null for a node known only from traffic. */
  healthy: number | null;
  total: number | null;
}

export interface GraphEdge extends EdgeSignals {
  /** Node ids the edge joins. */
  from: string;
  to: string;
}

export type PolicyZoneState = 'applied' | 'pending' | 'rejected' | 'disconnected';

export interface PolicyView {
  kind: string;
  namespace: string;
  name: string;
  revision: number;
  /** Worst state over the enabled zones (no zones: pending). */
  state: PolicyZoneState;
  zones: Array<{ zone: string; state: PolicyZoneState; error?: string }>;
}

export interface DashboardState {
  generatedAt: string;
  /** The window rates and percentiles are computed over. */
  windowMs: number;
  zones: ZoneView[];
  services: ServiceNode[];
  edges: GraphEdge[];
  policies: PolicyView[];
  vms: Array<VmStatus & { zone: string }>;
}

export interface DashboardSources {
  store: Store;
  telemetry: GlobalTelemetry;
  /** The cross-zone catalog (JSON ServiceCatalog), or undefined while there is none. */
  catalogJson?: () => Promise<Buffer>;
}

export async function buildDashboardState(sources: DashboardSources): Promise<DashboardState> {
  const { store, telemetry } = sources;
  const [zoneList, policyLists, catalog] = await Promise.all([
    store.list({ kind: 'Zone' }),
    Promise.all(POLICY_KINDS.map((kind) => store.list({ kind }))),
    readCatalog(sources.catalogJson),
  ]);
  const reported = new Map(telemetry.zones().map((z) => [z.zone, z]));
  const zones = zoneList.items
    .map((z) => zoneView(z, reported.get(z.metadata.name)?.lastReport ?? null))
    .sort((a, b) => a.name.localeCompare(b.name));
  for (const z of zones) {
    const r = reported.get(z.name);
    if (r !== undefined && z.proxies === 0) z.proxies = r.proxies;
  }

  const nodes = new Map<string, ServiceNode>();
  for (const zone of catalog?.zones ?? []) {
    for (const s of zone.services) {
      let healthy = 0;
      let total = 0;
      for (const g of s.endpointGroups) {
        healthy += g.healthy;
        total += g.total;
      }
      const id = `${zone.zone}/${s.namespace}/${s.name}`;
      nodes.set(id, { id, zone: zone.zone, namespace: s.namespace, name: s.name, healthy, total });
    }
  }
  const ensure = (zone: string, namespace: string, name: string): string => {
    const id = `${zone}/${namespace}/${name}`;
    if (!nodes.has(id)) nodes.set(id, { id, zone, namespace, name, healthy: null, total: null });
    return id;
  };
  const edges: GraphEdge[] = telemetry.edges().map((e) => {
    const from = ensure(e.source.zone, e.source.namespace, e.source.service);
    let toZone = e.destination.zone;
    if (toZone === 'unknown') {
      // Nothing answered (a fault, no endpoint): point at where the service runs, the caller's zone first.
      const candidates = [...nodes.values()].filter(
        (n) =>
          n.namespace === e.destination.namespace && n.name === e.destination.service && n.healthy !== null,
      );
      toZone = candidates.find((n) => n.zone === e.source.zone)?.zone ?? candidates[0]?.zone ?? e.source.zone;
    }
    const to = ensure(toZone, e.destination.namespace, e.destination.service);
    return { ...e, from, to };
  });

  const policies = policyLists
    .flatMap((l) => l.items)
    .map((p) => policyView(p, zones))
    .sort((a, b) => `${a.kind}/${a.namespace}/${a.name}`.localeCompare(`${b.kind}/${b.namespace}/${b.name}`));

  const vms = telemetry
    .zones()
    .flatMap((z) => z.vms.map((vm) => ({ ...vm, zone: z.zone })))
    .sort((a, b) => `${a.zone}/${a.namespace}/${a.name}`.localeCompare(`${b.zone}/${b.namespace}/${b.name}`));

  return {
    generatedAt: new Date().toISOString(),
    windowMs: telemetry.windowMs,
    zones,
    services: [...nodes.values()].sort((a, b) => a.id.localeCompare(b.id)),
    edges,
    policies,
    vms,
  };
}

async function readCatalog(read: (() => Promise<Buffer>) | undefined): Promise<ServiceCatalog | undefined> {
  if (read === undefined) return undefined;
  try {
    const value: unknown = JSON.parse((await read()).toString('utf8'));
    if (!isObject(value) || !Array.isArray(value.zones)) return undefined;
    return value as unknown as ServiceCatalog;
  } catch {
    return undefined;
  }
}

function zoneView(zone: StoredResource, lastTelemetry: string | null): ZoneView {
  const status: Obj = isObject(zone.status) ? zone.status : {};
  const spec: Obj = isObject(zone.spec) ? zone.spec : {};
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
  return {
    name: zone.metadata.name,
    enabled: spec.enabled !== false,
    connected: status.connected === true,
    lastSync: str(status.lastSync),
    configRevision: num(status.appliedRevision),
    lag: num(status.lag) ?? 0,
    proxies: num(status.proxies) ?? 0,
    version: str(status.version) ?? '',
    errors: Array.isArray(status.errors)
      ? status.errors.filter((e): e is string => typeof e === 'string')
      : [],
    lastTelemetry,
  };
}

const SEVERITY: Record<PolicyZoneState, number> = { applied: 0, pending: 1, disconnected: 2, rejected: 3 };

function policyView(p: StoredResource, zones: readonly ZoneView[]): PolicyView {
  const revision = Number(p.metadata.resourceVersion ?? 0) || 0;
  const namespace = p.metadata.namespace ?? '';
  const where =
    namespace === '' ? `${p.kind} ${p.metadata.name}` : `${p.kind} ${namespace}/${p.metadata.name}`;
  const perZone = zones
    .filter((z) => z.enabled)
    .map((z) => {
      // The zone's errors name what it could not apply ("not applied: Kind ns/name: why").
      const error = z.errors.find((e) => e.includes(`${where}:`));
      if (error !== undefined) return { zone: z.name, state: 'rejected' as const, error };
      if ((z.configRevision ?? 0) >= revision) return { zone: z.name, state: 'applied' as const };
      return { zone: z.name, state: z.connected ? ('pending' as const) : ('disconnected' as const) };
    });
  let state: PolicyZoneState = perZone.length === 0 ? 'pending' : 'applied';
  for (const z of perZone) if (SEVERITY[z.state] > SEVERITY[state]) state = z.state;
  return { kind: p.kind, namespace, name: p.metadata.name, revision, state, zones: perZone };
}
