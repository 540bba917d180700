/**
 * The Store contract over Kubernetes custom resources, for control planes
 * that run in a cluster: policies applied with kubectl, synced from global
 * over KDS, and read by the compiler all live in CRDs (`*.meshfed.io`).
 *
 * Mapping (documented in docs/kubernetes.md):
 * - A kind of the registry maps to its CRD (`crdGroup`, storage version,
 *   plural, scope: core/resource/kinds.ts). Any other kind (the internal
 *   ones: MeshfedSecret, …) maps to `<lower-case kind>s.internal.meshfed.io`
 *   v1, a schemaless CRD; its scope comes from the CRD, or from the first
 *   object written when the store creates that CRD itself.
 * - Revisions are Kubernetes resourceVersions, which are etcd revisions:
 *   one counter for the whole cluster, decimal integers. Kubernetes calls
 *   them opaque; every etcd-backed API server makes them integers, and the
 *   store refuses (STORE_UNAVAILABLE) an answer whose version is not one.
 *   Revisions therefore advance with writes of anything in the cluster, not
 *   only ours: gaps are normal.
 * - Compare-and-set is Kubernetes' optimistic concurrency: replace with
 *   `metadata.resourceVersion` (409 Conflict → CONFLICT), delete with
 *   `preconditions.resourceVersion`. An unconditional update or delete is a
 *   read followed by a conditional write, retried on conflict, because
 *   custom resources refuse replaces without a resourceVersion.
 * - Watch from a revision is a Kubernetes watch from that resourceVersion;
 *   `410 Gone` is REVISION_TOO_OLD. A watch of every kind merges one
 *   stream per kind and releases events in revision order (see
 *   `reorderWindowMs`). Streams the server ends (watch timeouts) or a
 *   network drop are resumed from the last revision seen, with backoff.
 * - `fromRevision: 0` means Kubernetes' "any": the current objects as
 *   ADDED events, then changes.
 */

import { randomUUID } from 'node:crypto';

import {
  ApiException,
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  Watch,
} from '@kubernetes/client-node';
import type { V1CustomResourceDefinition } from '@kubernetes/client-node';

import {
  INTERNAL_API_VERSION,
  SECRET_KIND,
  SERVICE_CATALOG_KIND,
  TOKEN_RECORD_KIND,
} from '../auth/internal-kinds.js';
import { ErrorCodes, MeshError, isMeshError } from '../errors.js';
import { createLogger } from '../log.js';
import type { Logger } from '../log.js';
import { buildCrd } from '../resource/crd.js';
import { allKinds } from '../resource/kinds.js';
import type { KindInfo } from '../resource/kind.js';
import type { Resource, ResourceKey, StoredResource } from '../resource/resource.js';
import { formatKey } from '../resource/resource.js';
import { validateResource } from '../resource/validate.js';
import { parseLabelSelector } from './label-selector.js';
import {
  alreadyExistsError,
  checkFromRevision,
  checkResource,
  closedError,
  conflictError,
  deepEqual,
  expectedVersionOf,
  notFoundError,
} from './store-object.js';
import type {
  ListOptions,
  ListResult,
  Store,
  Watch as StoreWatch,
  WatchEvent,
  WatchEventType,
  WatchHandlers,
  WatchOptions,
  WriteOptions,
} from './store.js';

/** Where to find the cluster. */
export interface KubeConfigOptions {
  /** A kubeconfig file; default `KUBECONFIG`, then `~/.kube/config`, then the in-cluster ServiceAccount. */
  kubeconfigPath?: string;
  /** A context of that kubeconfig other than its current one. */
  context?: string;
}

