/**
 * Kinds the control planes keep in their stores for themselves. They are not
 * in the public kind registry, so no REST route can read or write them: keys
 * never leave through the API.
 */

import type { Resource } from '../resource/resource.js';

/** spec: { certPem?, keyPem, … } — CA material and token signing keys. */
export const SECRET_KIND = 'MeshfedSecret';
/** spec: { kind, subject, zone?, expiresAt?, revoked, createdAt } — one per issued token, keyed by token id. */
export const TOKEN_RECORD_KIND = 'MeshfedTokenRecord';

export const INTERNAL_API_VERSION = 'internal.meshfed.io/v1';

export const ROOT_CA_SECRET = 'root-ca';
export const TOKEN_KEY_SECRET = 'token-signing-key';

export function secretResource(name: string, spec: Record<string, unknown>): Resource {
  return { apiVersion: INTERNAL_API_VERSION, kind: SECRET_KIND, metadata: { name }, spec };
}

/*
 * Zone-side store keys (all `MeshfedSecret`, cluster-scoped). They are the
 * contract between the KDS client, which writes what global sends, and the
 * zone's CA and compiler, which read it; in standalone mode (no global) the
 * zone CA creates ZONE_CA_SECRET and TRUST_BUNDLE_SECRET itself.
 */
/** spec: { certPem: intermediate (or standalone root) followed by its chain, keyPem, source: 'global' | 'standalone' } */
export const ZONE_CA_SECRET = 'zone-ca';
/** spec: { trustDomain: string, roots: string[] } — the mesh roots every workload trusts. */
export const TRUST_BUNDLE_SECRET = 'trust-bundle';
/** spec: { publicKeysPem: string[] } — global's token verification keys, so global-issued admin tokens work on the zone. */
export const GLOBAL_TOKEN_KEYS_SECRET = 'global-token-keys';
/** spec: { tokenIds: string[] } — ids of global-issued tokens global revoked (the whole set it last sent). */
export const GLOBAL_TOKEN_REVOCATIONS_SECRET = 'global-token-revocations';
/** Kind of the cross-zone catalog global sends (one object named `catalog`, spec: ServiceCatalog from core/mesh/inventory.ts). */
export const SERVICE_CATALOG_KIND = 'MeshfedServiceCatalog';
/** Label on objects a zone received from global over KDS (value `global`); local writes never touch them. */
export const ORIGIN_LABEL = 'meshfed.io/origin';
