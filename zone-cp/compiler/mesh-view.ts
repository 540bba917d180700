/**
 * One consistent view of everything the compiler reads, rebuilt after each
 * (debounced) change: services merged from every discovery source and the
 * cross-zone catalog, the validated policies indexed by host and
 * namespace, and the mesh settings. Per-proxy compilation only looks
 * things up here; work shared by many proxies (a service's clusters, its
 * JSON) is cached on the view, so it is done once per change.
 */

import type { ServiceCatalog, RemoteZone, ServiceInventory } from '../../core/mesh/inventory.js';
import type { MtlsMode, ServicePort, TrustConfig } from '../../core/mesh/snapshot.js';
import type { StoredResource } from '../../core/resource/resource.js';
import type { LocalService, ServicePortSpec, WorkloadEndpoint } from '../discovery/discovery.js';
import { ProblemList } from './compile-problems.js';
import { hostMatches, hostSpecificity, resolveHost, serviceHost } from './host-names.js';
import { selectorMatches } from './labels.js';
import {
  PolicyValidator,
  type AuthorizationPolicySpec,
  type DestinationRuleSpec,
  type MeshSpec,
  type PeerAuthenticationSpec,
  type Policy,
  type PolicyKind,
  type VirtualServiceSpec,
} from './policy-index.js';

/** Istio's root configuration namespace: policies here apply mesh-wide. */
export const ROOT_NAMESPACE = 'istio-system';
/** Annotation on a DestinationRule: keep calls to the host inside the caller's zone (data residency). */
export const PINNED_TO_ZONE_ANNOTATION = 'meshfed.io/pinned-to-zone';
/** Annotation on the Mesh: proxies write access logs. */
export const ACCESS_LOG_ANNOTATION = 'meshfed.io/access-log';

export interface ServiceView {
  name: string;
  namespace: string;
  host: string;
  ports: ServicePort[];
  /** This zone's port definitions (target ports), when the service runs here. */
  portSpecs: ServicePortSpec[];
  /** This zone's endpoints. */
  local: WorkloadEndpoint[];
  exportTo: string[];
  /** The service in other zones, from global's catalog. */
  remote: Array<{ zone: RemoteZone; service: ServiceInventory }>;
}

export interface MeshSettings {
  preferLocalZone: boolean;
  /** Mesh.spec.routing.pinToZone: no service is called across zones. */
  pinToZone: boolean;
  /** Mesh.spec.routing.pinnedServices: `name.namespace`, FQDN or `*.namespace`. */
  pinnedServices: string[];
  /** Mesh.spec.mtls.mode, if set. */
  mtlsMode?: MtlsMode;
  accessLog: boolean;
}

export interface MeshViewInput {
  zone: string;
  services: readonly LocalService[];
  workloads: readonly WorkloadEndpoint[];
  policies: Record<PolicyKind, Iterable<StoredResource>>;
  catalog?: ServiceCatalog;
  trust: TrustConfig;
}

interface HostIndexed<Spec> {
  policy: Policy<Spec>;
  /** Resolved host patterns. */
  hosts: string[];
  exportTo: string[];
}

export class MeshView {
  readonly zone: string;
  readonly trust: TrustConfig;
  readonly settings: MeshSettings;
  readonly problems: ProblemList;
  readonly services = new Map<string, ServiceView>();
  readonly virtualServices: HostIndexed<VirtualServiceSpec>[] = [];
  readonly destinationRules: HostIndexed<DestinationRuleSpec>[] = [];
  readonly peerAuthentications: Policy<PeerAuthenticationSpec>[];
  readonly authorizationPolicies: Policy<AuthorizationPolicySpec>[];
  private readonly workloadsByKey = new Map<string, WorkloadEndpoint>();
  private readonly servicesByWorkload = new Map<string, ServiceView[]>();
  private readonly visibleByNamespace = new Map<string, ServiceView[]>();
  private readonly vsByHost = new Map<string, HostIndexed<VirtualServiceSpec>[]>();
  private readonly drByHost = new Map<string, HostIndexed<DestinationRuleSpec>[]>();
  /** Caches of derived data, filled on first use; the view is rebuilt on change, so they never go stale. */
  readonly cache = new Map<string, unknown>();