/** Loads a KubeConfig as kubectl would, or fails with CONFIG naming what is wrong. */
export function loadKubeConfig(options: KubeConfigOptions = {}): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (options.kubeconfigPath !== undefined) kc.loadFromFile(options.kubeconfigPath);
    else kc.loadFromDefault();
  } catch (err) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `cannot load kubeconfig${options.kubeconfigPath === undefined ? '' : ` ${options.kubeconfigPath}`}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (options.context !== undefined) {
    if (!kc.getContextObject(options.context)) {
      throw new MeshError(ErrorCodes.CONFIG, `kubeconfig has no context "${options.context}"`);
    }
    kc.setCurrentContext(options.context);
  }
  if (!kc.getCurrentCluster()) throw new MeshError(ErrorCodes.CONFIG, 'kubeconfig has no current cluster');
  return kc;
}

export interface KubernetesStoreOptions extends KubeConfigOptions {
  kubeConfig?: KubeConfig;
  logger?: Logger;
  /**
   * Create missing CRDs: every registry kind's and the internal kinds' when
   * the store opens, any other kind's on its first write. Needs RBAC on
   * customresourcedefinitions; without it, install deploy/crds/ beforehand.
   * Default false.
   */
  installCrds?: boolean;
  /** Create a missing namespace on create instead of failing NOT_FOUND. Default false. */
  createNamespaces?: boolean;
  /**
   * Reader views skip invalid objects: list and watch leave out objects of
   * registry kinds that fail `validateResource` (an object turning invalid
   * is a DELETED event) and report them in `errors()`. They can reach the
   * cluster with kubectl without passing meshfed's API. `get` returns them
   * as stored, for writers. Default false.
   */
  validate?: boolean;
  /** Hold time of an event of a multi-kind watch waiting for earlier revisions of other kinds. Default 50 ms. */
  reorderWindowMs?: number;
}

/** One object the store could not hand out, with the reason. */
export interface StoreProblem {
  resource: string;
  reason: string;
}

interface KindMapping {
  kind: string;
  group: string;
  version: string;
  plural: string;
  namespaced: boolean;
  /** Status is a subresource: a replace ignores it and it needs its own write. */
  statusSubresource: boolean;
  /** A registry kind (validated when `validate` is on). */
  registry: boolean;
}

type Json = Record<string, unknown>;

const INTERNAL_GROUP = INTERNAL_API_VERSION.split('/')[0] ?? 'internal.meshfed.io';
const INTERNAL_VERSION = INTERNAL_API_VERSION.split('/')[1] ?? 'v1';
/** Internal kinds whose scope is known without asking the cluster. */
const INTERNAL_CLUSTER_KINDS = [SECRET_KIND, TOKEN_RECORD_KIND, SERVICE_CATALOG_KIND];
const PAGE_SIZE = 500;
const MAX_CAS_RETRIES = 20;
const WATCH_RETRY_INITIAL_MS = 100;
const WATCH_RETRY_MAX_MS = 5_000;
const CRD_ESTABLISH_TIMEOUT_MS = 10_000;

function registryMapping(info: KindInfo): KindMapping {
  return {
    kind: info.kind,
    group: info.crdGroup,
    version: info.storageVersion,
    plural: info.plural,
    namespaced: info.namespaced,
    statusSubresource: true,
    registry: true,
  };
}

function internalMapping(kind: string, namespaced: boolean): KindMapping {
  return {
    kind,
    group: INTERNAL_GROUP,
    version: INTERNAL_VERSION,
    plural: `${kind.toLowerCase()}s`,
    namespaced,
    statusSubresource: false,
    registry: false,
  };
}

/** The schemaless CRD of a kind outside the registry. */
export function internalCrd(mapping: { kind: string; plural: string; namespaced: boolean }): Json {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${mapping.plural}.${INTERNAL_GROUP}`,
      labels: { 'app.kubernetes.io/part-of': 'meshfed' },
    },
    spec: {
      group: INTERNAL_GROUP,
      names: {
        kind: mapping.kind,
        listKind: `${mapping.kind}List`,
        plural: mapping.plural,
        singular: mapping.kind.toLowerCase(),
        categories: ['meshfed-internal'],
      },
      scope: mapping.namespaced ? 'Namespaced' : 'Cluster',
      versions: [
        {
          name: INTERNAL_VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
        },
      ],
    },
  };
}

/** The CRDs a meshfed control plane needs: every registry kind and the internal kinds. */
export function meshfedCrds(): Json[] {
  return [
    ...allKinds().map((info) => buildCrd(info)),
    ...INTERNAL_CLUSTER_KINDS.map((kind) => internalCrd(internalMapping(kind, false))),
  ];
}

interface KubeStatus {
  code: number;
  reason: string;
  message: string;
  details?: { kind?: string; name?: string };
}

/** The Status object inside a client-node ApiException (its body is the raw text). */
function statusOf(err: unknown): KubeStatus | undefined {
  if (!(err instanceof ApiException)) return undefined;
  const code = typeof err.code === 'number' ? err.code : 0;
  let parsed: Partial<KubeStatus> = {};
  try {
    const body: unknown = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
    if (body !== null && typeof body === 'object') parsed = body as Partial<KubeStatus>;
  } catch {
    // not JSON: keep the code
  }
  return {
    code,
    reason: typeof parsed.reason === 'string' ? parsed.reason : '',
    message: typeof parsed.message === 'string' ? parsed.message : `HTTP ${code}`,
    ...(parsed.details ? { details: parsed.details } : {}),
  };
}

