/**
 * What meshfed knows about each kind: names the CLI and API accept, the API
 * groups and versions it is served under, and its spec schema. The registry
 * itself lives in kinds.ts; this file is only the contract.
 */

import type { JsonSchema } from './json-schema.js';

export interface KindInfo {
  /** Canonical kind: `VirtualService`. */
  kind: string;
  /** Lower-case plural used in REST paths: `virtualservices`. */
  plural: string;
  singular: string;
  shortNames: string[];
  /** Every API group the kind is accepted under; the first is the Istio/meshfed canonical one. */
  groups: string[];
  /** Group its CRD is registered under in Kubernetes (`*.meshfed.io`, never clashing with Istio). */
  crdGroup: string;
  /** Accepted versions, oldest first. */
  versions: string[];
  /** The version CRDs mark as storage version and the API answers with by default. */
  storageVersion: string;
  namespaced: boolean;
  /** Schema of `spec` (and `status` when the kind has one), as in the CRD's openAPIV3Schema. */
  specSchema: JsonSchema;
  statusSchema?: JsonSchema;
  /** False for kinds the REST API does not expose for writing by users (e.g. Zone status written by zones). */
  userWritable: boolean;
}
