/**
 * `GET /inspect/services/:name` (read access): one service as this zone
 * sees it — its local endpoints with their health, every other zone that
 * runs it as that zone's east-west gateway with the healthy count it
 * reported through KDS — and the failover order a given proxy would use.
 * The order is computed by `core/mesh/locality-plan.ts`, the code the
 * proxy itself runs, over the endpoints compiled for that proxy.
 *
 * Query: `namespace` (when the name is not `name.namespace`), `proxy`
 * (an MDS proxy id) or `workload` (`namespace/name`) for the caller.
 * Without a caller the plan is that of a proxy in this zone with no labels.
 */

import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { Router } from '../../core/http/router.js';
import { sendJson } from '../../core/http/respond.js';
import {
  localityOfLabels,
  planLocality,
  type LocalityContext,
  type LocalityRules,
} from '../../core/mesh/locality-plan.js';
import { parseLocalityRules } from '../../core/mesh/locality-rules.js';
import type { EndpointConfig } from '../../core/mesh/snapshot.js';
import { ANY_SUBSET } from '../../core/mesh/sni.js';
import type { WorkloadEndpoint } from '../discovery/discovery.js';
import { serviceHost } from '../compiler/host-names.js';
import type { MeshView, ServiceView } from '../compiler/mesh-view.js';
import { buildOutbound } from '../compiler/outbound.js';
import { dependenciesOf, scopedServices } from '../compiler/service-scope.js';
import type { MdsServer } from '../mds/mds-server.js';

export interface InspectServiceSources {
  zone: string;
  mds: Pick<MdsServer, 'record'>;
  /** The compiler's current view (rebuilt when inputs change). */
  view(): MeshView;
}

/** One endpoint as the inspect answer shows it. */
export interface InspectedEndpoint {
  zone: string;
  /** `address:port`. */
  address: string;
  via: EndpointConfig['via'];
  /** The workload (local), or `gateway` for a remote zone. */
  workload: string;
  healthy: boolean;
  weight: number;
  locality?: string;
  /** Priority level (0 first) in the caller's plan; undefined when the plan leaves it out. */
  priority?: number;
  /** `distribute`: the share (percent) of the group holding this endpoint. */
  share?: number;
}

export interface InspectedZone {
  zone: string;
  local: boolean;
  /** Remote zones: the gateway other zones reach it through. */
  gateway?: string;
  /** Remote zones: whether the zone is connected to global now. */
  connected?: boolean;
  healthy: number;
  total: number;
  endpoints: InspectedEndpoint[];
  /** Why the zone gets no traffic from the caller at all, when it gets none. */
  excluded?: string;
}

export interface ServiceInspection {
  zone: string;
  service: string;
  host: string;
  caller: {
    zone: string;
    locality: string;
    proxy?: string;
    workload?: string;
    labels: Record<string, string>;
  };
  policy: {
    destinationRule?: string;
    preferLocalZone: boolean;
    pinnedToZone: boolean;
    localityLbSetting?: Record<string, unknown>;
    mode: 'priority' | 'distribute';
  };
  zones: InspectedZone[];
  /** The caller's order: levels of `zone address` strings; the first with a healthy endpoint takes the traffic. */
  order: Array<{ priority: number; endpoints: string[]; healthy: number; share?: number }>;
  /** The priority level traffic goes to now (the first with a healthy endpoint), or -1 (503 no healthy upstream). */
  active: number;
}

export function registerInspectServiceRoutes(router: Router, sources: InspectServiceSources): void {
  router.add('GET', '/inspect/services/:name', 'read', (ctx) => {
    const name = ctx.params.name ?? '';
    const namespace = ctx.query.get('namespace') ?? undefined;
    const proxy = ctx.query.get('proxy') ?? undefined;
    const workload = ctx.query.get('workload') ?? undefined;
    for (const [field, value] of [
      ['namespace', namespace],
      ['proxy', proxy],
      ['workload', workload],
    ] as const) {
      if (value !== undefined && value.trim() === '') {
        throw new MeshError(ErrorCodes.VALIDATION, `${field} is empty: give a value or leave it out`, {
          field,
        });
      }
    }
    if (proxy !== undefined && workload !== undefined) {
      throw new MeshError(ErrorCodes.VALIDATION, 'give either proxy or workload, not both', {
        field: 'proxy',
      });
    }
    sendJson(ctx.res, 200, inspectService(sources, { name, namespace, proxy, workload }));
  });
}

export interface InspectServiceQuery {
  /** `name`, `name.namespace` or the FQDN. */
  name: string;
  namespace?: string | undefined;
  proxy?: string | undefined;
  /** `namespace/name` of a workload of this zone. */
  workload?: string | undefined;
}

