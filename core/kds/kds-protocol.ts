/**
 * KDS protocol constants shared by the global server and the zone client:
 * versions and capabilities with their negotiation, the global CP's SPIFFE
 * ID, which kinds travel and which zone a resource is for. docs/kds.md is
 * the prose form of this file.
 */

import { ErrorCodes, MeshError } from '../errors.js';
import { allKinds } from '../resource/kinds.js';
import type { Resource } from '../resource/resource.js';

/**
 * Protocol versions. 1: every stream starts with a full resync. 2 adds
 * resume (Hello carries store id + applied revision, global answers with
 * the changes since) and progress marks. A new version is added when the
 * meaning of an existing message changes; new optional features are
 * capabilities instead.
 */
export const KDS_PROTOCOL_VERSION = 2;
export const KDS_MIN_PROTOCOL_VERSION = 1;

/** Optional features, announced in Hello and answered (intersected) in Welcome. */
export const KdsCapability = {
  /** Delta resume from the zone's applied revision (needs protocol ≥ 2). */
  RESUME: 'resume',
  /** Revision-only Changes so an idle zone's revision keeps up with global's. */
  PROGRESS: 'progress',
  /** Changes payloads gzip-compressed. */
  GZIP: 'gzip',
} as const;

export type KdsCapabilityName = (typeof KdsCapability)[keyof typeof KdsCapability];

export const KDS_CAPABILITIES: readonly string[] = Object.values(KdsCapability);

/** Default global KDS port (DESIGN.md). */
export const DEFAULT_KDS_PORT = 5685;

/** The identity the global CP's KDS server certificate carries (the zone checks it, not the hostname). */
export const GLOBAL_CP_NAMESPACE = 'meshfed-system';
export const GLOBAL_CP_SERVICE_ACCOUNT = 'global-cp';

export function globalCpSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/${GLOBAL_CP_NAMESPACE}/sa/${GLOBAL_CP_SERVICE_ACCOUNT}`;
}

/** Path part every global CP SPIFFE ID ends with, whatever the trust domain. */
export const GLOBAL_CP_SPIFFE_PATH = `/ns/${GLOBAL_CP_NAMESPACE}/sa/${GLOBAL_CP_SERVICE_ACCOUNT}`;

/**
 * A resource at global labelled `meshfed.io/zone=<name>` is sent to that
 * zone only; unlabelled resources go to every zone.
 */
export const ZONE_SCOPE_LABEL = 'meshfed.io/zone';

/** Annotation the zone puts on synced objects: global's revision of that state. */
export const GLOBAL_REVISION_ANNOTATION = 'meshfed.io/global-revision';

/** gRPC trailer carrying the MESHFED_ERR_* code of a refusal. */
export const ERROR_CODE_METADATA = 'meshfed-error-code';

/** Header-less gRPC path of the one method, for logs. */
export const KDS_METHOD = '/meshfed.kds.v1.GlobalSync/Sync';

/** Changes payloads are cut into chunks of about this many bytes of JSON (well below gRPC's 4 MiB default). */
export const DEFAULT_CHUNK_BYTES = 512 * 1024;

/**
 * Largest KDS message either side accepts. A single resource may be up to
 * the API's body limit (4 MiB) and goes in a chunk of its own.
 */
export const MAX_KDS_MESSAGE_BYTES = 16 * 1024 * 1024;

/** Kinds global sends to zones: every public kind but Zone (zones are global's own registry). */
export function syncedKinds(): string[] {
  return allKinds()
    .map((k) => k.kind)
    .filter((kind) => kind !== 'Zone');
}

/** Whether a global resource is for `zone` (its zone label is absent or names it). */
export function appliesToZone(resource: Resource, zone: string): boolean {
  const target = resource.metadata.labels?.[ZONE_SCOPE_LABEL];
  return target === undefined || target === '' || target === zone;
}

export interface VersionRange {
  min: number;
  max: number;
}

/**
 * The version two sides speak: the highest both support. Throws
 * UNSUPPORTED_VERSION naming both ranges and which side must move.
 */
export function negotiateVersion(zone: VersionRange, global: VersionRange): number {
  const version = Math.min(zone.max, global.max);
  if (version < Math.max(zone.min, global.min) || version < 1) {
    const older = zone.max < global.min ? 'zone' : 'global';
    throw new MeshError(
      ErrorCodes.UNSUPPORTED_VERSION,
      `no common KDS protocol version: the zone speaks ${formatRange(zone)}, global speaks ${formatRange(global)}; upgrade the ${older} control plane`,
      { details: { zone, global } },
    );
  }
  return version;
}

function formatRange(range: VersionRange): string {
  return range.min === range.max ? `version ${range.max}` : `versions ${range.min}-${range.max}`;
}

/** The capabilities both sides have and the version allows. */
export function negotiateCapabilities(
  offered: readonly string[],
  supported: readonly string[],
  version: number,
): string[] {
  return supported.filter((cap) => offered.includes(cap) && (cap !== KdsCapability.RESUME || version >= 2));
}
