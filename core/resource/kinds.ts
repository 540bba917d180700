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

const NETWORKING = ['networking.istio.io', 'networking.meshfed.io'];
const SECURITY = ['security.istio.io', 'security.meshfed.io'];
// Istio serves its networking kinds as v1alpha3, v1beta1 and v1 and its
// security kinds as v1beta1 and v1; all of them are the same schema.
const NETWORKING_VERSIONS = ['v1alpha3', 'v1beta1', 'v1'];
const SECURITY_VERSIONS = ['v1beta1', 'v1'];

/** English plural of a lower-case kind, as Kubernetes and Istio spell it. */
function pluralOf(singular: string): string {
  return singular.endsWith('y') ? `${singular.slice(0, -1)}ies` : `${singular}s`;
}

function networking(kind: string, shortNames: string[], specSchema: KindInfo['specSchema']): KindInfo {
  const singular = kind.toLowerCase();
  return {
    kind,
    plural: pluralOf(singular),
    singular,
    shortNames,
    groups: [...NETWORKING],
    crdGroup: 'networking.meshfed.io',
    versions: [...NETWORKING_VERSIONS],
    storageVersion: 'v1',
    namespaced: true,
    specSchema,
    userWritable: true,
  };
}

function security(kind: string, shortNames: string[], specSchema: KindInfo['specSchema']): KindInfo {
  const singular = kind.toLowerCase();
  return {
    kind,
    plural: pluralOf(singular),
    singular,
    shortNames,
    groups: [...SECURITY],
    crdGroup: 'security.meshfed.io',
    versions: [...SECURITY_VERSIONS],
    storageVersion: 'v1',
    namespaced: true,
    specSchema,
    userWritable: true,
  };
}

const registry: readonly KindInfo[] = Object.freeze([
  networking('VirtualService', ['vs'], virtualServiceSpec),
  networking('DestinationRule', ['dr'], destinationRuleSpec),
  networking('ServiceEntry', ['se'], serviceEntrySpec),
  networking('WorkloadEntry', ['we'], workloadEntrySpecSchema),
  networking('WorkloadGroup', ['wg'], workloadGroupSpec),
  security('PeerAuthentication', ['pa'], peerAuthenticationSpec),
  security('AuthorizationPolicy', ['ap'], authorizationPolicySpec),
  {
    kind: 'Mesh',
    plural: 'meshes',
    singular: 'mesh',
    shortNames: [],
    groups: ['meshfed.io'],
    crdGroup: 'meshfed.io',
    versions: ['v1alpha1'],
    storageVersion: 'v1alpha1',
    namespaced: false,
    specSchema: meshSpec,
    userWritable: true,
  },
  {
    kind: 'Zone',
    plural: 'zones',
    singular: 'zone',
    shortNames: [],
    groups: ['meshfed.io'],
    crdGroup: 'meshfed.io',
    versions: ['v1alpha1'],
    storageVersion: 'v1alpha1',
    namespaced: false,
    specSchema: zoneSpec,
    statusSchema: zoneStatus,
    // Users create and enable/disable zones; the status is written by the
    // zone control plane through the status subresource.
    userWritable: true,
  },
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
