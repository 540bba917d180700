/**
 * Store kinds KDS keeps for itself, outside the public kind registry so no
 * REST route reaches them (as core/auth/internal-kinds.ts).
 */

import type { Resource } from '../resource/resource.js';
import {
  INTERNAL_API_VERSION,
  SECRET_KIND,
  SERVICE_CATALOG_KIND,
  TOKEN_RECORD_KIND,
} from '../auth/internal-kinds.js';
import { VM_JOIN_TOKEN_KIND, VM_REVOKED_CERT_KIND } from '../vm/vm-kinds.js';

/**
 * Global side, one object `store`: spec { id } — a random identity created
 * once per store. Revisions are comparable only within one store, so a zone
 * that held revisions of another store (a wiped volatile global) resyncs
 * in full.
 */
export const KDS_STORE_ID_KIND = 'MeshfedKdsStoreId';
export const KDS_STORE_ID_NAME = 'store';

/**
 * Global side, one per zone (named after it): spec { inventory: ZoneInventory,
 * reportedAt, replica }. Kept in the store so every replica builds the same
 * catalog whichever replica a zone is connected to.
 */
export const ZONE_INVENTORY_KIND = 'MeshfedZoneInventory';

/**
 * Global side, one per running replica: spec { address, renewedAt,
 * expiresAt }. A zone whose stream is on a replica whose lease expired
 * counts as disconnected from the lease's expiry.
 */
export const KDS_REPLICA_KIND = 'MeshfedKdsReplica';

/**
 * Zone side, one object `global`: spec { storeId, revision, syncedAt,
 * replica } — what the zone holds of global, for resume after a restart.
 */
export const KDS_STATE_KIND = 'MeshfedKdsState';
export const KDS_STATE_NAME = 'global';

/** A cluster-scoped internal object. */
export function internalResource(kind: string, name: string, spec: Record<string, unknown>): Resource {
  return { apiVersion: INTERNAL_API_VERSION, kind, metadata: { name }, spec };
}

/**
 * Every internal kind a zone CP writes to its store. With a `kubernetes://`
 * store each is a cluster-scoped custom resource of `internal.meshfed.io`
 * that must exist before the zone starts (deploy/crds, written by
 * scripts/gen-crds.ts; the zone's ClusterRole in deploy/zone/rbac.yaml
 * grants them), unless the store may install CRDs itself (`installCrds`).
 */
export const ZONE_INTERNAL_KINDS: readonly string[] = [
  SECRET_KIND,
  TOKEN_RECORD_KIND,
  SERVICE_CATALOG_KIND,
  KDS_STATE_KIND,
  VM_JOIN_TOKEN_KIND,
  VM_REVOKED_CERT_KIND,
];