function isObj(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function revisionOf(version: unknown, what: string): number {
  const text = typeof version === 'string' ? version : '';
  if (!/^\d+$/.test(text)) {
    throw new MeshError(
      ErrorCodes.STORE_UNAVAILABLE,
      `the Kubernetes API answered resourceVersion "${text}" for ${what}; the kubernetes store needs an etcd-backed API server (integer resourceVersions)`,
    );
  }
  return Number(text);
}

export class KubernetesStore implements Store {
  readonly backend = 'kubernetes';

  private readonly kc: KubeConfig;
  private readonly custom: CustomObjectsApi;
  private readonly ext: ApiextensionsV1Api;
  private readonly core: CoreV1Api;
  private readonly logger: Logger;
  private readonly mappings = new Map<string, KindMapping>();
  private readonly problems = new Map<string, string>();
  private readonly watches = new Set<KubeStoreWatch>();
  private closed = false;

  private constructor(private readonly options: KubernetesStoreOptions) {
    this.kc = options.kubeConfig ?? loadKubeConfig(options);
    this.custom = this.kc.makeApiClient(CustomObjectsApi);
    this.ext = this.kc.makeApiClient(ApiextensionsV1Api);
    this.core = this.kc.makeApiClient(CoreV1Api);
    this.logger = options.logger ?? createLogger('store.kubernetes');
    for (const info of allKinds()) this.mappings.set(info.kind, registryMapping(info));
    for (const kind of INTERNAL_CLUSTER_KINDS) this.mappings.set(kind, internalMapping(kind, false));
  }

  /** Opens the store; with `installCrds`, creates the missing CRDs and waits until they are established. */
  static async open(options: KubernetesStoreOptions = {}): Promise<KubernetesStore> {
    const store = new KubernetesStore(options);
    if (options.installCrds === true) {
      for (const crd of meshfedCrds()) await store.ensureCrd(crd);
    }
    return store;
  }

  /** Objects the reader views skipped (malformed, or invalid with `validate`), with the reason. */
  errors(): StoreProblem[] {
    return [...this.problems.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([resource, reason]) => ({ resource, reason }));
  }

  // ---- kind mapping -------------------------------------------------------

  /**
   * The CRD of `kind`. For a kind outside the registry and the internal
   * table the cluster is asked; `createScope` creates its CRD (installCrds).
   */
  private async mappingFor(
    kind: string,
    createScope?: 'namespaced' | 'cluster',
  ): Promise<KindMapping | undefined> {
    const known = this.mappings.get(kind);
    if (known) return known;
    const probe = internalMapping(kind, false);
    try {
      const crd = await this.ext.readCustomResourceDefinition({ name: `${probe.plural}.${INTERNAL_GROUP}` });
      const mapping = internalMapping(kind, crd.spec.scope === 'Namespaced');
      this.mappings.set(kind, mapping);
      return mapping;
    } catch (err) {
      if (statusOf(err)?.code !== 404) throw this.translate(err, `the CRD of ${kind}`);
    }
    if (createScope === undefined || this.options.installCrds !== true) return undefined;
    const mapping = internalMapping(kind, createScope === 'namespaced');
    await this.ensureCrd(internalCrd(mapping));
    const settled = await this.mappingFor(kind);
    return settled;
  }

  private async ensureCrd(crd: Json): Promise<void> {
    const name = String((crd.metadata as Json).name);
    try {
      await this.ext.createCustomResourceDefinition({ body: crd as unknown as V1CustomResourceDefinition });
      this.logger.info('installed CRD', { crd: name });
    } catch (err) {
      if (statusOf(err)?.code !== 409) throw this.translate(err, `CRD ${name}`);
    }
    // A new CRD serves requests only once it is established.
    const deadline = Date.now() + CRD_ESTABLISH_TIMEOUT_MS;
    for (;;) {
      const got = await this.ext.readCustomResourceDefinition({ name });
      if (got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) return;
      if (Date.now() > deadline) {
        throw new MeshError(
          ErrorCodes.STORE_UNAVAILABLE,
          `CRD ${name} was not established within ${CRD_ESTABLISH_TIMEOUT_MS} ms`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  private checkScope(mapping: KindMapping, key: ResourceKey): void {
    if (mapping.namespaced && key.namespace === '') {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `${formatKey(key)}: ${mapping.kind} is namespaced in Kubernetes; metadata.namespace is required`,
        { field: 'metadata.namespace' },
      );
    }
    if (!mapping.namespaced && key.namespace !== '') {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `${formatKey(key)}: ${mapping.kind} is cluster-scoped in Kubernetes; it takes no namespace`,
        { field: 'metadata.namespace' },
      );
    }
  }

  // ---- conversion ---------------------------------------------------------

  /** A Kubernetes object to the store's form, or the reason it cannot be one. */
  private convert(obj: unknown, mapping: KindMapping): { resource: StoredResource } | { reason: string } {
    if (!isObj(obj) || !isObj(obj.metadata)) return { reason: 'metadata is missing' };
    const meta = obj.metadata;
    if (typeof meta.name !== 'string' || meta.name === '') return { reason: 'metadata.name is missing' };
    if (obj.spec !== undefined && !isObj(obj.spec)) return { reason: 'spec is not an object' };
    const version = typeof meta.resourceVersion === 'string' ? meta.resourceVersion : '';
    if (!/^\d+$/.test(version)) return { reason: `resourceVersion "${version}" is not an integer` };
    const { apiVersion, kind: _kind, metadata: _metadata, spec, ...rest } = obj;
    const resource: StoredResource = {
      apiVersion: typeof apiVersion === 'string' ? apiVersion : `${mapping.group}/${mapping.version}`,
      kind: mapping.kind,
      metadata: {
        name: meta.name,
        ...(typeof meta.namespace === 'string' && meta.namespace !== '' ? { namespace: meta.namespace } : {}),
        ...(isObj(meta.labels) ? { labels: meta.labels as Record<string, string> } : {}),
        ...(isObj(meta.annotations) ? { annotations: meta.annotations as Record<string, string> } : {}),
        resourceVersion: version,
        generation: typeof meta.generation === 'number' ? meta.generation : 1,
        uid: typeof meta.uid === 'string' ? meta.uid : '',
        creationTimestamp: typeof meta.creationTimestamp === 'string' ? meta.creationTimestamp : '',
      },
      spec: (spec as Record<string, unknown> | undefined) ?? {},
      ...rest,
    };
    if (this.options.validate === true && mapping.registry) {
      try {
        validateResource(resource);
      } catch (err) {
        return { reason: isMeshError(err) ? err.message : String(err) };
      }
    }
    return { resource };
  }

  /** Converts for a reader view: problems are recorded, fixed objects cleared. */
  private view(obj: unknown, mapping: KindMapping): StoredResource | undefined {
    const converted = this.convert(obj, mapping);
    const meta = isObj(obj) && isObj(obj.metadata) ? obj.metadata : {};
    const label = `${mapping.kind}/${typeof meta.namespace === 'string' ? meta.namespace : ''}/${typeof meta.name === 'string' ? meta.name : '?'}`;
    if ('reason' in converted) {
      if (this.problems.get(label) !== converted.reason) {
        this.logger.warn('skipped an object from Kubernetes', { resource: label, reason: converted.reason });
      }
      this.problems.set(label, converted.reason);
      return undefined;
    }
    this.problems.delete(label);
    return converted.resource;
  }

  /** Converts a write's answer: a malformed answer is the server's fault. */
  private answer(obj: unknown, mapping: KindMapping, what: string): StoredResource {
    if (this.options.validate === true) {
      const meta = isObj(obj) && isObj(obj.metadata) ? obj.metadata : {};
      this.problems.delete(
        `${mapping.kind}/${typeof meta.namespace === 'string' ? meta.namespace : ''}/${String(meta.name)}`,
      );
    }
    const converted = this.convert(obj, { ...mapping, registry: false });
    if ('reason' in converted) {
      throw new MeshError(
        ErrorCodes.STORE_UNAVAILABLE,
        `the Kubernetes API answered ${what} with a malformed object: ${converted.reason}`,
      );
    }
    return converted.resource;
  }

  private body(resource: Resource, mapping: KindMapping, resourceVersion?: string): Json {
    const { apiVersion: _a, kind: _k, metadata, ...rest } = resource;
    return {
      apiVersion: `${mapping.group}/${mapping.version}`,
      kind: mapping.kind,
      metadata: {
        name: metadata.name,
        ...(mapping.namespaced ? { namespace: metadata.namespace } : {}),
        ...(metadata.labels ? { labels: metadata.labels } : {}),
        ...(metadata.annotations ? { annotations: metadata.annotations } : {}),
        ...(resourceVersion === undefined ? {} : { resourceVersion }),
      },
      ...rest,
    };
  }

  // ---- errors --------------------------------------------------------------

  private translate(err: unknown, what: string, key?: ResourceKey): MeshError {
    if (isMeshError(err)) return err;
    const status = statusOf(err);
    if (!status) {
      return new MeshError(
        ErrorCodes.STORE_UNAVAILABLE,
        `Kubernetes API unreachable (${what}): ${(err as Error).message ?? String(err)}`,
        { cause: err },
      );
    }
    const details = {
      key: key === undefined ? undefined : formatKey(key),
      status: status.code,
      reason: status.reason,
    };
    switch (status.code) {
      case 400:
        return new MeshError(ErrorCodes.INVALID_ARGUMENT, `${what}: ${status.message}`, { details });
      case 404:
        return key
          ? notFoundError(key)
          : new MeshError(ErrorCodes.NOT_FOUND, `${what}: ${status.message}`, { details });
      case 409:
        if (status.reason === 'AlreadyExists' && key) return alreadyExistsError(key);
        return new MeshError(ErrorCodes.CONFLICT, `${what}: ${status.message}`, { details });
      case 410:
        return new MeshError(ErrorCodes.REVISION_TOO_OLD, `${what}: ${status.message}`, { details });
      case 422:
        return new MeshError(ErrorCodes.VALIDATION, `${what}: ${status.message}`, { details });
      default:
        // 401/403 are this server's credentials or RBAC, not the caller's: the store is unusable.
        return new MeshError(
          ErrorCodes.STORE_UNAVAILABLE,
          `Kubernetes API refused ${what}: ${status.message} (HTTP ${status.code})`,
          {
            details,
          },
        );
    }
  }

  private checkOpen(): void {
    if (this.closed) throw closedError(this.backend);
  }

  // ---- raw calls -------------------------------------------------------------

  private async rawGet(mapping: KindMapping, key: ResourceKey): Promise<unknown> {
    const { group, version, plural } = mapping;
    try {
      return mapping.namespaced
        ? await this.custom.getNamespacedCustomObject({
            group,
            version,
            plural,
            namespace: key.namespace,
            name: key.name,
          })
        : await this.custom.getClusterCustomObject({ group, version, plural, name: key.name });
    } catch (err) {
      if (statusOf(err)?.code === 404) return undefined;
      throw this.translate(err, `get ${formatKey(key)}`, key);
    }
  }

  private async rawCreate(mapping: KindMapping, key: ResourceKey, body: Json): Promise<unknown> {
    const { group, version, plural } = mapping;
    return mapping.namespaced
      ? this.custom.createNamespacedCustomObject({ group, version, plural, namespace: key.namespace, body })
      : this.custom.createClusterCustomObject({ group, version, plural, body });
  }

  private async rawReplace(
    mapping: KindMapping,
    key: ResourceKey,
    body: Json,
    status: boolean,
  ): Promise<unknown> {
    const { group, version, plural } = mapping;
    const args = { group, version, plural, name: key.name, body };
    if (mapping.namespaced) {
      const nsArgs = { ...args, namespace: key.namespace };
      return status
        ? this.custom.replaceNamespacedCustomObjectStatus(nsArgs)
        : this.custom.replaceNamespacedCustomObject(nsArgs);
    }
    return status
      ? this.custom.replaceClusterCustomObjectStatus(args)
      : this.custom.replaceClusterCustomObject(args);
  }

  private async rawDelete(mapping: KindMapping, key: ResourceKey, resourceVersion: string): Promise<unknown> {
    const { group, version, plural } = mapping;
    const body = { preconditions: { resourceVersion } };
    return mapping.namespaced
      ? this.custom.deleteNamespacedCustomObject({
          group,
          version,
          plural,
          namespace: key.namespace,
          name: key.name,
          body,
        })
      : this.custom.deleteClusterCustomObject({ group, version, plural, name: key.name, body });
  }

  // ---- Store ------------------------------------------------------------------

  async get(key: ResourceKey): Promise<StoredResource | undefined> {
    this.checkOpen();
    const mapping = await this.mappingFor(key.kind);
    if (!mapping || mapping.namespaced !== (key.namespace !== '')) return undefined;
    const obj = await this.rawGet(mapping, key);
    if (obj === undefined) return undefined;
    const converted = this.convert(obj, { ...mapping, registry: false });
    return 'reason' in converted ? undefined : converted.resource;
  }

  async list(options: ListOptions): Promise<ListResult> {
    this.checkOpen();
    if (options.labelSelector !== undefined) parseLabelSelector(options.labelSelector);
    const mapping = await this.mappingFor(options.kind);
    const ns = options.namespace;
    if (!mapping || (ns !== undefined && mapping.namespaced !== (ns !== ''))) {
      return { items: [], revision: await this.currentRevision() };
    }
    const { group, version, plural } = mapping;
    const items: StoredResource[] = [];
    let revision: number | undefined;
    let cont: string | undefined;
    try {
      do {
        const page = {
          group,
          version,
          plural,
          limit: PAGE_SIZE,
          ...(options.labelSelector ? { labelSelector: options.labelSelector } : {}),
          ...(cont === undefined ? {} : { _continue: cont }),
        };
        const result: unknown =
          mapping.namespaced && ns !== undefined
            ? await this.custom.listNamespacedCustomObject({ ...page, namespace: ns })
            : await this.custom.listClusterCustomObject(page);
        if (!isObj(result) || !Array.isArray(result.items) || !isObj(result.metadata)) {
          throw new MeshError(
            ErrorCodes.STORE_UNAVAILABLE,
            `the Kubernetes API did not answer a list of ${plural}`,
          );
        }
        revision ??= revisionOf(result.metadata.resourceVersion, `the list of ${plural}`);
        for (const item of result.items) {
          const resource = this.view(item, mapping);
          if (resource) items.push(resource);
        }
        cont =
          typeof result.metadata.continue === 'string' && result.metadata.continue !== ''
            ? result.metadata.continue
            : undefined;
      } while (cont !== undefined);
    } catch (err) {
      if (statusOf(err)?.code === 404) return { items: [], revision: await this.currentRevision() };
      throw this.translate(err, `list ${options.kind}`);
    }
    const order = (r: StoredResource): string => `${r.metadata.namespace ?? ''}\u0000${r.metadata.name}`;
    items.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
    return { items, revision: revision ?? (await this.currentRevision()) };
  }

  async create(resource: Resource): Promise<StoredResource> {
    this.checkOpen();
    const key = checkResource(resource);
    const mapping = await this.mappingFor(key.kind, key.namespace === '' ? 'cluster' : 'namespaced');
    if (!mapping) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `no CRD for kind ${key.kind} in the cluster (${internalMapping(key.kind, false).plural}.${INTERNAL_GROUP}); install it or open the store with installCrds`,
      );
    }
    this.checkScope(mapping, key);
    const body = this.body(resource, mapping);
    let created: unknown;
    for (let attempt = 0; ; attempt++) {
      try {
        created = await this.rawCreate(mapping, key, body);
        break;
      } catch (err) {
        const status = statusOf(err);
        const missingNamespace = status?.code === 404 && status.details?.kind === 'namespaces';
        if (missingNamespace && this.options.createNamespaces === true && attempt === 0) {
          await this.createNamespace(key.namespace);
          continue;
        }
        if (missingNamespace) {
          throw new MeshError(
            ErrorCodes.NOT_FOUND,
            `${formatKey(key)}: namespace "${key.namespace}" does not exist in the cluster`,
            { details: { key: formatKey(key), namespace: key.namespace } },
          );
        }
        throw this.translate(err, `create ${formatKey(key)}`, key);
      }
    }
    let stored = this.answer(created, mapping, `create ${formatKey(key)}`);
    if (
      mapping.statusSubresource &&
      resource.status !== undefined &&
      !deepEqual(stored.status, resource.status)
    ) {
      stored = await this.writeStatus(mapping, key, stored, resource.status);
    }
    return stored;
  }

  private async createNamespace(namespace: string): Promise<void> {
    try {
      await this.core.createNamespace({
        body: { metadata: { name: namespace, labels: { 'app.kubernetes.io/managed-by': 'meshfed' } } },
      });
      this.logger.info('created namespace for a synced object', { namespace });
    } catch (err) {
      if (statusOf(err)?.code !== 409) throw this.translate(err, `create namespace ${namespace}`);
    }
  }

  private async writeStatus(
    mapping: KindMapping,
    key: ResourceKey,
    stored: StoredResource,
    status: Record<string, unknown>,
  ): Promise<StoredResource> {
    const body = this.body({ ...stored, status }, mapping, stored.metadata.resourceVersion);
    try {
      return this.answer(
        await this.rawReplace(mapping, key, body, true),
        mapping,
        `status of ${formatKey(key)}`,
      );
    } catch (err) {
      throw this.translate(err, `update status of ${formatKey(key)}`, key);
    }
  }

  async update(resource: Resource, options: WriteOptions = {}): Promise<StoredResource> {
    this.checkOpen();
    const key = checkResource(resource);
    const mapping = await this.mappingFor(key.kind);
    if (!mapping) throw notFoundError(key);
    this.checkScope(mapping, key);
    const expected = expectedVersionOf(resource, options.expectedResourceVersion);
    for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt++) {
      let version = expected;
      if (version === undefined) {
        // Custom resources refuse a replace without a version: read it, then write conditionally.
        const current = await this.rawGet(mapping, key);
        if (current === undefined) throw notFoundError(key);
        version = isObj(current) && isObj(current.metadata) ? String(current.metadata.resourceVersion) : '';
      }
      let replaced: unknown;
      try {
        replaced = await this.rawReplace(mapping, key, this.body(resource, mapping, version), false);
      } catch (err) {
        const status = statusOf(err);
        if (status?.code === 409 && status.reason === 'Conflict') {
          if (expected === undefined) continue;
          throw await this.conflict(mapping, key, expected);
        }
        throw this.translate(err, `update ${formatKey(key)}`, key);
      }
      let stored = this.answer(replaced, mapping, `update ${formatKey(key)}`);
      if (
        mapping.statusSubresource &&
        resource.status !== undefined &&
        !deepEqual(stored.status, resource.status)
      ) {
        stored = await this.writeStatus(mapping, key, stored, resource.status);
      }
      return stored;
    }
    throw new MeshError(
      ErrorCodes.CONFLICT,
      `${formatKey(key)}: gave up after ${MAX_CAS_RETRIES} conflicting writes`,
    );
  }

  /** CONFLICT naming the expected and the stored version (read back for the message). */
  private async conflict(mapping: KindMapping, key: ResourceKey, expected: string): Promise<MeshError> {
    const current = await this.rawGet(mapping, key);
    if (current === undefined) return notFoundError(key);
    const actual = isObj(current) && isObj(current.metadata) ? String(current.metadata.resourceVersion) : '?';
    return conflictError(key, expected, actual);
  }

  async delete(key: ResourceKey, options: WriteOptions = {}): Promise<StoredResource> {
    this.checkOpen();
    const mapping = await this.mappingFor(key.kind);
    if (!mapping || mapping.namespaced !== (key.namespace !== '')) throw notFoundError(key);
    const expected = expectedVersionOf(undefined, options.expectedResourceVersion);
    for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt++) {
      let version = expected;
      if (version === undefined) {
        const current = await this.rawGet(mapping, key);
        if (current === undefined) throw notFoundError(key);
        version = isObj(current) && isObj(current.metadata) ? String(current.metadata.resourceVersion) : '';
      }
      let deleted: unknown;
      try {
        deleted = await this.rawDelete(mapping, key, version);
      } catch (err) {
        const status = statusOf(err);
        if (status?.code === 409) {
          if (expected === undefined) continue;
          throw await this.conflict(mapping, key, expected);
        }
        throw this.translate(err, `delete ${formatKey(key)}`, key);
      }
      const stored = this.answer(deleted, mapping, `delete ${formatKey(key)}`);
      // Kubernetes answers with the revision of the deletion; the contract returns the last state,
      // whose version the precondition pinned.
      stored.metadata.resourceVersion = version;
      return stored;
    }
    throw new MeshError(
      ErrorCodes.CONFLICT,
      `${formatKey(key)}: gave up after ${MAX_CAS_RETRIES} conflicting deletes`,
    );
  }

  async currentRevision(): Promise<number> {
    this.checkOpen();
    // A consistent list answers the store's current revision; namespaces always exist.
    try {
      const list = await this.core.listNamespace({ limit: 1 });
      return revisionOf(list.metadata?.resourceVersion, 'the list of namespaces');
    } catch (err) {
      throw this.translate(err, 'read the current revision');
    }
  }

  watch(options: WatchOptions, handlers: WatchHandlers): StoreWatch {
    const watch = new KubeStoreWatch(
      this,
      options,
      handlers,
      this.options.reorderWindowMs ?? 50,
      this.logger,
    );
    if (this.closed) {
      watch.fail(closedError(this.backend));
      return watch;
    }
    try {
      checkFromRevision(options.fromRevision);
    } catch (err) {
      watch.fail(err as Error);
      return watch;
    }
    this.watches.add(watch);
    watch.onEnd = () => this.watches.delete(watch);
    void watch.start();
    return watch;
  }

  /** @internal The mappings a watch of every kind follows. */
  async watchMappings(kind: string | undefined): Promise<KindMapping[]> {
    if (kind !== undefined) {
      const mapping = await this.mappingFor(kind);
      if (!mapping) {
        throw new MeshError(
          ErrorCodes.STORE_UNAVAILABLE,
          `no CRD for kind ${kind} in the cluster: cannot watch it`,
        );
      }
      return [mapping];
    }
    return [...this.mappings.values()];
  }

  /** @internal */
  watchPath(mapping: KindMapping, namespace: string | undefined): string {
    const base = `/apis/${mapping.group}/${mapping.version}`;
    return mapping.namespaced && namespace !== undefined && namespace !== ''
      ? `${base}/namespaces/${encodeURIComponent(namespace)}/${mapping.plural}`
      : `${base}/${mapping.plural}`;
  }

  /** @internal */
  convertEvent(obj: unknown, mapping: KindMapping): StoredResource | undefined {
    return this.view(obj, mapping);
  }

  /** @internal */
  get kubeConfig(): KubeConfig {
    return this.kc;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watches]) w.close();
  }
}