/** The inspection of one service for one caller (see the file comment). */
export function inspectService(
  sources: InspectServiceSources,
  query: InspectServiceQuery,
): ServiceInspection {
  const view = sources.view();
  const svc = findService(view, query.name, query.namespace);
  const caller = callerOf(sources, view, query);
  const callerNamespace = caller.workload?.namespace ?? svc.namespace;
  const callerLabels = caller.workload?.labels ?? {};
  if (caller.workload !== undefined) {
    const scope = scopedServices(view, callerNamespace, dependenciesOf(caller.workload));
    if (!scope.includes(svc)) {
      throw new MeshError(
        ErrorCodes.NOT_FOUND,
        `${caller.workload.namespace}/${caller.workload.name} may not call ${svc.name}.${svc.namespace} (exportTo or its dependency list leave it out), so it has no failover order for it`,
      );
    }
  }
  const dr = view.destinationRuleFor(svc, callerNamespace, callerLabels);
  const outbound = buildOutbound(view, {
    svc,
    vs: view.virtualServiceFor(svc, callerNamespace),
    dr,
    sameNamespace: svc.namespace === callerNamespace,
  });
  const cluster = outbound.clusters.find((c) => c.subset === ANY_SUBSET);
  const endpoints = (cluster?.endpoints ?? []).map((config) => ({ config }));
  const context: LocalityContext = {
    zone: view.zone,
    locality: localityOfLabels(callerLabels),
    labels: callerLabels,
  };
  const setting = outbound.locality.setting;
  const plan = planLocality(endpoints, context, outbound.locality, rulesOf(setting));

  const priorityOf = new Map<EndpointConfig, number>();
  const shareOf = new Map<EndpointConfig, number>();
  const order: ServiceInspection['order'] = [];
  if (plan.distribute !== undefined) {
    const total = plan.distribute.reduce((sum, g) => sum + g.weight, 0);
    plan.distribute.forEach((group, i) => {
      const share = total > 0 ? Math.round((group.weight / total) * 1000) / 10 : 0;
      for (const e of group.endpoints) {
        priorityOf.set(e.config, 0);
        shareOf.set(e.config, share);
      }
      order.push({
        priority: i,
        endpoints: group.endpoints.map((e) => label(e.config)),
        healthy: group.endpoints.filter((e) => e.config.healthy).length,
        share,
      });
    });
  } else {
    plan.levels.forEach((level, i) => {
      for (const e of level) priorityOf.set(e.config, i);
      order.push({
        priority: i,
        endpoints: level.map((e) => label(e.config)),
        healthy: level.filter((e) => e.config.healthy).length,
      });
    });
  }
  const active =
    plan.distribute !== undefined
      ? order.some((o) => o.healthy > 0)
        ? 0
        : -1
      : order.findIndex((o) => o.healthy > 0);

  const zones = zonesOf(
    view,
    svc,
    cluster?.endpoints ?? [],
    priorityOf,
    shareOf,
    outbound.locality.pinnedToZone,
  );
  return {
    zone: view.zone,
    service: `${svc.name}.${svc.namespace}`,
    host: svc.host,
    caller: {
      zone: view.zone,
      locality: context.locality,
      ...(query.proxy === undefined ? {} : { proxy: query.proxy }),
      ...(caller.workload === undefined
        ? {}
        : { workload: `${caller.workload.namespace}/${caller.workload.name}` }),
      labels: callerLabels,
    },
    policy: {
      ...(dr === undefined ? {} : { destinationRule: `${dr.namespace}/${dr.name}` }),
      preferLocalZone: outbound.locality.preferLocalZone,
      pinnedToZone: outbound.locality.pinnedToZone,
      ...(setting === undefined ? {} : { localityLbSetting: setting }),
      mode: plan.distribute === undefined ? 'priority' : 'distribute',
    },
    zones,
    order,
    active,
  };
}

function label(e: EndpointConfig): string {
  return `${e.zone} ${e.address}:${e.port}`;
}

function findService(view: MeshView, name: string, namespace: string | undefined): ServiceView {
  if (name === '')
    throw new MeshError(ErrorCodes.VALIDATION, 'a service name is required', { field: 'name' });
  const candidates: string[] = [];
  if (name.includes('.svc.')) candidates.push(name);
  else if (namespace !== undefined) candidates.push(serviceHost(name, namespace));
  else if (name.includes('.')) {
    const dot = name.indexOf('.');
    candidates.push(serviceHost(name.slice(0, dot), name.slice(dot + 1)));
  } else candidates.push(serviceHost(name, 'default'));
  for (const host of candidates) {
    const svc = view.services.get(host);
    if (svc !== undefined) return svc;
  }
  throw new MeshError(
    ErrorCodes.NOT_FOUND,
    `no service ${candidates[0] ?? name} in zone ${view.zone} or in the catalog of other zones` +
      (namespace === undefined && !name.includes('.') ? ' (name it as name.namespace)' : ''),
  );
}

