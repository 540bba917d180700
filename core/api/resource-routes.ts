/**
 * Kubernetes-like resource endpoints (list, get, create, replace, delete,
 * watch) and apply, over any Store. docs/api.md is the contract.
 */

import type { IncomingMessage } from 'node:http';
import { ErrorCodes, MeshError } from '../errors.js';
import type { Router, RequestContext } from '../http/router.js';
import { readBody } from '../http/body.js';
import { sendJson } from '../http/respond.js';
import { SseStream } from '../http/sse.js';
import { allKinds } from '../resource/kinds.js';
import type { KindInfo } from '../resource/kind.js';
import { decodeDocuments } from '../resource/decode.js';
import type { Resource, StoredResource } from '../resource/resource.js';
import type { Store, WatchEvent } from '../store/store.js';
import { applyDocuments, replaceDocument, validateDocuments, type ApplyResult } from './apply.js';

export interface ResourceRoutesOptions {
  store: Store;
  maxBodyBytes: number;
  /** Told of every successful apply result, for metrics and audit. */
  onApplied?: (result: ApplyResult) => void;
  /** Told when a watch opens (+1) and closes (-1). */
  onWatchers?: (delta: number) => void;
}

export interface ResourceRoutesHandle {
  /** Ends every open watch stream, so a server can close without waiting on them. */
  closeWatches(): void;
}

export function registerResourceRoutes(router: Router, options: ResourceRoutesOptions): ResourceRoutesHandle {
  const routes = new ResourceRoutes(options);
  router
    .add('GET', '/apis', 'read', (ctx) => routes.discovery(ctx))
    .add('POST', '/api/v1/apply', 'write', (ctx) => routes.apply(ctx))
    .add('GET', '/apis/:group/:version/:plural', 'read', (ctx) => routes.list(ctx))
    .add('POST', '/apis/:group/:version/:plural', 'write', (ctx) => routes.create(ctx))
    .add('GET', '/apis/:group/:version/:plural/:name', 'read', (ctx) => routes.get(ctx))
    .add('PUT', '/apis/:group/:version/:plural/:name', 'write', (ctx) => routes.replace(ctx))
    .add('DELETE', '/apis/:group/:version/:plural/:name', 'write', (ctx) => routes.remove(ctx))
    .add('GET', '/apis/:group/:version/namespaces/:namespace/:plural', 'read', (ctx) => routes.list(ctx))
    .add('POST', '/apis/:group/:version/namespaces/:namespace/:plural', 'write', (ctx) => routes.create(ctx))
    .add('GET', '/apis/:group/:version/namespaces/:namespace/:plural/:name', 'read', (ctx) => routes.get(ctx))
    .add('PUT', '/apis/:group/:version/namespaces/:namespace/:plural/:name', 'write', (ctx) =>
      routes.replace(ctx),
    )
    .add('DELETE', '/apis/:group/:version/namespaces/:namespace/:plural/:name', 'write', (ctx) =>
      routes.remove(ctx),
    );
  return { closeWatches: () => routes.closeWatches() };
}

interface Target {
  kind: KindInfo;
  /** undefined = every namespace (list of a namespaced kind without a namespace segment). */
  namespace: string | undefined;
}

class ResourceRoutes {
  private readonly kindsByPlural = new Map<string, KindInfo>();
  private readonly streams = new Set<SseStream>();

  constructor(private readonly options: ResourceRoutesOptions) {
    for (const kind of allKinds()) this.kindsByPlural.set(kind.plural, kind);
  }

  discovery(ctx: RequestContext): void {
    const kinds = [...this.kindsByPlural.values()].map((k) => ({
      kind: k.kind,
      plural: k.plural,
      singular: k.singular,
      shortNames: k.shortNames,
      groups: k.groups,
      versions: k.versions,
      namespaced: k.namespaced,
    }));
    sendJson(ctx.res, 200, { kinds });
  }