interface Stream {
  mapping: KindMapping;
  path: string;
  /** Highest revision seen on this stream (events and bookmarks): where to resume. */
  progress: number;
  controller: AbortController | undefined;
  retryTimer: NodeJS.Timeout | undefined;
  attempts: number;
  /** Set when the stream can never deliver (its kind has no CRD in an all-kinds watch). */
  idle: boolean;
}

interface Pending {
  event: WatchEvent;
  at: number;
}

/** One store watch: a Kubernetes watch per kind, merged in revision order. */
class KubeStoreWatch implements StoreWatch {
  onEnd: () => void = () => undefined;
  private readonly id = randomUUID().slice(0, 8);
  private readonly streams: Stream[] = [];
  private pending: Pending[] = [];
  private released: number;
  private flushTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly store: KubernetesStore,
    private readonly options: WatchOptions,
    private readonly handlers: WatchHandlers,
    private readonly windowMs: number,
    private readonly logger: Logger,
  ) {
    this.released = options.fromRevision;
  }

  async start(): Promise<void> {
    let mappings: KindMapping[];
    try {
      mappings = await this.store.watchMappings(this.options.kind);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    if (this.closed) return;
    for (const mapping of mappings) {
      if (
        mapping.namespaced === false &&
        this.options.namespace !== undefined &&
        this.options.namespace !== ''
      )
        continue;
      if (mapping.namespaced && this.options.namespace === '') continue;
      const stream: Stream = {
        mapping,
        path: this.store.watchPath(mapping, this.options.namespace),
        progress: this.options.fromRevision,
        controller: undefined,
        retryTimer: undefined,
        attempts: 0,
        idle: false,
      };
      this.streams.push(stream);
      void this.open(stream);
    }
  }

  private async open(stream: Stream): Promise<void> {
    if (this.closed) return;
    const watcher = new Watch(this.store.kubeConfig);
    const params = { resourceVersion: String(stream.progress), allowWatchBookmarks: true };
    let ended = false;
    const done = (err: unknown): void => {
      if (ended) return;
      ended = true;
      stream.controller = undefined;
      this.onStreamEnd(stream, err);
    };
    try {
      stream.controller = await watcher.watch(
        stream.path,
        params,
        (type, obj) => this.onEvent(stream, type, obj),
        done,
      );
    } catch (err) {
      done(err);
    }
    if (this.closed) stream.controller?.abort();
  }

  private onEvent(stream: Stream, type: string, obj: unknown): void {
    if (this.closed) return;
    if (type === 'ERROR') {
      const status = isObj(obj) ? obj : {};
      if (status.code === 410) {
        this.fail(
          new MeshError(
            ErrorCodes.REVISION_TOO_OLD,
            `revision ${stream.progress} of ${stream.mapping.kind} is older than the history the Kubernetes API keeps: relist (${String(status.message)})`,
          ),
        );
      } else {
        this.logger.warn('kubernetes watch error event', {
          watch: this.id,
          kind: stream.mapping.kind,
          status,
        });
      }
      return;
    }
    const meta = isObj(obj) && isObj(obj.metadata) ? obj.metadata : {};
    const rv =
      typeof meta.resourceVersion === 'string' && /^\d+$/.test(meta.resourceVersion)
        ? Number(meta.resourceVersion)
        : undefined;
    if (rv === undefined) return;
    if (type === 'BOOKMARK') {
      stream.progress = Math.max(stream.progress, rv);
      this.flush();
      return;
    }
    if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED') return;
    stream.progress = Math.max(stream.progress, rv);
    const resource = this.store.convertEvent(obj, stream.mapping);
    let eventType: WatchEventType = type;
    let object = resource;
    if (!resource) {
      // Skipped (malformed or invalid): for watchers it is gone.
      if (type === 'ADDED') return;
      eventType = 'DELETED';
      const fallback = fallbackResource(obj, stream.mapping.kind, rv);
      if (!fallback) return;
      object = fallback;
    }
    if (!object) return;
    this.pending.push({ event: { type: eventType, object, revision: rv }, at: Date.now() });
    this.flush();
  }

  /** Releases pending events in revision order as far as every stream's progress allows. */
  private flush(): void {
    if (this.closed) return;
    if (this.streams.length <= 1) {
      const ready = this.pending;
      this.pending = [];
      for (const p of ready) this.deliver(p.event);
      return;
    }
    this.pending.sort((a, b) => a.event.revision - b.event.revision);
    const now = Date.now();
    while (this.pending.length > 0) {
      const next = this.pending[0] as Pending;
      const r = next.event.revision;
      const contiguous = r === this.released + 1;
      const othersPast = this.streams.every((s) => s.idle || s.progress >= r);
      if (!contiguous && !othersPast && now - next.at < this.windowMs) break;
      this.pending.shift();
      this.deliver(next.event);
    }
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const head = this.pending[0];
    if (head) {
      this.flushTimer = setTimeout(() => this.flush(), Math.max(1, this.windowMs - (now - head.at)));
    }
  }

  private deliver(event: WatchEvent): void {
    if (this.closed) return;
    this.released = Math.max(this.released, event.revision);
    try {
      this.handlers.onEvent(event);
    } catch (err) {
      this.logger.error('store watch handler failed', { watch: this.id, err });
    }
  }

  private onStreamEnd(stream: Stream, err: unknown): void {
    if (this.closed) return;
    const code = (err as { statusCode?: unknown } | null)?.statusCode;
    if (code === 410) {
      this.fail(
        new MeshError(
          ErrorCodes.REVISION_TOO_OLD,
          `revision ${stream.progress} of ${stream.mapping.kind} is too old: relist`,
        ),
      );
      return;
    }
    if (code === 404 && this.options.kind === undefined) {
      // A kind without a CRD in this cluster cannot change: an all-kinds watch ignores it.
      stream.idle = true;
      this.flush();
      return;
    }
    if (code === 401 || code === 403 || code === 404) {
      this.fail(
        new MeshError(
          ErrorCodes.STORE_UNAVAILABLE,
          `Kubernetes API refused the watch of ${stream.mapping.kind} (HTTP ${String(code)})`,
        ),
      );
      return;
    }
    // Server-side timeout (err null) resumes at once; failures back off.
    const delay =
      err === null || err === undefined
        ? 0
        : Math.min(WATCH_RETRY_MAX_MS, WATCH_RETRY_INITIAL_MS * 2 ** stream.attempts++);
    if (err !== null && err !== undefined) {
      this.logger.debug('kubernetes watch ended; resuming', {
        watch: this.id,
        kind: stream.mapping.kind,
        err,
        delay,
      });
    } else {
      stream.attempts = 0;
    }
    stream.retryTimer = setTimeout(() => {
      stream.retryTimer = undefined;
      void this.open(stream);
    }, delay);
  }

  /** Ends the watch with an error (once), as the Store contract asks. */
  fail(err: Error): void {
    if (this.closed) return;
    this.stop();
    try {
      this.handlers.onError(err);
    } catch (handlerErr) {
      this.logger.error('store watch error handler failed', { watch: this.id, err: handlerErr });
    }
  }

  private stop(): void {
    this.closed = true;
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer);
    for (const s of this.streams) {
      if (s.retryTimer !== undefined) clearTimeout(s.retryTimer);
      s.controller?.abort();
    }
    this.pending = [];
    this.onEnd();
  }

  close(): void {
    if (this.closed) return;
    this.stop();
  }
}