function callerOf(
  sources: InspectServiceSources,
  view: MeshView,
  query: InspectServiceQuery,
): { workload?: WorkloadEndpoint } {
  if (query.proxy !== undefined) {
    const record = sources.mds.record(query.proxy);
    if (record === undefined) {
      throw new MeshError(
        ErrorCodes.NOT_FOUND,
        `no proxy with id ${query.proxy} is or was connected to this zone`,
      );
    }
    if (record.kind !== 'sidecar') {
      throw new MeshError(ErrorCodes.VALIDATION, `proxy ${query.proxy} is a ${record.kind}, not a sidecar`, {
        field: 'proxy',
      });
    }
    const workload = view.workload(record.namespace, record.workload);
    if (workload === undefined) {
      throw new MeshError(
        ErrorCodes.NOT_FOUND,
        `proxy ${query.proxy} runs for ${record.namespace}/${record.workload}, which discovery does not know now`,
      );
    }
    return { workload };
  }
  if (query.workload !== undefined) {
    const slash = query.workload.indexOf('/');
    if (slash <= 0 || slash === query.workload.length - 1) {
      throw new MeshError(
        ErrorCodes.VALIDATION,
        `workload must be namespace/name, not ${JSON.stringify(query.workload)}`,
        {
          field: 'workload',
        },
      );
    }
    const workload = view.workload(query.workload.slice(0, slash), query.workload.slice(slash + 1));
    if (workload === undefined) {
      throw new MeshError(ErrorCodes.NOT_FOUND, `no workload ${query.workload} in zone ${view.zone}`);
    }
    return { workload };
  }
  return {};
}

function zonesOf(
  view: MeshView,
  svc: ServiceView,
  compiled: readonly EndpointConfig[],
  priorityOf: Map<EndpointConfig, number>,
  shareOf: Map<EndpointConfig, number>,
  pinned: boolean,
): InspectedZone[] {
  const show = (e: EndpointConfig): InspectedEndpoint => {
    const priority = priorityOf.get(e);
    const share = shareOf.get(e);
    return {
      zone: e.zone,
      address: `${e.address}:${e.port}`,
      via: e.via,
      workload: e.via === 'gateway' ? 'gateway' : (e.workload ?? '-'),
      healthy: e.healthy,
      weight: e.weight,
      ...(e.locality === undefined ? {} : { locality: e.locality }),
      ...(priority === undefined ? {} : { priority }),
      ...(share === undefined ? {} : { share }),
    };
  };
  const localEndpoints = compiled.filter((e) => e.zone === view.zone);
  const zones: InspectedZone[] = [];
  if (svc.local.length > 0 || localEndpoints.length > 0) {
    zones.push({
      zone: view.zone,
      local: true,
      healthy: svc.local.filter((w) => w.healthy).length,
      total: svc.local.length,
      endpoints: localEndpoints.map(show),
    });
  }
  for (const { zone, service } of svc.remote) {
    let healthy = 0;
    let total = 0;
    for (const group of service.endpointGroups) {
      healthy += group.healthy;
      total += group.total;
    }
    const endpoints = compiled.filter((e) => e.zone === zone.zone && e.via === 'gateway').map(show);
    const gateway = zone.gateway === undefined ? undefined : `${zone.gateway.address}:${zone.gateway.port}`;
    const excluded = pinned
      ? `the service is pinned to zone ${view.zone}`
      : gateway === undefined
        ? 'the zone reports no east-west gateway'
        : total === 0
          ? 'the zone reports no endpoints with a sidecar'
          : endpoints.every((e) => e.priority === undefined)
            ? 'the locality rules give it no share'
            : undefined;
    zones.push({
      zone: zone.zone,
      local: false,
      ...(gateway === undefined ? {} : { gateway }),
      connected: zone.connected,
      healthy,
      total,
      endpoints,
      ...(excluded === undefined ? {} : { excluded }),
    });
  }
  return zones;
}

/**
 * The rules as the proxy reads them (the same strict reader). A setting the
 * proxy would refuse cannot come from the API, which validates it; one that
 * reached the store another way is planned as no rules here, while the proxy
 * NACKs it and keeps its last good config.
 */
function rulesOf(setting: Record<string, unknown> | undefined): LocalityRules | undefined {
  if (setting === undefined) return undefined;
  try {
    return parseLocalityRules(setting, 'localityLbSetting');
  } catch {
    return undefined;
  }
}
