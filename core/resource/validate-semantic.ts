/**
 * The semantic pass: every duration the schema marks, then the rules of the
 * resource's kind. It runs after the schema passed, so shapes are known.
 */

import { parseDuration } from './duration.js';
import type { JsonSchema } from './json-schema.js';
import type { KindInfo } from './kind.js';
import { index, invalid, isObject, key } from './validate-common.js';
import type { Ctx, Obj } from './validate-common.js';
import { checkMesh } from './validate-semantic-meshfed.js';
import {
  checkDestinationRule,
  checkServiceEntry,
  checkVirtualService,
  checkWorkloadEntry,
  checkWorkloadGroup,
} from './validate-semantic-networking.js';
import { checkAuthorizationPolicy, checkPeerAuthentication } from './validate-semantic-security.js';

// Durations that Istio allows to be zero, meaning "disabled".
const ZERO_DURATION_OK = new Set(['timeout', 'perTryTimeout', 'idleTimeout']);

/** Check every string the schema marks as a duration. */
function checkDurations(data: unknown, schema: JsonSchema, path: string, name: string): void {
  if (typeof data === 'string') {
    if (schema.format !== 'duration') return;
    let ms: number;
    try {
      ms = parseDuration(data);
    } catch (err) {
      throw invalid(path, err instanceof Error ? err.message : 'invalid duration');
    }
    if (ms === 0 && !ZERO_DURATION_OK.has(name))
      throw invalid(path, `duration must be positive, got "${data}"`);
    if (ms > 0 && ms < 0.001) throw invalid(path, `duration must be at least 1us, got "${data}"`);
    return;
  }
  if (Array.isArray(data)) {
    if (schema.items === undefined) return;
    for (let i = 0; i < data.length; i++) checkDurations(data[i], schema.items, index(path, i), name);
    return;
  }
  if (!isObject(data)) return;
  for (const [k, v] of Object.entries(data)) {
    const child =
      schema.properties?.[k] ??
      (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined);
    if (child !== undefined) checkDurations(v, child, key(path, k), k);
  }
}

/**
 * Check the rules of `info`'s kind on a schema-valid `spec`, rewriting
 * deprecated fields in place.
 *
 * @throws MeshError VALIDATION naming the offending field.
 */
export function checkSpec(info: KindInfo, spec: Obj, warnings: string[]): void {
  checkDurations(spec, info.specSchema, 'spec', 'spec');
  const ctx: Ctx = { warnings };
  switch (info.kind) {
    case 'VirtualService':
      return checkVirtualService(ctx, spec);
    case 'DestinationRule':
      return checkDestinationRule(ctx, spec);
    case 'ServiceEntry':
      return checkServiceEntry(spec);
    case 'WorkloadEntry':
      return checkWorkloadEntry('spec', spec);
    case 'WorkloadGroup':
      return checkWorkloadGroup(spec);
    case 'PeerAuthentication':
      return checkPeerAuthentication(spec);
    case 'AuthorizationPolicy':
      return checkAuthorizationPolicy(spec);
    case 'Mesh':
      return checkMesh(spec);
    default:
      return;
  }
}