  constructor(input: MeshViewInput, validator: PolicyValidator) {
    this.zone = input.zone;
    this.trust = input.trust;
    this.problems = new ProblemList();
    const seen = new Set<string>();
    const meshes = validator.validAll<MeshSpec>(input.policies.Mesh, this.problems, seen);
    const vs = validator.validAll<VirtualServiceSpec>(input.policies.VirtualService, this.problems, seen);
    const dr = validator.validAll<DestinationRuleSpec>(input.policies.DestinationRule, this.problems, seen);
    this.peerAuthentications = validator.validAll<PeerAuthenticationSpec>(
      input.policies.PeerAuthentication,
      this.problems,
      seen,
    );
    this.authorizationPolicies = validator.validAll<AuthorizationPolicySpec>(
      input.policies.AuthorizationPolicy,
      this.problems,
      seen,
    );
    validator.prune(seen);
    this.settings = meshSettings(meshes);
    this.indexServices(input);
    for (const policy of vs) {
      const spec = policy.resource.spec;
      // Rules bound to gateways only (no "mesh") do not program sidecars.
      if (spec.gateways !== undefined && spec.gateways.length > 0 && !spec.gateways.includes('mesh'))
        continue;
      if (spec.tls !== undefined && spec.tls.length > 0) {
        this.problems.add(
          policy.resource,
          'warning',
          'tls routes are not supported by meshfed sidecars; ignored',
        );
      }
      if ((spec.http ?? []).some((route) => route.delegate !== undefined)) {
        this.problems.add(
          policy.resource,
          'warning',
          'delegate routes are not supported; those routes are ignored',
        );
      }
      const entry = {
        policy,
        hosts: (spec.hosts ?? []).map((h) => resolveHost(h, policy.namespace)),
        exportTo: spec.exportTo ?? ['*'],
      };
      this.virtualServices.push(entry);
      for (const host of entry.hosts) push(this.vsByHost, host, entry);
    }
    for (const policy of dr) {
      const spec = policy.resource.spec;
      const entry = {
        policy,
        hosts: [resolveHost(spec.host, policy.namespace)],
        exportTo: spec.exportTo ?? ['*'],
      };
      this.destinationRules.push(entry);
      for (const host of entry.hosts) push(this.drByHost, host, entry);
    }
  }

  /**
   * Whether calls to `svc` must stay in the caller's zone (data residency):
   * the Mesh pins every service, lists this one, or the DestinationRule
   * that applies carries the pinned-to-zone annotation.
   */
  isPinned(svc: ServiceView, dr: Policy<DestinationRuleSpec> | undefined): boolean {
    return dr?.annotations[PINNED_TO_ZONE_ANNOTATION] === 'true' || this.isPinnedByMesh(svc);
  }

  /**
   * Pinned by the Mesh (pinToZone, pinnedServices): the same answer for every
   * caller in every zone, so the serving zone's gateway can enforce it too.
   * A DestinationRule's annotation pins only the callers that rule applies to.
   */
  isPinnedByMesh(svc: ServiceView): boolean {
    if (this.settings.pinToZone) return true;
    for (const entry of this.settings.pinnedServices) {
      if (entry === `*.${svc.namespace}` || entry === `${svc.name}.${svc.namespace}` || entry === svc.host)
        return true;
    }
    return false;
  }

  workload(namespace: string, name: string): WorkloadEndpoint | undefined {
    return this.workloadsByKey.get(`${namespace}/${name}`);
  }

  /** Services that have this workload as a local endpoint (its inbound ports). */
  servicesOf(workload: WorkloadEndpoint): readonly ServiceView[] {
    return this.servicesByWorkload.get(`${workload.namespace}/${workload.name}`) ?? [];
  }

  /** Every service a proxy in `namespace` may see (exportTo). */
  visibleServices(namespace: string): readonly ServiceView[] {
    let visible = this.visibleByNamespace.get(namespace);
    if (visible === undefined) {
      visible = [...this.services.values()].filter((svc) =>
        isVisible(svc.exportTo, svc.namespace, namespace),
      );
      this.visibleByNamespace.set(namespace, visible);
    }
    return visible;
  }

  /**
   * The VirtualService that routes `host` for a proxy in `namespace`: exact
   * hosts before wildcards; then a rule in the proxy's namespace, then in the
   * service's, then anywhere; oldest first.
   */
  virtualServiceFor(svc: ServiceView, namespace: string): Policy<VirtualServiceSpec> | undefined {
    return pick(this.vsByHost, this.virtualServices, svc, namespace, () => true);
  }

  /**
   * The DestinationRule for `host` as Istio looks it up: the proxy's
   * namespace (a rule with a matching workloadSelector first), then the
   * service's namespace, then the root namespace.
   */
  destinationRuleFor(
    svc: ServiceView,
    namespace: string,
    proxyLabels: Readonly<Record<string, string>>,
  ): Policy<DestinationRuleSpec> | undefined {
    const applies = (entry: HostIndexed<DestinationRuleSpec>): boolean => {
      const selector = entry.policy.resource.spec.workloadSelector;
      if (selector === undefined) return true;
      return entry.policy.namespace === namespace && selectorMatches(selector.matchLabels ?? {}, proxyLabels);
    };
    const withSelector = pick(
      this.drByHost,
      this.destinationRules,
      svc,
      namespace,
      (e) => e.policy.resource.spec.workloadSelector !== undefined && applies(e),
    );
    return (
      withSelector ??
      pick(
        this.drByHost,
        this.destinationRules,
        svc,
        namespace,
        (e) => applies(e) && e.policy.resource.spec.workloadSelector === undefined,
      )
    );
  }

