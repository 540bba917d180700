/**
 * The labels a workload gives itself when it registers (universal
 * registration, VM enrollment): Kubernetes label syntax, and none of the
 * keys the mesh sets itself. `meshfed.io/origin` marks an entry global owns
 * and `meshfed.io/workload-group` a VM's; a workload that could set them
 * could make its entry look like one it is not, and lock its owner out.
 */

import { isDns1123Subdomain } from './dns-name.js';
import { invalid, isObject } from './validate-common.js';

/** Label keys under these prefixes are the mesh's (the zone's and Istio's), never a workload's. */
export const RESERVED_LABEL_PREFIXES: readonly string[] = ['meshfed.io/', 'istio.io/'];

const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

/** A Kubernetes label key: `[prefix/]name`, the prefix a DNS subdomain, the name at most 63 characters. */
export function isLabelKey(key: string): boolean {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? '' : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (slash >= 0 && (prefix === '' || !isDns1123Subdomain(prefix))) return false;
  return LABEL_NAME.test(name);
}

/**
 * Checks a registration's `labels` object.
 * @throws MeshError VALIDATION naming `<field>.<key>`: a malformed key or value, or a reserved key.
 */
export function parseWorkloadLabels(value: unknown, field: string): Record<string, string> {
  if (value === undefined) return {};
  if (!isObject(value)) throw invalid(field, 'must be an object of label names to values');
  const out: Record<string, string> = {};
  for (const [key, labelValue] of Object.entries(value)) {
    if (!isLabelKey(key)) throw invalid(`${field}.${key}`, 'is not a valid label name');
    if (RESERVED_LABEL_PREFIXES.some((p) => key.startsWith(p))) {
      throw invalid(
        `${field}.${key}`,
        `labels under ${RESERVED_LABEL_PREFIXES.join(' and ')} are set by the mesh, not the workload`,
      );
    }
    if (typeof labelValue !== 'string' || !LABEL_VALUE.test(labelValue)) {
      throw invalid(`${field}.${key}`, 'must be a label value (at most 63 letters, digits, "-", "_", ".")');
    }
    out[key] = labelValue;
  }
  return out;
}