/** A minimal stored form of an object that cannot be converted, for the DELETED event that hides it. */
function fallbackResource(obj: unknown, kind: string, rv: number): StoredResource | undefined {
  if (!isObj(obj) || !isObj(obj.metadata) || typeof obj.metadata.name !== 'string') return undefined;
  const meta = obj.metadata;
  return {
    apiVersion: typeof obj.apiVersion === 'string' ? obj.apiVersion : '',
    kind,
    metadata: {
      name: meta.name as string,
      ...(typeof meta.namespace === 'string' && meta.namespace !== '' ? { namespace: meta.namespace } : {}),
      resourceVersion: String(rv),
      generation: typeof meta.generation === 'number' ? meta.generation : 1,
      uid: typeof meta.uid === 'string' ? meta.uid : '',
      creationTimestamp: typeof meta.creationTimestamp === 'string' ? meta.creationTimestamp : '',
    },
    spec: {},
  };
}

/**
 * `kubernetes://[?kubeconfig=/path&context=name&installCrds=true&createNamespaces=true&validate=true]`
 * for the store registry.
 */
export async function openKubernetesStore(url: URL, logger?: Logger): Promise<KubernetesStore> {
  if (url.host !== '' || (url.pathname !== '' && url.pathname !== '/')) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `invalid store URL "${url.href}": kubernetes:// takes no host or path; use ?kubeconfig=/path&context=name`,
    );
  }
  const known = new Set(['kubeconfig', 'context', 'installCrds', 'createNamespaces', 'validate']);
  for (const name of url.searchParams.keys()) {
    if (!known.has(name)) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `invalid store URL "${url.href}": unknown parameter "${name}" (known: ${[...known].join(', ')})`,
      );
    }
  }
  const flag = (name: string): boolean => {
    const value = url.searchParams.get(name);
    if (value === null || value === 'false') return false;
    if (value === 'true' || value === '') return true;
    throw new MeshError(ErrorCodes.CONFIG, `invalid store URL "${url.href}": ${name} must be true or false`);
  };
  return KubernetesStore.open({
    ...(url.searchParams.get('kubeconfig')
      ? { kubeconfigPath: url.searchParams.get('kubeconfig') ?? undefined }
      : {}),
    ...(url.searchParams.get('context') ? { context: url.searchParams.get('context') ?? undefined } : {}),
    installCrds: flag('installCrds'),
    createNamespaces: flag('createNamespaces'),
    validate: flag('validate'),
    ...(logger === undefined ? {} : { logger }),
  });
}
