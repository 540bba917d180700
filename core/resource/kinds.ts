/**
 * The kind registry: every kind meshfed accepts, the names the CLI and REST
 * API know it by, the API groups and versions it is served under, and its
 * schema (from ./schemas, the one source of truth for CRDs and validation).
 */

import { ErrorCodes, MeshError } from '../errors.js';
import type { KindInfo } from './kind.js';
import { destinationRuleSpec } from './schemas/destination-rule.js';
import { meshSpec, zoneSpec, zoneStatus } from './schemas/meshfed.js';
import { authorizationPolicySpec, peerAuthenticationSpec } from './schemas/security.js';
import { serviceEntrySpec, workloadEntrySpecSchema, workloadGroupSpec } from './schemas/service-entry.js';
import { virtualServiceSpec } from './schemas/virtual-service.js';

/** The API groups and versions a family of Istio kinds is served under. */
interface IstioFamily {
  groups: string[];
  crdGroup: string;
  versions: string[];
}

// Istio serves its networking kinds as v1alpha3, v1beta1 and v1 and its
// security kinds as v1beta1 and v1; all of them are the same schema.
const NETWORKING: IstioFamily = {
  groups: ['networking.istio.io', 'networking.meshfed.io'],
  crdGroup: 'networking.meshfed.io',
  versions: ['v1alpha3', 'v1beta1', 'v1'],
};
const SECURITY: IstioFamily = {
  groups: ['security.istio.io', 'security.meshfed.io'],
  crdGroup: 'security.meshfed.io',
  versions: ['v1beta1', 'v1'],
};

/** English plural of a lower-case kind, as Kubernetes and Istio spell it. */
function pluralOf(singular: string): string {
  return singular.endsWith('y') ? `${singular.slice(0, -1)}ies` : `${singular}s`;
}

/** A namespaced Istio kind, served under the Istio group and its meshfed twin. */
function istioKind(
  family: IstioFamily,
  kind: string,
  shortNames: string[],
  specSchema: KindInfo['specSchema'],
): KindInfo {
  const singular = kind.toLowerCase();
  return {
    kind,
    plural: pluralOf(singular),
    singular,
    shortNames,
    groups: [...family.groups],
    crdGroup: family.crdGroup,
    versions: [...family.versions],
    storageVersion: 'v1',
    namespaced: true,
    specSchema,
    userWritable: true,
  };
}

/** A cluster-scoped kind of meshfed's own API group, written by users. */
function meshfedKind(
  kind: string,
  plural: string,
  specSchema: KindInfo['specSchema'],
  statusSchema?: KindInfo['statusSchema'],
): KindInfo {
  return {
    kind,
    plural,
    singular: kind.toLowerCase(),
    shortNames: [],
    groups: ['meshfed.io'],
    crdGroup: 'meshfed.io',
    versions: ['v1alpha1'],
    storageVersion: 'v1alpha1',
    namespaced: false,
    specSchema,
    ...(statusSchema === undefined ? {} : { statusSchema }),
    userWritable: true,
  };
}

const registry: readonly KindInfo[] = Object.freeze([
  istioKind(NETWORKING, 'VirtualService', ['vs'], virtualServiceSpec),
  istioKind(NETWORKING, 'DestinationRule', ['dr'], destinationRuleSpec),
  istioKind(NETWORKING, 'ServiceEntry', ['se'], serviceEntrySpec),
  istioKind(NETWORKING, 'WorkloadEntry', ['we'], workloadEntrySpecSchema),
  istioKind(NETWORKING, 'WorkloadGroup', ['wg'], workloadGroupSpec),
  istioKind(SECURITY, 'PeerAuthentication', ['pa'], peerAuthenticationSpec),
  istioKind(SECURITY, 'AuthorizationPolicy', ['ap'], authorizationPolicySpec),
  meshfedKind('Mesh', 'meshes', meshSpec),
  // Users create and enable/disable zones; the status is written by the
  // zone control plane through the status subresource.
  meshfedKind('Zone', 'zones', zoneSpec, zoneStatus),
]);

const byName = new Map<string, KindInfo>();
const byKind = new Map<string, KindInfo>();
for (const info of registry) {
  byKind.set(info.kind, info);
  for (const name of [info.kind, info.plural, info.singular, ...info.shortNames]) {
    byName.set(name.toLowerCase(), info);
  }
}

/** Every kind meshfed knows, in a stable order. */
export function allKinds(): readonly KindInfo[] {
  return registry;
}

/**
 * Look a kind up by the names a user types: the kind, its plural, singular or
 * a short name (`vs`, `virtualservices`, `VirtualService`), case-insensitively.
 */
export function findKind(name: string): KindInfo | undefined {
  return byName.get(name.toLowerCase());
}

function accepted(info: KindInfo): string {
  const groups = info.groups.join(' or ');
  return `${info.kind} (${groups}, versions ${info.versions.join(', ')})`;
}

/**
 * The kind an `apiVersion`/`kind` pair names. The kind is matched exactly as
 * Kubernetes does; the group may be the Istio one or the meshfed one.
 * @throws MeshError UNKNOWN_KIND naming what was given and what is accepted.
 */
export function resolveKind(apiVersion: string, kind: string): KindInfo {
  const info = byKind.get(kind);
  if (info === undefined) {
    const hint = findKind(kind);
    const suggestion = hint === undefined ? '' : ` (did you mean ${hint.kind}?)`;
    throw new MeshError(
      ErrorCodes.UNKNOWN_KIND,
      `unknown kind "${kind}" in apiVersion "${apiVersion}"${suggestion}; accepted kinds: ${registry
        .map((k) => k.kind)
        .join(', ')}`,
      { field: 'kind', details: { apiVersion, kind } },
    );
  }
  const slash = apiVersion.indexOf('/');
  const group = slash < 0 ? '' : apiVersion.slice(0, slash);
  const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
  if (!info.groups.includes(group) || !info.versions.includes(version)) {
    throw new MeshError(
      ErrorCodes.UNKNOWN_KIND,
      `kind ${kind} is not served under apiVersion "${apiVersion}"; accepted: ${accepted(info)}`,
      { field: 'apiVersion', details: { apiVersion, kind } },
    );
  }
  return info;
}
