/**
 * Create-or-update of validated documents, with kubectl's outcome words.
 * Shared by every API that accepts policy (global CP, a standalone zone CP).
 */

import { isDeepStrictEqual } from 'node:util';
import { ErrorCodes, MeshError, isMeshError } from '../errors.js';
import type { Resource, ResourceKey, StoredResource } from '../resource/resource.js';
import { keyOf } from '../resource/resource.js';
import { validateResource } from '../resource/validate.js';
import type { KindInfo } from '../resource/kind.js';
import type { Store } from '../store/store.js';

export type ApplyAction = 'created' | 'configured' | 'unchanged';

export interface ApplyResult {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  action: ApplyAction;
  /** Empty on a dry run. */
  resourceVersion: string;
  warnings: string[];
}

export interface ValidatedDocument {
  resource: Resource;
  kind: KindInfo;
  warnings: string[];
}

/** How often apply re-reads and retries when another writer raced it. */
const MAX_APPLY_ATTEMPTS = 5;

/**
 * Validates every document before anything is written, so one bad document
 * refuses the whole request and nothing is half-applied. The error carries the
 * document index.
 */
export function validateDocuments(
  documents: unknown[],
  options: { defaultNamespace?: string; allowInternal?: boolean } = {},
): ValidatedDocument[] {
  const validated: ValidatedDocument[] = [];
  const seen = new Set<string>();
  documents.forEach((doc, index) => {
    let result: ValidatedDocument;
    try {
      result = validateResource(doc, { defaultNamespace: options.defaultNamespace });
    } catch (err) {
      throw withDocumentIndex(err, index, documents.length);
    }
    if (!result.kind.userWritable && !options.allowInternal) {
      throw withDocumentIndex(
        new MeshError(
          ErrorCodes.FORBIDDEN,
          `${result.kind.kind} is written by meshfed itself, not through apply`,
        ),
        index,
        documents.length,
      );
    }
    const key = keyOf(result.resource);
    const id = `${key.kind}/${key.namespace}/${key.name}`;
    if (seen.has(id)) {
      throw withDocumentIndex(
        new MeshError(ErrorCodes.INVALID_ARGUMENT, `${id} appears twice in one apply`),
        index,
        documents.length,
      );
    }
    seen.add(id);
    validated.push(result);
  });
  return validated;
}

function withDocumentIndex(
  err: unknown,
  index: number,
  total: number,
  applied: readonly ApplyResult[] = [],
): MeshError {
  if (!isMeshError(err)) throw err;
  const prefix = total > 1 ? `document ${index}: ` : '';
  const names = applied.map((r) => `${r.kind} ${r.namespace === '' ? '' : `${r.namespace}/`}${r.name}`);
  const suffix = names.length === 0 ? '' : ` (the documents before it were applied: ${names.join(', ')})`;
  return new MeshError(err.code, `${prefix}${err.message}${suffix}`, {
    field: err.field,
    details: { ...err.details, document: index, ...(names.length === 0 ? {} : { applied: names }) },
    cause: err,
  });
}

function missingForPin(key: ResourceKey, pinned: string): MeshError {
  return new MeshError(
    ErrorCodes.NOT_FOUND,
    `${key.kind} ${key.namespace}/${key.name} does not exist, but the document names resourceVersion ${pinned}`,
  );
}

function changedSincePin(key: ResourceKey, pinned: string, now: string): MeshError {
  return new MeshError(
    ErrorCodes.CONFLICT,
    `${key.kind} ${key.namespace}/${key.name} changed since resourceVersion ${pinned} (now ${now}): read it again and reapply`,
  );
}

/**
 * Applies already-validated documents in order. A document that pins a
 * resourceVersion is checked before anything is written, so a stale pin
 * fails the whole apply with nothing stored; a write that still fails (a
 * race after that check, the store going away) names its document and the
 * ones before it that were applied.
 */
