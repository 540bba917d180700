/**
 * The policies the compiler uses, each validated with the same validator
 * as the API (`validateResource`), because objects can reach the store
 * without passing the API (Kubernetes, KDS, a hand-edited file). Results
 * are cached by uid and resourceVersion, so a change revalidates only what
 * changed. Invalid objects are skipped and reported.
 */

import type { Resource, StoredResource } from '../../core/resource/resource.js';
import { validateResource } from '../../core/resource/validate.js';
import type { IstioObject } from '../../core/mesh/snapshot.js';
import type { ProblemList } from './compile-problems.js';

export interface VirtualServiceSpec {
  hosts?: string[];
  gateways?: string[];
  http?: IstioObject[];
  tcp?: IstioObject[];
  tls?: IstioObject[];
  exportTo?: string[];
}

export interface SubsetSpec {
  name: string;
  labels?: Record<string, string>;
  trafficPolicy?: IstioObject;
}

export interface DestinationRuleSpec {
  host: string;
  trafficPolicy?: IstioObject;
  subsets?: SubsetSpec[];
  exportTo?: string[];
  workloadSelector?: { matchLabels?: Record<string, string> };
}

export interface PeerAuthenticationSpec {
  selector?: { matchLabels?: Record<string, string> };
  mtls?: { mode?: string };
  portLevelMtls?: Record<string, { mode?: string }>;
}

export interface AuthorizationPolicySpec {
  selector?: { matchLabels?: Record<string, string> };
  targetRef?: IstioObject;
  targetRefs?: IstioObject[];
  rules?: IstioObject[];
  action?: string;
}

export interface MeshSpec {
  trustDomain?: string;
  mtls?: { mode?: string };
  routing?: { preferLocalZone?: boolean; pinToZone?: boolean; pinnedServices?: string[] };
}

/** A validated policy. */
export interface Policy<Spec> {
  resource: Resource<Spec>;
  uid: string;
  name: string;
  namespace: string;
  annotations: Record<string, string>;
}

export const POLICY_KINDS = [
  'VirtualService',
  'DestinationRule',
  'PeerAuthentication',
  'AuthorizationPolicy',
  'Mesh',
] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];

interface CacheEntry {
  resourceVersion: string;
  result: Policy<unknown> | { error: string };
}

/** Validates stored policies, remembering results between passes. */
export class PolicyValidator {
  private cache = new Map<string, CacheEntry>();

  /**
   * The valid objects among `stored`, oldest first (Istio's rule: when two
   * policies conflict, the older one wins), reporting the invalid ones.
   */
  validAll<Spec>(stored: Iterable<StoredResource>, problems: ProblemList, seen: Set<string>): Policy<Spec>[] {
    const valid: Array<Policy<Spec> & { created: string }> = [];
    for (const object of stored) {
      const uid = object.metadata.uid;
      seen.add(uid);
      let entry = this.cache.get(uid);
      if (entry === undefined || entry.resourceVersion !== object.metadata.resourceVersion) {
        entry = { resourceVersion: object.metadata.resourceVersion, result: validate(object) };
        this.cache.set(uid, entry);
      }
      if ('error' in entry.result) {
        problems.add(object, 'error', entry.result.error);
        continue;
      }
      valid.push({ ...(entry.result as Policy<Spec>), created: object.metadata.creationTimestamp });
    }
    valid.sort((a, b) =>
      a.created === b.created
        ? `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`)
        : a.created.localeCompare(b.created),
    );
    return valid;
  }

  /** Forgets objects not seen in the last pass. */
  prune(seen: Set<string>): void {
    for (const uid of this.cache.keys()) if (!seen.has(uid)) this.cache.delete(uid);
  }
}

function validate(object: StoredResource): Policy<unknown> | { error: string } {
  try {
    const { resource } = validateResource(object, {
      defaultNamespace: object.metadata.namespace ?? 'default',
    });
    return {
      resource,
      uid: object.metadata.uid,
      name: resource.metadata.name,
      namespace: resource.metadata.namespace ?? '',
      annotations: resource.metadata.annotations ?? {},
    };
  } catch (err) {
    const field = (err as { field?: unknown }).field;
    const message = err instanceof Error ? err.message : String(err);
    return {
      error: typeof field === 'string' && !message.includes(field) ? `${field}: ${message}` : message,
    };
  }
}