  private indexServices(input: MeshViewInput): void {
    for (const workload of input.workloads)
      this.workloadsByKey.set(`${workload.namespace}/${workload.name}`, workload);
    for (const local of input.services) {
      const host = serviceHost(local.name, local.namespace);
      let view = this.services.get(host);
      if (view === undefined) {
        view = {
          name: local.name,
          namespace: local.namespace,
          host,
          ports: [],
          portSpecs: [],
          local: [],
          exportTo: local.exportTo.length > 0 ? [...local.exportTo] : ['*'],
          remote: [],
        };
        this.services.set(host, view);
      } else {
        // Two sources know the service: the union of their views.
        for (const e of local.exportTo) if (!view.exportTo.includes(e)) view.exportTo.push(e);
      }
      for (const spec of local.ports) {
        if (view.portSpecs.some((p) => p.port === spec.port)) continue;
        view.portSpecs.push(spec);
        view.ports.push({ name: spec.name, port: spec.port, protocol: spec.protocol });
      }
      const seen = new Set(view.local.map((e) => `${e.namespace}/${e.name}/${e.address}`));
      for (const endpoint of local.endpoints) {
        const key = `${endpoint.namespace}/${endpoint.name}/${endpoint.address}`;
        if (seen.has(key)) continue;
        seen.add(key);
        view.local.push(endpoint);
        const workloadKey = `${endpoint.namespace}/${endpoint.name}`;
        const list = this.servicesByWorkload.get(workloadKey) ?? [];
        if (!list.includes(view)) list.push(view);
        this.servicesByWorkload.set(workloadKey, list);
      }
    }
    for (const zone of input.catalog?.zones ?? []) {
      if (zone.zone === input.zone) continue;
      for (const service of zone.services) {
        const host = serviceHost(service.name, service.namespace);
        let view = this.services.get(host);
        if (view === undefined) {
          view = {
            name: service.name,
            namespace: service.namespace,
            host,
            ports: [],
            portSpecs: [],
            local: [],
            exportTo: ['*'],
            remote: [],
          };
          this.services.set(host, view);
        }
        for (const port of service.ports) {
          if (!view.ports.some((p) => p.port === port.port)) view.ports.push({ ...port });
        }
        view.remote.push({ zone, service });
      }
    }
    for (const view of this.services.values()) view.ports.sort((a, b) => a.port - b.port);
  }
}

/** Istio exportTo: '*' everyone, '.' the owner's namespace, else the namespaces named. */
export function isVisible(exportTo: readonly string[], owner: string, viewer: string): boolean {
  if (exportTo.length === 0) return true;
  for (const entry of exportTo) {
    if (entry === '*' || entry === viewer || (entry === '.' && owner === viewer)) return true;
  }
  return false;
}

function push<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function pick<Spec>(
  byHost: Map<string, HostIndexed<Spec>[]>,
  all: readonly HostIndexed<Spec>[],
  svc: ServiceView,
  namespace: string,
  accept: (entry: HostIndexed<Spec>) => boolean,
): Policy<Spec> | undefined {
  const visible = (e: HostIndexed<Spec>) => isVisible(e.exportTo, e.policy.namespace, namespace) && accept(e);
  let candidates = (byHost.get(svc.host) ?? []).filter(visible);
  if (candidates.length === 0) {
    // Wildcard rules: the most specific pattern wins.
    let best = -1;
    for (const entry of all) {
      if (!visible(entry)) continue;
      for (const pattern of entry.hosts) {
        if (!pattern.includes('*') || !hostMatches(pattern, svc.host)) continue;
        const specificity = hostSpecificity(pattern);
        if (specificity > best) {
          best = specificity;
          candidates = [entry];
        } else if (specificity === best && !candidates.includes(entry)) {
          candidates.push(entry);
        }
      }
    }
  }
  if (candidates.length === 0) return undefined;
  const rank = (e: HostIndexed<Spec>): number =>
    e.policy.namespace === namespace
      ? 0
      : e.policy.namespace === svc.namespace
        ? 1
        : e.policy.namespace === ROOT_NAMESPACE
          ? 2
          : 3;
  // Candidates are oldest first already; a stable sort keeps that within a rank.
  return [...candidates].sort((a, b) => rank(a) - rank(b))[0]?.policy;
}

function meshSettings(meshes: Policy<MeshSpec>[]): MeshSettings {
  const mesh = meshes.find((m) => m.name === 'default') ?? meshes[0];
  const spec = mesh?.resource.spec;
  const mode = spec?.mtls?.mode;
  return {
    preferLocalZone: spec?.routing?.preferLocalZone ?? true,
    pinToZone: spec?.routing?.pinToZone ?? false,
    pinnedServices: spec?.routing?.pinnedServices ?? [],
    ...(mode === 'STRICT' || mode === 'PERMISSIVE' ? { mtlsMode: mode } : {}),
    accessLog: mesh?.annotations[ACCESS_LOG_ANNOTATION] === 'true',
  };
}