export async function applyDocuments(
  store: Store,
  documents: ValidatedDocument[],
  options: { dryRun?: boolean } = {},
): Promise<ApplyResult[]> {
  for (const [index, doc] of documents.entries()) {
    const pinned = doc.resource.metadata.resourceVersion;
    if (pinned === undefined) continue;
    const key = keyOf(doc.resource);
    const existing = await store.get(key);
    if (existing === undefined) throw withDocumentIndex(missingForPin(key, pinned), index, documents.length);
    if (existing.metadata.resourceVersion !== pinned) {
      throw withDocumentIndex(
        changedSincePin(key, pinned, existing.metadata.resourceVersion),
        index,
        documents.length,
      );
    }
  }
  const results: ApplyResult[] = [];
  for (const [index, doc] of documents.entries()) {
    try {
      results.push(await writeOne(store, doc, { dryRun: options.dryRun === true, mustExist: false }));
    } catch (err) {
      throw withDocumentIndex(err, index, documents.length, results);
    }
  }
  return results;
}

/**
 * Replaces an existing object (PUT): like apply, but the object must exist.
 * Returns the stored object.
 */
export async function replaceDocument(store: Store, doc: ValidatedDocument): Promise<StoredResource> {
  await writeOne(store, doc, { dryRun: false, mustExist: true });
  const stored = await store.get(keyOf(doc.resource));
  if (stored === undefined) {
    throw new MeshError(
      ErrorCodes.CONFLICT,
      `${doc.resource.kind} ${doc.resource.metadata.name} was deleted meanwhile`,
    );
  }
  return stored;
}

async function writeOne(
  store: Store,
  doc: ValidatedDocument,
  options: { dryRun: boolean; mustExist: boolean },
): Promise<ApplyResult> {
  const { dryRun } = options;
  const { resource } = doc;
  const key = keyOf(resource);
  // A resourceVersion in the document is the user asking for compare-and-set:
  // honour it once and report a conflict instead of retrying over it.
  const pinnedVersion = resource.metadata.resourceVersion;
  for (let attempt = 1; ; attempt++) {
    const existing = await store.get(key);
    try {
      if (existing === undefined) {
        if (options.mustExist) {
          throw new MeshError(ErrorCodes.NOT_FOUND, `${key.kind} "${key.name}" not found`);
        }
        if (pinnedVersion !== undefined) throw missingForPin(key, pinnedVersion);
        const stored = dryRun ? undefined : await store.create(resource);
        return resultOf(doc, 'created', stored);
      }
      if (pinnedVersion !== undefined && pinnedVersion !== existing.metadata.resourceVersion) {
        throw changedSincePin(key, pinnedVersion, existing.metadata.resourceVersion);
      }
      if (sameContent(existing, resource)) {
        return resultOf(doc, 'unchanged', existing);
      }
      // Users write spec; status belongs to the control plane (a zone's
      // connection state, a VM's health): keep it, as Kubernetes does.
      const next = existing.status === undefined ? resource : { ...resource, status: existing.status };
      const stored = dryRun
        ? undefined
        : await store.update(next, {
            expectedResourceVersion: pinnedVersion ?? existing.metadata.resourceVersion,
          });
      return resultOf(doc, 'configured', stored);
    } catch (err) {
      const raced = isMeshError(err, ErrorCodes.CONFLICT) || isMeshError(err, ErrorCodes.ALREADY_EXISTS);
      if (!raced || pinnedVersion !== undefined || attempt >= MAX_APPLY_ATTEMPTS) throw err;
    }
  }
}

function sameContent(existing: StoredResource, next: Resource): boolean {
  return (
    existing.apiVersion === next.apiVersion &&
    isDeepStrictEqual(existing.spec, next.spec) &&
    isDeepStrictEqual(existing.metadata.labels ?? {}, next.metadata.labels ?? {}) &&
    isDeepStrictEqual(existing.metadata.annotations ?? {}, next.metadata.annotations ?? {})
  );
}

function resultOf(
  doc: ValidatedDocument,
  action: ApplyAction,
  stored: StoredResource | undefined,
): ApplyResult {
  return {
    apiVersion: doc.resource.apiVersion,
    kind: doc.resource.kind,
    namespace: doc.resource.metadata.namespace ?? '',
    name: doc.resource.metadata.name,
    action,
    resourceVersion: stored?.metadata.resourceVersion ?? '',
    warnings: doc.warnings,
  };
}
