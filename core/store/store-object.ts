/**
 * What every store backend does the same way to an object on its way in:
 * check the key, fill in the server-owned metadata (uid, creationTimestamp,
 * generation, resourceVersion) and compare specs; and, on the way out, how
 * a change reaches a watcher. Kept apart so that the backends cannot drift
 * on these semantics.
 */

import { randomUUID } from 'node:crypto';

import { ErrorCodes, MeshError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Resource, ResourceKey, StoredResource } from '../resource/resource.js';
import { formatKey } from '../resource/resource.js';
import type { Watch, WatchEventType, WatchHandlers } from './store.js';
import { formatIsoTime } from '../utc-format.js';

/** Metadata the store owns; everything else comes from the caller. */
export interface ServerMeta {
  uid: string;
  creationTimestamp: string;
  generation: number;
}

/** Rejects a resource without the fields that form its key. */
export function checkResource(resource: Resource): ResourceKey {
  if (resource === null || typeof resource !== 'object') {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'a resource must be an object');
  }
  const meta = resource.metadata as Resource['metadata'] | undefined;
  if (typeof resource.kind !== 'string' || resource.kind === '') {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'resource has no kind', { field: 'kind' });
  }
  if (!meta || typeof meta.name !== 'string' || meta.name === '') {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${resource.kind} has no metadata.name`, {
      field: 'metadata.name',
    });
  }
  if (meta.namespace !== undefined && typeof meta.namespace !== 'string') {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${resource.kind} has a non-string metadata.namespace`, {
      field: 'metadata.namespace',
    });
  }
  return { kind: resource.kind, namespace: meta.namespace ?? '', name: meta.name };
}

/** Server metadata for a new object. */
export function newServerMeta(): ServerMeta {
  return { uid: randomUUID(), creationTimestamp: formatIsoTime(), generation: 1 };
}

/** Server metadata for a replacement: identity kept, generation bumped only on a spec change. */
export function nextServerMeta(previous: StoredResource, next: Resource): ServerMeta {
  const changed = !deepEqual(previous.spec, next.spec);
  return {
    uid: previous.metadata.uid,
    creationTimestamp: previous.metadata.creationTimestamp,
    generation: previous.metadata.generation + (changed ? 1 : 0),
  };
}

/**
 * The stored form as JSON, split around the resourceVersion value so that a
 * backend that assigns the revision atomically elsewhere (the Redis Lua
 * script) can splice it in without re-encoding: `head + revision + tail`.
 * Key order: apiVersion, kind, metadata (resourceVersion first), the rest.
 */
export function encodeStored(resource: Resource, server: ServerMeta): { head: string; tail: string } {
  const { apiVersion, kind, metadata, ...rest } = resource;
  const { resourceVersion: _rv, uid: _uid, creationTimestamp: _ct, generation: _gen, ...userMeta } = metadata;
  const meta = JSON.stringify({
    ...userMeta,
    generation: server.generation,
    uid: server.uid,
    creationTimestamp: server.creationTimestamp,
  });
  const body = JSON.stringify(rest);
  const head = `{"apiVersion":${JSON.stringify(apiVersion ?? '')},"kind":${JSON.stringify(kind)},"metadata":{"resourceVersion":"`;
  const tail = `",${meta.slice(1)}${body === '{}' ? '}' : `,${body.slice(1)}`}`;
  return { head, tail };
}

/** Encodes the stored form with its revision filled in. */
export function encodeStoredWithRevision(resource: Resource, server: ServerMeta, revision: number): string {
  const { head, tail } = encodeStored(resource, server);
  return head + String(revision) + tail;
}

/** The CONFLICT error every backend raises, naming key, expected and actual versions. */
export function conflictError(key: ResourceKey, expected: string, actual: string): MeshError {
  return new MeshError(
    ErrorCodes.CONFLICT,
    `${formatKey(key)}: resourceVersion ${expected} expected but the stored one is ${actual}`,
    { details: { key: formatKey(key), expected, actual } },
  );
}

export function notFoundError(key: ResourceKey): MeshError {
  return new MeshError(ErrorCodes.NOT_FOUND, `${formatKey(key)} not found`, {
    details: { key: formatKey(key) },
  });
}

export function alreadyExistsError(key: ResourceKey): MeshError {
  return new MeshError(ErrorCodes.ALREADY_EXISTS, `${formatKey(key)} already exists`, {
    details: { key: formatKey(key) },
  });
}

export function closedError(backend: string): MeshError {
  return new MeshError(ErrorCodes.CLOSED, `the ${backend} store is closed`);
}

/** CONFLICT unless the caller expects nothing in particular or exactly the stored version. */
export function checkExpectedVersion(key: ResourceKey, expected: string | undefined, actual: string): void {
  if (expected !== undefined && expected !== actual) throw conflictError(key, expected, actual);
}

/** A change as backends keep it in their history: the object stays JSON until delivered. */
export interface StoredChange {
  type: WatchEventType;
  revision: number;
  kind: string;
  namespace: string;
  json: string;
}

/** Hands a change to a watch handler as a fresh copy; a throwing handler is logged, not propagated. */
export function deliverChange(handlers: WatchHandlers, change: StoredChange, logger: Logger): void {
  try {
    handlers.onEvent({
      type: change.type,
      revision: change.revision,
      object: JSON.parse(change.json) as StoredResource,
    });
  } catch (err) {
    logger.error('watch handler threw', { err, revision: change.revision });
  }
}

/**
 * The handle of a watch whose watcher the store keeps in `watchers`, and
 * `fail` for a watch that cannot start (store closed, revision too old): its
 * onError runs once, after watch() has returned the handle.
 */
export function watchHandle<W extends { closed: boolean; handlers: WatchHandlers }>(
  watcher: W,
  watchers: Set<W>,
): { handle: Watch; fail(err: Error): Watch } {
  const handle: Watch = {
    close: () => {
      watcher.closed = true;
      watchers.delete(watcher);
    },
  };
  const fail = (err: Error): Watch => {
    watcher.closed = true;
    queueMicrotask(() => watcher.handlers.onError(err));
    return handle;
  };
  return { handle, fail };
}

/** INVALID_ARGUMENT unless a watch's fromRevision is a non-negative integer. */
export function checkFromRevision(from: number): void {
  if (!Number.isSafeInteger(from) || from < 0) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `fromRevision must be a non-negative integer, got ${from}`,
    );
  }
}

/** Whether a change of `kind` in `namespace` passes a watch's kind/namespace filter. */
export function watchSelects(
  filter: { kind: string | undefined; namespace: string | undefined },
  kind: string,
  namespace: string,
): boolean {
  return (
    (filter.kind === undefined || filter.kind === kind) &&
    (filter.namespace === undefined || filter.namespace === namespace)
  );
}

/** The expected resourceVersion of an update: explicit option, else the object's own. */
export function expectedVersionOf(
  resource: Resource | undefined,
  explicit: string | undefined,
): string | undefined {
  if (explicit !== undefined && explicit !== '') return explicit;
  const own = resource?.metadata.resourceVersion;
  return own === undefined || own === '' ? undefined : own;
}

/**
 * Structural equality of JSON-like values. Object keys holding `undefined`
 * count as absent, as they do once the object is serialised.
 */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const aKeys = Object.keys(ao).filter((k) => ao[k] !== undefined);
  const bKeys = Object.keys(bo).filter((k) => bo[k] !== undefined);
  if (aKeys.length !== bKeys.length) return false;
  for (const k of aKeys) {
    if (!Object.prototype.hasOwnProperty.call(bo, k) || !deepEqual(ao[k], bo[k])) return false;
  }
  return true;
}
