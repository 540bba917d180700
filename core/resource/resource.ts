/**
 * The resource envelope every kind shares: Kubernetes' shape, so that Istio
 * YAML applies unchanged and the same objects can live in CRDs.
 */

export interface ObjectMeta {
  name: string;
  /** Empty for cluster-scoped kinds (Mesh, Zone). */
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Store revision of the last write, as a decimal string. Opaque to clients. */
  resourceVersion?: string;
  /** Incremented on every change of `spec`. */
  generation?: number;
  uid?: string;
  creationTimestamp?: string;
}

export interface Resource<Spec = Record<string, unknown>> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: Spec;
  status?: Record<string, unknown>;
}

/** A resource as it comes out of a store: metadata is filled in. */
export interface StoredResource<Spec = Record<string, unknown>> extends Resource<Spec> {
  metadata: ObjectMeta & {
    resourceVersion: string;
    generation: number;
    uid: string;
    creationTimestamp: string;
  };
}

/**
 * Identity of a resource in a store. `kind` is the canonical kind name
 * (`VirtualService`), independent of the API group it was applied under;
 * `namespace` is '' for cluster-scoped kinds.
 */
export interface ResourceKey {
  kind: string;
  namespace: string;
  name: string;
}

export function keyOf(resource: Resource): ResourceKey {
  return {
    kind: resource.kind,
    namespace: resource.metadata.namespace ?? '',
    name: resource.metadata.name,
  };
}

/** `kind/namespace/name`, the form stores index by and logs print. */
export function formatKey(key: ResourceKey): string {
  return `${key.kind}/${key.namespace}/${key.name}`;
}