  async apply(ctx: RequestContext): Promise<void> {
    const body = await readBody(ctx.req, this.options.maxBodyBytes);
    const documents = decodeDocuments(body.toString('utf8'), ctx.req.headers['content-type']);
    if (documents.length === 0) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'the body holds no documents to apply');
    }
    const validated = validateDocuments(documents);
    const dryRun = isTrue(ctx.query.get('dryRun'));
    const results = await applyDocuments(this.options.store, validated, { dryRun });
    if (!dryRun) for (const result of results) this.options.onApplied?.(result);
    sendJson(ctx.res, 200, { results, ...(dryRun ? { dryRun: true } : {}) });
  }

  async list(ctx: RequestContext): Promise<void> {
    const target = this.target(ctx);
    if (isTrue(ctx.query.get('watch'))) {
      this.watch(ctx, target);
      return;
    }
    const labelSelector = ctx.query.get('labelSelector') ?? undefined;
    const result = await this.options.store.list({
      kind: target.kind.kind,
      namespace: target.namespace,
      labelSelector,
    });
    sendJson(ctx.res, 200, {
      apiVersion: 'v1',
      kind: 'List',
      metadata: { resourceVersion: String(result.revision) },
      items: result.items,
    });
  }

  async get(ctx: RequestContext): Promise<void> {
    const target = this.target(ctx);
    const name = requireParam(ctx, 'name');
    const found = await this.options.store.get({
      kind: target.kind.kind,
      namespace: target.namespace ?? '',
      name,
    });
    if (found === undefined) throw notFound(target, name);
    sendJson(ctx.res, 200, found);
  }

  async create(ctx: RequestContext): Promise<void> {
    const target = this.target(ctx);
    const resource = await this.readOne(ctx.req, target);
    const [doc] = validateDocuments([resource], { defaultNamespace: target.namespace });
    if (doc === undefined) throw new MeshError(ErrorCodes.INTERNAL, 'validation returned nothing');
    this.checkMatchesPath(doc.resource, target);
    const stored = await this.options.store.create(doc.resource);
    this.options.onApplied?.(resultOf(stored, 'created', doc.warnings));
    sendJson(ctx.res, 201, stored);
  }

  async replace(ctx: RequestContext): Promise<void> {
    const target = this.target(ctx);
    const name = requireParam(ctx, 'name');
    const resource = await this.readOne(ctx.req, target);
    const [doc] = validateDocuments([resource], { defaultNamespace: target.namespace });
    if (doc === undefined) throw new MeshError(ErrorCodes.INTERNAL, 'validation returned nothing');
    this.checkMatchesPath(doc.resource, target, name);
    const stored = await replaceDocument(this.options.store, doc);
    this.options.onApplied?.(resultOf(stored, 'configured', doc.warnings));
    sendJson(ctx.res, 200, stored);
  }

  async remove(ctx: RequestContext): Promise<void> {
    const target = this.target(ctx);
    const name = requireParam(ctx, 'name');
    const expected = ctx.query.get('resourceVersion') ?? undefined;
    const deleted = await this.options.store.delete(
      { kind: target.kind.kind, namespace: target.namespace ?? '', name },
      { expectedResourceVersion: expected },
    );
    sendJson(ctx.res, 200, deleted);
  }

  closeWatches(): void {
    for (const stream of [...this.streams]) stream.close();
  }

  private watch(ctx: RequestContext, target: Target): void {
    const fromParam = ctx.query.get('resourceVersion');
    const stream = new SseStream(ctx.res, { onClose: () => closeWatch() });
    this.streams.add(stream);
    this.options.onWatchers?.(1);
    let watch: { close(): void } | undefined;
    let closed = false;
    const closeWatch = (): void => {
      if (closed) return;
      closed = true;
      this.streams.delete(stream);
      watch?.close();
      this.options.onWatchers?.(-1);
    };
    const send = (event: WatchEvent): void => {
      if (target.namespace !== undefined && event.object.metadata.namespace !== target.namespace) {
        // Cluster-scoped objects have no namespace; '' and undefined are the same there.
        if (!(target.namespace === '' && !event.object.metadata.namespace)) return;
      }
      stream.send(event.type, { type: event.type, object: event.object }, event.revision);
    };
    const refuse = (err: unknown): void => {
      const meshErr =
        err instanceof MeshError
          ? err
          : new MeshError(ErrorCodes.STORE_UNAVAILABLE, err instanceof Error ? err.message : String(err));
      stream.send('ERROR', meshErr.toJSON());
      stream.close();
    };
    const start = (fromRevision: number): void => {
      if (stream.isClosed) return;
      try {
        watch = this.options.store.watch(
          { kind: target.kind.kind, namespace: target.namespace, fromRevision },
          {
            onEvent: send,
            onError: refuse,
          },
        );
      } catch (err) {
        // A watch the store refuses at once (a revision it cannot serve): the head is out, so say it in the stream.
        refuse(err);
      }
    };
    if (fromParam !== null && fromParam !== '') {
      const fromRevision = Number(fromParam);
      // Safe integers only: the store refuses larger ones, and by then the stream's head is out.
      if (!Number.isSafeInteger(fromRevision) || fromRevision < 0) {
        stream.send(
          'ERROR',
          new MeshError(
            ErrorCodes.INVALID_ARGUMENT,
            `resourceVersion must be a non-negative integer, got "${fromParam}"`,
          ).toJSON(),
        );
        stream.close();
        return;
      }
      start(fromRevision);
      return;
    }
    // No revision given: replay the current state as ADDED events, then follow.
    this.options.store
      .list({ kind: target.kind.kind, namespace: target.namespace })
      .then((initial) => {
        for (const object of initial.items) {
          stream.send('ADDED', { type: 'ADDED', object }, initial.revision);
        }
        start(initial.revision);
      })
      .catch((err: unknown) => {
        const meshErr =
          err instanceof MeshError ? err : new MeshError(ErrorCodes.STORE_UNAVAILABLE, String(err));
        stream.send('ERROR', meshErr.toJSON());
        stream.close();
      });
  }

  private target(ctx: RequestContext): Target {
    const plural = requireParam(ctx, 'plural');
    const group = requireParam(ctx, 'group');
    const version = requireParam(ctx, 'version');
    const kind = this.kindsByPlural.get(plural);
    if (kind === undefined || !kind.groups.includes(group) || !kind.versions.includes(version)) {
      throw new MeshError(
        ErrorCodes.NOT_FOUND,
        `the server serves no resource ${plural} in ${group}/${version}`,
      );
    }
    const namespace = ctx.params.namespace;
    if (namespace !== undefined && !kind.namespaced) {
      throw new MeshError(
        ErrorCodes.NOT_FOUND,
        `${kind.kind} is cluster-scoped: drop the namespaces/${namespace} segment`,
      );
    }
    if (namespace === undefined && kind.namespaced && ctx.params.name !== undefined) {
      throw new MeshError(
        ErrorCodes.NOT_FOUND,
        `${kind.kind} is namespaced: use .../namespaces/{namespace}/${plural}/{name}`,
      );
    }
    return { kind, namespace: kind.namespaced ? namespace : '' };
  }

  private async readOne(req: IncomingMessage, target: Target): Promise<unknown> {
    if (target.kind.namespaced && target.namespace === undefined) {
      throw new MeshError(
        ErrorCodes.NOT_FOUND,
        `${target.kind.kind} is namespaced: POST to .../namespaces/{namespace}/${target.kind.plural}`,
      );
    }
    const body = await readBody(req, this.options.maxBodyBytes);
    const documents = decodeDocuments(body.toString('utf8'), req.headers['content-type']);
    if (documents.length !== 1) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `expected exactly one object, got ${documents.length}; use /api/v1/apply for several`,
      );
    }
    return documents[0];
  }

  private checkMatchesPath(resource: Resource, target: Target, name?: string): void {
    if (resource.kind !== target.kind.kind) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `body kind ${resource.kind} does not match the path's ${target.kind.kind}`,
        {
          field: 'kind',
        },
      );
    }
    const namespace = resource.metadata.namespace ?? '';
    if (target.namespace !== undefined && namespace !== target.namespace) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `metadata.namespace "${namespace}" does not match the path's namespace "${target.namespace}"`,
        { field: 'metadata.namespace' },
      );
    }
    if (name !== undefined && resource.metadata.name !== name) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `metadata.name "${resource.metadata.name}" does not match the path's name "${name}"`,
        {
          field: 'metadata.name',
        },
      );
    }
  }
}

function requireParam(ctx: RequestContext, name: string): string {
  const value = ctx.params[name];
  if (value === undefined) throw new MeshError(ErrorCodes.INTERNAL, `route has no :${name}`);
  return value;
}

function notFound(target: Target, name: string): MeshError {
  const where = target.namespace ? ` in namespace ${target.namespace}` : '';
  return new MeshError(ErrorCodes.NOT_FOUND, `${target.kind.kind} "${name}" not found${where}`);
}

function isTrue(value: string | null): boolean {
  return value === 'true' || value === '1';
}

function resultOf(stored: StoredResource, action: ApplyResult['action'], warnings: string[]): ApplyResult {
  return {
    apiVersion: stored.apiVersion,
    kind: stored.kind,
    namespace: stored.metadata.namespace ?? '',
    name: stored.metadata.name,
    action,
    resourceVersion: stored.metadata.resourceVersion,
    warnings,
  };
}
