/**
 * meshfed's own kinds (meshfed.io): Mesh, the mesh-wide settings, and Zone,
 * one cluster or VM network that runs a zone control plane.
 */

import type { JsonSchema } from '../json-schema.js';
import { bool, enumOf, obj, str, strings } from './common.js';

/** Mesh spec schema. */
export const meshSpec: JsonSchema = obj('Mesh-wide settings.', {
  trustDomain: str('SPIFFE trust domain of workload identities.', { default: 'cluster.local' }),
  mtls: obj('Mesh-wide mutual TLS default.', {
    mode: enumOf('mTLS mode between workloads.', ['STRICT', 'PERMISSIVE']),
  }),
  routing: {
    ...obj('Cross-zone routing defaults.', {
      preferLocalZone: bool('Prefer endpoints in the caller zone; fail over to other zones.', {
        default: true,
      }),
      pinToZone: bool(
        'Data residency for every service: calls never leave the caller zone, not even when it has no healthy endpoint.',
      ),
      pinnedServices: strings(
        'Data residency per service: hosts whose calls never leave the caller zone (name.namespace, the FQDN, or *.namespace for a whole namespace).',
      ),
    }),
    // An empty default lets the nested default apply when `routing` is absent,
    // both in the API and in Kubernetes' structural defaulting.
    default: {},
  },
});

/** Zone spec schema. */
export const zoneSpec: JsonSchema = obj('A zone: one cluster or network with its own zone control plane.', {
  enabled: bool('Whether the zone takes part in the mesh; a disabled zone gets no traffic.', {
    default: true,
  }),
  description: str('Free-form description.'),
});

/** Zone status schema: written by the zone control plane, free-form. */
export const zoneStatus: JsonSchema = {
  type: 'object',
  description: 'Status reported by the zone control plane.',
  'x-kubernetes-preserve-unknown-fields': true,
};
