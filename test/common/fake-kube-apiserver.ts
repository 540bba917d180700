/**
 * An in-process Kubernetes API server for tests: the real
 * `@kubernetes/client-node` (or plain fetch) talks to it over HTTP(S)
 * exactly as it would to kube-apiserver, because no API server can be
 * installed on the machines that run these tests.
 *
 * It is honest and generic: it stores any object of any resource type by
 * group/version/resource, knows the scope of a small table of built-in
 * types, learns custom resources when a CustomResourceDefinition is
 * created (as a real server does), and knows nothing about meshfed.
 *
 * What it implements, in the wire format of the real server:
 * - one global resourceVersion counter (etcd's revision); list metadata
 *   carries it; `limit`/`continue` paging; label and field selectors;
 * - get, create (409 AlreadyExists; 404 when the namespace is missing),
 *   replace (409 Conflict on a stale resourceVersion; 422 when a custom
 *   resource is replaced without one), JSON patch, merge patch and a
 *   strategic-merge patch for built-in types (415 for custom resources),
 *   delete with preconditions, the status subresource;
 * - watch (`?watch=true`): a chunked stream of JSON lines
 *   `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}`, resuming
 *   from a resourceVersion, synthetic ADDED events for a watch without
 *   one, label-selector transitions as ADDED/DELETED, `allowWatchBookmarks`,
 *   `timeoutSeconds`, and `410 Gone` (an ERROR event carrying an Expired
 *   Status, then the end of the stream) when the history is gone;
 * - `Status` objects for every error, shaped as Kubernetes shapes them;
 * - TokenReview (`authentication.k8s.io/v1`) answering from a table of
 *   ServiceAccount tokens, with audiences;
 * - discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`),
 *   `/version`, `/healthz`, `/readyz`.
 *
 * Known simplifications (documented in docs/kubernetes.md): no schema
 * validation or pruning of custom resources, no server-side apply, no
 * admission chain, namespaces and CRDs are deleted at once (their contents
 * with them) instead of going through Terminating, pages of a paged list
 * are read from the live state rather than a snapshot, and there is no RBAC
 * (any accepted bearer token may do anything).
 *
 * Test controls: `dropWatches()`, `compactHistory()`, `sendBookmarks()`,
 * `setAvailable(false)`, `addServiceAccountToken()`, `requests()`.
 */

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

import { parseLabelSelector } from '../../core/store/label-selector.js';
import type { LabelSelector } from '../../core/store/label-selector.js';
import { deepEqual } from '../../core/store/store-object.js';

export interface FakeKubeApiServerOptions {
  /** Events kept for watch-from-resourceVersion; older ones answer 410. Default 1000. */
  historySize?: number;
  /** Serve HTTPS with this certificate (PEM, chain allowed) and key. Default plain HTTP. */
  tls?: { certPem: string; keyPem: string };
  /** Bearer tokens of cluster admins. When empty (default) no authentication is required. */
  adminTokens?: string[];
  /** Interval of BOOKMARK events on watches that allow them. Default 60 s, as kube-apiserver. */
  bookmarkIntervalMs?: number;
  /** Audiences of the API server itself (TokenReview without `spec.audiences`). */
  apiAudiences?: string[];
  host?: string;
}

/** A ServiceAccount token the fake's TokenReview knows. */
export interface ServiceAccountTokenSpec {
  namespace: string;
  serviceAccount: string;
  /** Audiences the token was minted for. Default: the API server's own. */
  audiences?: string[];
}

/** One request the fake answered, for tests that assert on client behaviour (a relist, a retry). */
export interface RecordedRequest {
  method: string;
  path: string;
  query: string;
  watch: boolean;
  status: number;
}

/** How one resource type is served. */
export interface ResourceType {
  group: string;
  versions: string[];
  plural: string;
  singular: string;
  kind: string;
  listKind: string;
  namespaced: boolean;
  /** Replace without metadata.resourceVersion is allowed (built-ins) or refused with 422 (custom resources). */
  allowUnconditionalUpdate: boolean;
  /** The type has a status subresource: the main endpoint ignores status, /status changes only status. */
  statusSubresource: boolean;
  custom: boolean;
}

type JsonObject = Record<string, unknown>;

interface StoredObject {
  /** Stored form; every answer is parsed from it, so callers never share state. */
  json: string;
  obj: JsonObject;
}

interface HistoryEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  typeKey: string;
  namespace: string;
  json: string;
  obj: JsonObject;
  /** The object before the change (MODIFIED), for label-selector transitions. */
  prev: JsonObject | undefined;
}

interface Watcher {
  typeKey: string;
  type: ResourceType;
  apiVersion: string;
  namespace: string | undefined;
  labels: LabelSelector | undefined;
  fields: FieldRequirement[];
  res: ServerResponse;
  /** Bearer token the watch was opened with (for `refuseToken`). */
  token: string | undefined;
  bookmarks: boolean;
  timers: NodeJS.Timeout[];
  closed: boolean;
}

interface FieldRequirement {
  path: string[];
  value: string;
  negate: boolean;
}

const DEFAULT_AUDIENCES = ['https://kubernetes.default.svc.cluster.local'];
const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];
const MAX_BODY = 3 * 1024 * 1024;

/** An error answered as a Kubernetes Status object. */
export class KubeStatusError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: JsonObject,
  ) {
    super(message);
  }

  toStatus(): JsonObject {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      ...(this.details === undefined ? {} : { details: this.details }),
      code: this.code,
    };
  }
}

function builtin(
  group: string,
  version: string,
  plural: string,
  kind: string,
  namespaced: boolean,
  statusSubresource = false,
): ResourceType {
  return {
    group,
    versions: [version],
    plural,
    singular: kind.toLowerCase(),
    kind,
    listKind: `${kind}List`,
    namespaced,
    allowUnconditionalUpdate: true,
    statusSubresource,
    custom: false,
  };
}

/** The built-in types this fake serves; anything else comes from a CRD. */
const BUILTIN_TYPES: readonly ResourceType[] = [
  builtin('', 'v1', 'namespaces', 'Namespace', false, true),
  builtin('', 'v1', 'nodes', 'Node', false, true),
  builtin('', 'v1', 'pods', 'Pod', true, true),
  builtin('', 'v1', 'services', 'Service', true, true),
  builtin('', 'v1', 'endpoints', 'Endpoints', true),
  builtin('', 'v1', 'serviceaccounts', 'ServiceAccount', true),
  builtin('', 'v1', 'configmaps', 'ConfigMap', true),
  builtin('', 'v1', 'secrets', 'Secret', true),
  builtin('', 'v1', 'events', 'Event', true),
  builtin('discovery.k8s.io', 'v1', 'endpointslices', 'EndpointSlice', true),
  builtin('apps', 'v1', 'deployments', 'Deployment', true, true),
  builtin('coordination.k8s.io', 'v1', 'leases', 'Lease', true),
  builtin('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', 'CustomResourceDefinition', false, true),
  builtin(
    'admissionregistration.k8s.io',
    'v1',
    'mutatingwebhookconfigurations',
    'MutatingWebhookConfiguration',
    false,
  ),
];

/** List fields whose items strategic merge patch merges by a key instead of replacing the list. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  env: 'name',
  imagePullSecrets: 'name',
  conditions: 'type',
  hostAliases: 'ip',
};

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function metaOf(obj: JsonObject): JsonObject {
  if (!isObject(obj.metadata)) obj.metadata = {};
  return obj.metadata as JsonObject;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function groupVersion(group: string, version: string): string {
  return group === '' ? version : `${group}/${version}`;
}

/** `pods` or `virtualservices.networking.example.io`, as Kubernetes names a resource in messages. */
function qualifiedResource(type: ResourceType): string {
  return type.group === '' ? type.plural : `${type.plural}.${type.group}`;
}

function statusDetails(type: ResourceType, name: string): JsonObject {
  return { name, ...(type.group === '' ? {} : { group: type.group }), kind: type.plural };
}

function notFound(type: ResourceType, name: string): KubeStatusError {
  return new KubeStatusError(
    404,
    'NotFound',
    `${qualifiedResource(type)} "${name}" not found`,
    statusDetails(type, name),
  );
}

function conflict(type: ResourceType, name: string): KubeStatusError {
  return new KubeStatusError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${qualifiedResource(type)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    statusDetails(type, name),
  );
}

function badRequest(message: string): KubeStatusError {
  return new KubeStatusError(400, 'BadRequest', message);
}

function invalid(type: ResourceType, name: string, field: string, message: string): KubeStatusError {
  return new KubeStatusError(
    422,
    'Invalid',
    `${qualifiedResource(type)} "${name}" is invalid: ${field}: ${message}`,
    { ...statusDetails(type, name), causes: [{ reason: 'FieldValueInvalid', message, field }] },
  );
}

function parseFieldSelector(text: string): FieldRequirement[] {
  if (text.trim() === '') return [];
  return text.split(',').map((term) => {
    const m = /^\s*([A-Za-z0-9_.]+)\s*(!=|==|=)\s*(.*?)\s*$/.exec(term);
    if (!m) throw badRequest(`invalid field selector "${text}": "${term}" is not key=value or key!=value`);
    return { path: (m[1] ?? '').split('.'), value: m[3] ?? '', negate: m[2] === '!=' };
  });
}

function fieldValue(obj: JsonObject, path: string[]): string {
  let cur: unknown = obj;
  for (const part of path) {
    if (!isObject(cur)) return '';
    cur = cur[part];
  }
  return cur === undefined || cur === null ? '' : String(cur);
}

function fieldsMatch(obj: JsonObject, fields: FieldRequirement[]): boolean {
  return fields.every((f) => (fieldValue(obj, f.path) === f.value) !== f.negate);
}

// ---------------------------------------------------------------------------
// Patches

/** RFC 6901 JSON pointer to its unescaped tokens. */
function pointerTokens(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new Error(`JSON pointer "${pointer}" does not start with "/"`);
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function arrayIndex(arr: unknown[], token: string, forInsert: boolean, pointer: string): number {
  if (forInsert && token === '-') return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new Error(`"${token}" in "${pointer}" is not an array index`);
  const index = Number(token);
  if (index > arr.length || (!forInsert && index === arr.length)) {
    throw new Error(`index ${index} in "${pointer}" is out of bounds`);
  }
  return index;
}

function parentOf(doc: unknown, pointer: string): { parent: unknown; last: string } {
  const tokens = pointerTokens(pointer);
  if (tokens.length === 0) throw new Error('the whole document cannot be the target here');
  let cur = doc;
  for (const token of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, token, false, pointer)];
    else if (isObject(cur) && Object.prototype.hasOwnProperty.call(cur, token)) cur = cur[token];
    else throw new Error(`path "${pointer}" does not exist`);
  }
  return { parent: cur, last: tokens[tokens.length - 1] ?? '' };
}

function getAt(doc: unknown, pointer: string): unknown {
  let cur = doc;
  for (const token of pointerTokens(pointer)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, token, false, pointer)];
    else if (isObject(cur) && Object.prototype.hasOwnProperty.call(cur, token)) cur = cur[token];
    else throw new Error(`path "${pointer}" does not exist`);
  }
  return cur;
}

function addAt(doc: unknown, pointer: string, value: unknown): unknown {
  if (pointer === '') return value;
  const { parent, last } = parentOf(doc, pointer);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true, pointer), 0, value);
  else if (isObject(parent)) parent[last] = value;
  else throw new Error(`the parent of "${pointer}" is not an object or array`);
  return doc;
}

function removeAt(doc: unknown, pointer: string): unknown {
  const { parent, last } = parentOf(doc, pointer);
  if (Array.isArray(parent)) {
    const [removed] = parent.splice(arrayIndex(parent, last, false, pointer), 1);
    return removed;
  }
  if (isObject(parent) && Object.prototype.hasOwnProperty.call(parent, last)) {
    const removed = parent[last];
    delete parent[last];
    return removed;
  }
  throw new Error(`path "${pointer}" does not exist`);
}

/**
 * Applies an RFC 6902 JSON patch to a copy of `doc` and returns the result.
 * Strict: a missing path, a bad index or a failed `test` throws, and the
 * input is left untouched.
 */
export function applyJsonPatch(doc: unknown, patch: unknown): unknown {
  if (!Array.isArray(patch)) throw new Error('a JSON patch must be an array of operations');
  let out: unknown = clone(doc);
  for (const [i, op] of patch.entries()) {
    if (!isObject(op) || typeof op.op !== 'string' || typeof op.path !== 'string') {
      throw new Error(`operation ${i} needs string "op" and "path"`);
    }
    const path = op.path;
    switch (op.op) {
      case 'add':
        if (!('value' in op)) throw new Error(`operation ${i} (add) has no value`);
        out = addAt(out, path, clone(op.value));
        break;
      case 'remove':
        removeAt(out, path);
        break;
      case 'replace':
        if (!('value' in op)) throw new Error(`operation ${i} (replace) has no value`);
        if (path === '') out = clone(op.value);
        else {
          removeAt(out, path);
          out = addAt(out, path, clone(op.value));
        }
        break;
      case 'move':
      case 'copy': {
        if (typeof op.from !== 'string') throw new Error(`operation ${i} (${op.op}) has no "from"`);
        const value = op.op === 'move' ? removeAt(out, op.from) : clone(getAt(out, op.from));
        out = addAt(out, path, value);
        break;
      }
      case 'test':
        if (!deepEqual(getAt(out, path), op.value)) throw new Error(`test of "${path}" failed`);
        break;
      default:
        throw new Error(`operation ${i} has unknown op "${op.op}"`);
    }
  }
  return out;
}

/** RFC 7386 JSON merge patch. */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? clone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = applyMergePatch(out[key], value);
  }
  return out;
}

/**
 * Strategic merge patch as kube-apiserver applies it to built-in types,
 * reduced to what clients send in practice: objects merge, lists named in
 * MERGE_KEYS merge item by item on their key, other lists are replaced,
 * null deletes.
 */
function applyStrategicMergePatch(target: unknown, patch: unknown, field = ''): unknown {
  if (Array.isArray(patch)) {
    const key = MERGE_KEYS[field];
    if (key === undefined || !Array.isArray(target)) return clone(patch);
    const out = clone(target) as unknown[];
    for (const item of patch) {
      const id = isObject(item) ? item[key] : undefined;
      const at = out.findIndex((x) => isObject(x) && id !== undefined && x[key] === id);
      if (at >= 0) out[at] = applyStrategicMergePatch(out[at], item);
      else out.push(clone(item));
    }
    return out;
  }
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? clone(target) : {};
  for (const [k, value] of Object.entries(patch)) {
    if (value === null) delete out[k];
    else out[k] = applyStrategicMergePatch(out[k], value, k);
  }
  return out;
}

// ---------------------------------------------------------------------------
// The server

export class FakeKubeApiServer {
  /** `http(s)://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;

  private readonly types = new Map<string, ResourceType>();
  /** typeKey (`group/plural`) → `namespace/name` → object. */
  private readonly objects = new Map<string, Map<string, StoredObject>>();
  private readonly history: HistoryEvent[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<Socket>();
  private readonly saTokens = new Map<string, ServiceAccountTokenSpec & { uid: string }>();
  private readonly log: RecordedRequest[] = [];
  private rv = 1;
  /** Watches from a resourceVersion below this get 410 Gone. */
  private compactedRv = 0;
  private available = true;
  private readonly refused = new Set<string>();
  private closed = false;

  private constructor(
    private readonly server: http.Server,
    private readonly options: Required<Omit<FakeKubeApiServerOptions, 'tls' | 'host'>>,
    url: string,
    port: number,
  ) {
    this.url = url;
    this.port = port;
    for (const type of BUILTIN_TYPES) this.types.set(typeKeyOf(type), type);
    for (const ns of SYSTEM_NAMESPACES) this.seedNamespace(ns);
  }

  /** Starts a fake on a free port. */
  static async start(options: FakeKubeApiServerOptions = {}): Promise<FakeKubeApiServer> {
    const host = options.host ?? '127.0.0.1';
    let handler: (req: IncomingMessage, res: ServerResponse) => void = () => undefined;
    const listener = (req: IncomingMessage, res: ServerResponse): void => handler(req, res);
    const server = options.tls
      ? https.createServer({ cert: options.tls.certPem, key: options.tls.keyPem }, listener)
      : http.createServer(listener);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    const port = (server.address() as AddressInfo).port;
    const scheme = options.tls ? 'https' : 'http';
    const fake = new FakeKubeApiServer(
      server,
      {
        historySize: options.historySize ?? 1000,
        adminTokens: options.adminTokens ?? [],
        bookmarkIntervalMs: options.bookmarkIntervalMs ?? 60_000,
        apiAudiences: options.apiAudiences ?? DEFAULT_AUDIENCES,
      },
      `${scheme}://${host}:${port}`,
      port,
    );
    server.on('connection', (socket: Socket) => {
      fake.sockets.add(socket);
      socket.on('close', () => fake.sockets.delete(socket));
    });
    handler = (req, res) => fake.handle(req, res);
    return fake;
  }

  // ---- test controls ------------------------------------------------------

  /** The current global resourceVersion. */
  get resourceVersion(): number {
    return this.rv;
  }

  /** Open watch connections. */
  watchCount(): number {
    return this.watchers.size;
  }

  /**
   * Ends every watch. Abrupt (default): the socket is destroyed, as when a
   * network path or the server dies. Graceful: the chunked stream is ended
   * cleanly, as when the server's watch timeout expires.
   */
  dropWatches(options: { graceful?: boolean } = {}): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) this.endWatch(w, options.graceful !== true);
    return n;
  }

  /** Forgets all history: a watch resuming from any resourceVersion before now gets 410 Gone. */
  compactHistory(): void {
    this.history.length = 0;
    this.compactedRv = this.rv;
  }

  /** Sends a BOOKMARK at the current resourceVersion to every watch that allows bookmarks. */
  sendBookmarks(): void {
    for (const w of this.watchers) if (w.bookmarks) this.writeBookmark(w);
  }

  /** While unavailable every request is answered 503 and open watches are dropped. */
  setAvailable(available: boolean): void {
    this.available = available;
    if (!available) this.dropWatches();
  }

  /**
   * While refused, requests bearing `token` are answered 503 and its watches
   * are dropped: one client is cut off while the test keeps writing with another.
   */
  refuseToken(token: string, refuse = true): void {
    if (!refuse) {
      this.refused.delete(token);
      return;
    }
    this.refused.add(token);
    for (const w of [...this.watchers]) if (w.token === token) this.endWatch(w, true);
  }

  /** Registers a ServiceAccount token for TokenReview and API access. */
  addServiceAccountToken(token: string, spec: ServiceAccountTokenSpec): void {
    this.saTokens.set(token, { ...spec, uid: randomUUID() });
  }

  /** Requests answered so far (watches are recorded when they start). */
  requests(
    filter: { method?: string; path?: string; watch?: boolean; status?: number } = {},
  ): RecordedRequest[] {
    return this.log.filter(
      (r) =>
        (filter.method === undefined || r.method === filter.method) &&
        (filter.path === undefined || r.path === filter.path) &&
        (filter.watch === undefined || r.watch === filter.watch) &&
        (filter.status === undefined || r.status === filter.status),
    );
  }

  /** The resource types served now (built-ins plus CRDs). */
  resourceTypes(): ResourceType[] {
    return [...this.types.values()];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watchers]) this.endWatch(w, true);
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- request handling ---------------------------------------------------

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const watch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
    const record = (status: number): void => {
      this.log.push({ method, path: url.pathname, query: url.search, watch, status });
      if (this.log.length > 20_000) this.log.splice(0, 10_000);
    };
    void (async () => {
      try {
        if (!this.available || this.refused.has(bearerOf(req) ?? '')) {
          throw new KubeStatusError(
            503,
            'ServiceUnavailable',
            'the server is currently unable to handle the request',
          );
        }
        this.authenticate(req);
        const body =
          method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE'
            ? await readBody(req)
            : Buffer.alloc(0);
        const answer = this.route(method, url, body, req.headers['content-type'] ?? '', res);
        if (answer === 'streaming') {
          record(200);
          return;
        }
        record(answer.status);
        sendJson(res, answer.status, answer.body);
      } catch (err) {
        const status =
          err instanceof KubeStatusError
            ? err
            : new KubeStatusError(500, 'InternalError', `Internal error occurred: ${(err as Error).message}`);
        record(status.code);
        if (res.headersSent) res.destroy();
        else sendJson(res, status.code, status.toStatus());
      }
    })();
  }

  private authenticate(req: IncomingMessage): void {
    if (this.options.adminTokens.length === 0) return;
    const token = bearerOf(req);
    if (token !== undefined) {
      if (this.options.adminTokens.includes(token)) return;
      const sa = this.saTokens.get(token);
      const audiences = sa?.audiences ?? this.options.apiAudiences;
      if (sa && audiences.some((a) => this.options.apiAudiences.includes(a))) return;
    }
    throw new KubeStatusError(401, 'Unauthorized', 'Unauthorized');
  }

  private route(
    method: string,
    url: URL,
    body: Buffer,
    contentType: string,
    res: ServerResponse,
  ): { status: number; body: unknown } | 'streaming' {
    const segs = url.pathname
      .split('/')
      .filter((s) => s !== '')
      .map(decodeURIComponent);
    if (
      method === 'GET' &&
      (url.pathname === '/healthz' || url.pathname === '/readyz' || url.pathname === '/livez')
    ) {
      return { status: 200, body: 'ok' };
    }
    if (method === 'GET' && url.pathname === '/version') {
      return {
        status: 200,
        body: {
          major: '1',
          minor: '30',
          gitVersion: 'v1.30.0-fake',
          platform: `${process.platform}/${process.arch}`,
        },
      };
    }
    let group: string;
    let version: string;
    let rest: string[];
    if (segs[0] === 'api') {
      if (segs.length === 1) return { status: 200, body: { kind: 'APIVersions', versions: ['v1'] } };
      group = '';
      version = segs[1] ?? '';
      rest = segs.slice(2);
      if (version !== 'v1') throw pageNotFound();
    } else if (segs[0] === 'apis') {
      if (segs.length === 1) return { status: 200, body: this.groupList() };
      group = segs[1] ?? '';
      if (segs.length === 2) {
        const g = this.groupList().groups.find((x) => x.name === group);
        if (!g) throw pageNotFound();
        return { status: 200, body: { kind: 'APIGroup', apiVersion: 'v1', ...g } };
      }
      version = segs[2] ?? '';
      rest = segs.slice(3);
    } else {
      throw pageNotFound();
    }
    if (
      group === 'authentication.k8s.io' &&
      version === 'v1' &&
      rest.length === 1 &&
      rest[0] === 'tokenreviews'
    ) {
      if (method !== 'POST') throw methodNotAllowed(method);
      return { status: 201, body: this.tokenReview(parseJson(body)) };
    }
    if (rest.length === 0) {
      if (method !== 'GET') throw methodNotAllowed(method);
      return { status: 200, body: this.resourceList(group, version) };
    }

    // Resolve [namespaces/<ns>/]<plural>[/<name>[/<subresource>]].
    let namespace: string | undefined;
    let plural: string;
    let name: string | undefined;
    let sub: string | undefined;
    if (
      rest[0] === 'namespaces' &&
      rest.length >= 3 &&
      this.lookup(group, version, rest[2] ?? '')?.namespaced
    ) {
      namespace = rest[1];
      plural = rest[2] ?? '';
      name = rest[3];
      sub = rest[4];
      if (rest.length > 5) throw pageNotFound();
    } else {
      plural = rest[0] ?? '';
      name = rest[1];
      sub = rest[2];
      if (rest.length > 3) throw pageNotFound();
    }
    const type = this.lookup(group, version, plural);
    if (!type) {
      throw new KubeStatusError(404, 'NotFound', 'the server could not find the requested resource', {});
    }
    if (sub !== undefined && !(sub === 'status' && type.statusSubresource)) {
      throw new KubeStatusError(404, 'NotFound', 'the server could not find the requested resource', {});
    }
    const apiVersion = groupVersion(group, version);
    const typeKey = typeKeyOf(type);
    if (type.namespaced && name !== undefined && namespace === undefined) {
      throw new KubeStatusError(404, 'NotFound', 'the server could not find the requested resource', {});
    }
    const q = url.searchParams;

    if (name === undefined) {
      switch (method) {
        case 'GET': {
          if (q.get('watch') === 'true' || q.get('watch') === '1') {
            this.startWatch(type, apiVersion, namespace, q, res);
            return 'streaming';
          }
          return { status: 200, body: this.list(type, apiVersion, namespace, q) };
        }
        case 'POST': {
          if (type.namespaced && namespace === undefined) throw methodNotAllowed(method);
          const obj = parseObject(body, contentType);
          return { status: 201, body: this.create(type, apiVersion, namespace, obj) };
        }
        case 'DELETE':
          return { status: 200, body: this.deleteCollection(type, apiVersion, namespace, q) };
        default:
          throw methodNotAllowed(method);
      }
    }
    const key = `${namespace ?? ''}/${name}`;
    switch (method) {
      case 'GET': {
        const found = this.objects.get(typeKey)?.get(key);
        if (!found) throw notFound(type, name);
        return { status: 200, body: this.render(found.json, apiVersion, type) };
      }
      case 'PUT': {
        const obj = parseObject(body, contentType);
        return { status: 200, body: this.replace(type, apiVersion, namespace, name, obj, sub === 'status') };
      }
      case 'PATCH':
        return {
          status: 200,
          body: this.patch(type, apiVersion, namespace, name, body, contentType, sub === 'status'),
        };
      case 'DELETE': {
        if (sub !== undefined) throw methodNotAllowed(method);
        const options = body.length === 0 ? {} : parseJson(body);
        return { status: 200, body: this.remove(type, apiVersion, namespace, name, options) };
      }
      default:
        throw methodNotAllowed(method);
    }
  }

  private lookup(group: string, version: string, plural: string): ResourceType | undefined {
    const type = this.types.get(`${group}/${plural}`);
    return type && type.versions.includes(version) ? type : undefined;
  }

  private groupList(): { kind: string; apiVersion: string; groups: JsonObject[] & { name: string }[] } {
    const byGroup = new Map<string, Set<string>>();
    for (const t of this.types.values()) {
      if (t.group === '') continue;
      const set = byGroup.get(t.group) ?? new Set<string>();
      for (const v of t.versions) set.add(v);
      byGroup.set(t.group, set);
    }
    byGroup.set('authentication.k8s.io', new Set(['v1']));
    const groups = [...byGroup.entries()].map(([name, versions]) => {
      const list = [...versions].map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
      return { name, versions: list, preferredVersion: list[list.length - 1] };
    });
    return { kind: 'APIGroupList', apiVersion: 'v1', groups };
  }

  private resourceList(group: string, version: string): JsonObject {
    const resources: JsonObject[] = [];
    for (const t of this.types.values()) {
      if (t.group !== group || !t.versions.includes(version)) continue;
      resources.push({
        name: t.plural,
        singularName: t.singular,
        namespaced: t.namespaced,
        kind: t.kind,
        verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
      });
      if (t.statusSubresource) {
        resources.push({
          name: `${t.plural}/status`,
          singularName: '',
          namespaced: t.namespaced,
          kind: t.kind,
          verbs: ['get', 'patch', 'update'],
        });
      }
    }
    if (group === 'authentication.k8s.io' && version === 'v1') {
      resources.push({
        name: 'tokenreviews',
        singularName: '',
        namespaced: false,
        kind: 'TokenReview',
        verbs: ['create'],
      });
    }
    if (resources.length === 0) throw pageNotFound();
    return {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: groupVersion(group, version),
      resources,
    };
  }

  /** The stored form answered under the requested version, as the None conversion strategy does. */
  private render(json: string, apiVersion: string, type: ResourceType): JsonObject {
    const obj = JSON.parse(json) as JsonObject;
    obj.apiVersion = apiVersion;
    obj.kind = type.kind;
    return obj;
  }

  private bucket(typeKey: string): Map<string, StoredObject> {
    let b = this.objects.get(typeKey);
    if (!b) {
      b = new Map();
      this.objects.set(typeKey, b);
    }
    return b;
  }

  private list(
    type: ResourceType,
    apiVersion: string,
    namespace: string | undefined,
    q: URLSearchParams,
  ): JsonObject {
    const labels = parseSelector(q.get('labelSelector'));
    const fields = parseFieldSelector(q.get('fieldSelector') ?? '');
    const limit = q.get('limit') === null ? 0 : Number(q.get('limit'));
    if (!Number.isSafeInteger(limit) || limit < 0)
      throw badRequest(`invalid limit "${q.get('limit') ?? ''}"`);
    let after = '';
    let listRv = this.rv;
    const cont = q.get('continue');
    if (cont !== null && cont !== '') {
      try {
        const token = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as {
          rv?: unknown;
          start?: unknown;
        };
        if (typeof token.rv !== 'number' || typeof token.start !== 'string') throw new Error('bad token');
        if (token.rv < this.compactedRv) {
          throw new KubeStatusError(
            410,
            'Expired',
            'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
          );
        }
        after = token.start;
        listRv = token.rv;
      } catch (err) {
        if (err instanceof KubeStatusError) throw err;
        throw badRequest('continue key is not valid: invalid continue token');
      }
    }
    const keys = [...this.bucket(typeKeyOf(type)).keys()].sort();
    const items: JsonObject[] = [];
    let next: string | undefined;
    let remaining = 0;
    for (const key of keys) {
      if (after !== '' && key <= after) continue;
      const stored = this.bucket(typeKeyOf(type)).get(key);
      if (!stored) continue;
      const meta = metaOf(stored.obj);
      if (namespace !== undefined && meta.namespace !== namespace) continue;
      if (labels && !labels.matches(labelsOf(stored.obj))) continue;
      if (!fieldsMatch(stored.obj, fields)) continue;
      if (limit > 0 && items.length >= limit) {
        remaining++;
        continue;
      }
      const item = JSON.parse(stored.json) as JsonObject;
      // Typed lists of built-in kinds carry no kind/apiVersion on their items; custom resource lists do.
      if (type.custom) {
        item.apiVersion = apiVersion;
        item.kind = type.kind;
      } else {
        delete item.apiVersion;
        delete item.kind;
      }
      items.push(item);
      next = key;
    }
    const metadata: JsonObject = { resourceVersion: String(listRv) };
    if (remaining > 0 && next !== undefined) {
      metadata.continue = Buffer.from(JSON.stringify({ rv: listRv, start: next })).toString('base64url');
      metadata.remainingItemCount = remaining;
    }
    return { kind: type.listKind, apiVersion, metadata, items };
  }

  private create(
    type: ResourceType,
    apiVersion: string,
    namespace: string | undefined,
    input: JsonObject,
  ): JsonObject {
    const obj = clone(input);
    const meta = metaOf(obj);
    if (typeof obj.kind === 'string' && obj.kind !== type.kind) {
      throw badRequest(
        `the kind "${obj.kind}" in the body does not match the kind "${type.kind}" of the endpoint`,
      );
    }
    if (meta.name === undefined && typeof meta.generateName === 'string') {
      meta.name = `${meta.generateName}${randomUUID().slice(0, 5)}`;
    }
    const name = str(meta.name) ?? '';
    if (name === '')
      throw invalid(type, '', 'metadata.name', 'Required value: name or generateName is required');
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name) || name.length > 253) {
      throw invalid(
        type,
        name,
        'metadata.name',
        `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`,
      );
    }
    if (type.namespaced) {
      if (meta.namespace !== undefined && meta.namespace !== namespace) {
        throw badRequest(
          'the namespace of the provided object does not match the namespace sent on the request',
        );
      }
      meta.namespace = namespace;
      if (!this.bucket('/namespaces').has(`/${namespace ?? ''}`)) {
        throw new KubeStatusError(404, 'NotFound', `namespaces "${namespace ?? ''}" not found`, {
          name: namespace ?? '',
          kind: 'namespaces',
        });
      }
    } else {
      delete meta.namespace;
    }
    if (meta.resourceVersion !== undefined && meta.resourceVersion !== '') {
      throw new KubeStatusError(
        500,
        'InternalError',
        'Internal error occurred: resourceVersion should not be set on objects to be created',
      );
    }
    const key = `${type.namespaced ? (namespace ?? '') : ''}/${name}`;
    const bucket = this.bucket(typeKeyOf(type));
    if (bucket.has(key)) {
      throw new KubeStatusError(
        409,
        'AlreadyExists',
        `${qualifiedResource(type)} "${name}" already exists`,
        statusDetails(type, name),
      );
    }
    meta.uid = randomUUID();
    meta.creationTimestamp = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    meta.generation = 1;
    delete meta.deletionTimestamp;
    delete meta.managedFields;
    if (type.statusSubresource && !type.custom && type.kind !== 'Namespace') delete obj.status;
    if (type.custom && type.statusSubresource) delete obj.status;
    this.defaultFields(type, obj);
    if (type.kind === 'CustomResourceDefinition') this.registerCrd(obj);
    return this.write('ADDED', type, apiVersion, key, obj, undefined);
  }

  /** The little defaulting a real server does that clients rely on. */
  private defaultFields(type: ResourceType, obj: JsonObject): void {
    if (type.kind === 'Namespace') {
      const meta = metaOf(obj);
      const labels = isObject(meta.labels) ? meta.labels : {};
      labels['kubernetes.io/metadata.name'] = String(meta.name);
      meta.labels = labels;
      obj.spec = isObject(obj.spec) ? obj.spec : { finalizers: ['kubernetes'] };
      obj.status = { phase: 'Active' };
    }
    if (type.kind === 'CustomResourceDefinition') {
      obj.status = {
        conditions: [
          { type: 'NamesAccepted', status: 'True', reason: 'NoConflicts' },
          { type: 'Established', status: 'True', reason: 'InitialNamesAccepted' },
        ],
      };
    }
  }

  private replace(
    type: ResourceType,
    apiVersion: string,
    namespace: string | undefined,
    name: string,
    input: JsonObject,
    statusOnly: boolean,
  ): JsonObject {
    const key = `${namespace ?? ''}/${name}`;
    const current = this.bucket(typeKeyOf(type)).get(key);
    if (!current) throw notFound(type, name);
    const meta = metaOf(input);
    if (meta.name !== undefined && meta.name !== name) {
      throw badRequest(
        `the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`,
      );
    }
    if (type.namespaced && meta.namespace !== undefined && meta.namespace !== namespace) {
      throw badRequest(
        'the namespace of the provided object does not match the namespace sent on the request',
      );
    }
    const given = meta.resourceVersion;
    const currentRv = String(metaOf(current.obj).resourceVersion);
    if (given === undefined || given === '') {
      if (!type.allowUnconditionalUpdate) {
        throw invalid(
          type,
          name,
          'metadata.resourceVersion',
          'Invalid value: 0x0: must be specified for an update',
        );
      }
    } else if (String(given) !== currentRv) {
      throw conflict(type, name);
    }
    const curMeta = metaOf(current.obj);
    if (meta.uid !== undefined && meta.uid !== '' && meta.uid !== curMeta.uid) {
      throw new KubeStatusError(
        409,
        'Conflict',
        `Precondition failed: UID in precondition: ${String(meta.uid)}, UID in object meta: ${String(curMeta.uid)}`,
        statusDetails(type, name),
      );
    }
    return this.applyUpdate(type, apiVersion, key, current, clone(input), statusOnly);
  }

  /** Shared tail of replace and patch: keep identity, honour the status subresource, bump generation. */
  private applyUpdate(
    type: ResourceType,
    apiVersion: string,
    key: string,
    current: StoredObject,
    next: JsonObject,
    statusOnly: boolean,
  ): JsonObject {
    const prev = current.obj;
    const prevMeta = metaOf(prev);
    let out: JsonObject;
    if (statusOnly) {
      out = clone(prev);
      if (next.status === undefined) delete out.status;
      else out.status = next.status;
    } else {
      out = next;
      if (type.statusSubresource) {
        if (prev.status === undefined) delete out.status;
        else out.status = clone(prev.status);
      }
      const meta = metaOf(out);
      const managed = ['uid', 'creationTimestamp', 'generation', 'name', 'namespace', 'deletionTimestamp'];
      for (const f of managed) {
        if (prevMeta[f] === undefined) delete meta[f];
        else meta[f] = prevMeta[f];
      }
    }
    out.apiVersion = prev.apiVersion;
    out.kind = prev.kind;
    const strip = (o: JsonObject): JsonObject => {
      const { metadata: _m, status: _s, apiVersion: _a, kind: _k, ...rest } = o;
      return rest;
    };
    if (!statusOnly && !deepEqual(strip(prev), strip(out))) {
      metaOf(out).generation = Number(prevMeta.generation ?? 0) + 1;
    }
    // A write that changes nothing still takes a revision in etcd only if it is
    // written; kube-apiserver skips no-op updates and answers the current object.
    const probe = clone(out);
    metaOf(probe).resourceVersion = prevMeta.resourceVersion;
    if (deepEqual(probe, prev)) return this.render(current.json, apiVersion, type);
    if (type.kind === 'CustomResourceDefinition') this.registerCrd(out);
    return this.write('MODIFIED', type, apiVersion, key, out, prev);
  }

  private patch(
    type: ResourceType,
    apiVersion: string,
    namespace: string | undefined,
    name: string,
    body: Buffer,
    contentType: string,
    statusOnly: boolean,
  ): JsonObject {
    const key = `${namespace ?? ''}/${name}`;
    const current = this.bucket(typeKeyOf(type)).get(key);
    if (!current) throw notFound(type, name);
    const mediaType = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
    const patchDoc = parseJson(body);
    let next: unknown;
    try {
      switch (mediaType) {
        case 'application/json-patch+json':
          next = applyJsonPatch(current.obj, patchDoc);
          break;
        case 'application/merge-patch+json':
          next = applyMergePatch(current.obj, patchDoc);
          break;
        case 'application/strategic-merge-patch+json':
          if (type.custom) {
            throw new KubeStatusError(
              415,
              'UnsupportedMediaType',
              `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`,
            );
          }
          next = applyStrategicMergePatch(current.obj, patchDoc);
          break;
        default:
          throw new KubeStatusError(
            415,
            'UnsupportedMediaType',
            `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json${type.custom ? '' : ', application/strategic-merge-patch+json'}`,
          );
      }
    } catch (err) {
      if (err instanceof KubeStatusError) throw err;
      throw new KubeStatusError(
        422,
        'Invalid',
        `the server rejected our request due to an error in our request: ${(err as Error).message}`,
      );
    }
    if (!isObject(next)) throw badRequest('the patch does not produce an object');
    const given = metaOf(next).resourceVersion;
    if (given !== undefined && String(given) !== String(metaOf(current.obj).resourceVersion)) {
      throw conflict(type, name);
    }
    return this.applyUpdate(type, apiVersion, key, current, next, statusOnly);
  }

  private remove(
    type: ResourceType,
    apiVersion: string,
    namespace: string | undefined,
    name: string,
    options: unknown,
  ): JsonObject {
    const key = `${namespace ?? ''}/${name}`;
    const current = this.bucket(typeKeyOf(type)).get(key);
    if (!current) throw notFound(type, name);
    const pre = isObject(options) && isObject(options.preconditions) ? options.preconditions : {};
    const meta = metaOf(current.obj);
    if (pre.resourceVersion !== undefined && String(pre.resourceVersion) !== String(meta.resourceVersion)) {
      throw new KubeStatusError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${qualifiedResource(type)} "${name}": Precondition failed: ResourceVersion in precondition: ${String(pre.resourceVersion)}, ResourceVersion in object meta: ${String(meta.resourceVersion)}`,
        statusDetails(type, name),
      );
    }
    if (pre.uid !== undefined && pre.uid !== meta.uid) {
      throw new KubeStatusError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${qualifiedResource(type)} "${name}": Precondition failed: UID in precondition: ${String(pre.uid)}, UID in object meta: ${String(meta.uid)}`,
        statusDetails(type, name),
      );
    }
    return this.deleteStored(type, apiVersion, key, current);
  }

  private deleteStored(
    type: ResourceType,
    apiVersion: string,
    key: string,
    current: StoredObject,
  ): JsonObject {
    const typeKey = typeKeyOf(type);
    this.bucket(typeKey).delete(key);
    // Contents go with their container, at once (a real server passes through Terminating first).
    if (type.kind === 'Namespace') {
      const ns = String(metaOf(current.obj).name);
      for (const t of this.types.values()) {
        if (!t.namespaced) continue;
        for (const [k, o] of [...this.bucket(typeKeyOf(t)).entries()]) {
          if (metaOf(o.obj).namespace === ns)
            this.deleteStored(t, groupVersion(t.group, t.versions[0] ?? 'v1'), k, o);
        }
      }
    }
    if (type.kind === 'CustomResourceDefinition') this.unregisterCrd(current.obj);
    // The deleted object carries the revision of its deletion, as etcd3's store answers it.
    return this.write('DELETED', type, apiVersion, key, clone(current.obj), current.obj);
  }

  private deleteCollection(
    type: ResourceType,
    apiVersion: string,
    namespace: string | undefined,
    q: URLSearchParams,
  ): JsonObject {
    const labels = parseSelector(q.get('labelSelector'));
    const fields = parseFieldSelector(q.get('fieldSelector') ?? '');
    const items: JsonObject[] = [];
    for (const [key, stored] of [...this.bucket(typeKeyOf(type)).entries()]) {
      const meta = metaOf(stored.obj);
      if (namespace !== undefined && meta.namespace !== namespace) continue;
      if (labels && !labels.matches(labelsOf(stored.obj))) continue;
      if (!fieldsMatch(stored.obj, fields)) continue;
      items.push(this.deleteStored(type, apiVersion, key, stored));
    }
    return { kind: type.listKind, apiVersion, metadata: { resourceVersion: String(this.rv) }, items };
  }

  /** Stores a change under the next revision, records it in the history and feeds the watches. */
  private write(
    type: HistoryEvent['type'],
    rtype: ResourceType,
    apiVersion: string,
    key: string,
    obj: JsonObject,
    prev: JsonObject | undefined,
  ): JsonObject {
    this.rv++;
    metaOf(obj).resourceVersion = String(this.rv);
    const json = JSON.stringify(obj);
    const typeKey = typeKeyOf(rtype);
    if (type !== 'DELETED') this.bucket(typeKey).set(key, { json, obj });
    const event: HistoryEvent = {
      rv: this.rv,
      type,
      typeKey,
      namespace: str(metaOf(obj).namespace) ?? '',
      json,
      obj,
      prev,
    };
    this.history.push(event);
    if (this.history.length > this.options.historySize) {
      const dropped = this.history.splice(0, this.history.length - this.options.historySize);
      const last = dropped[dropped.length - 1];
      if (last) this.compactedRv = Math.max(this.compactedRv, last.rv);
    }
    for (const w of this.watchers) this.deliver(w, event);
    return this.render(json, apiVersion, rtype);
  }

  private seedNamespace(name: string): void {
    const type = this.types.get('/namespaces');
    if (!type) return;
    this.create(type, 'v1', undefined, { metadata: { name } });
  }

  // ---- CRDs ---------------------------------------------------------------

  private registerCrd(crd: JsonObject): void {
    const spec = isObject(crd.spec) ? crd.spec : {};
    const names = isObject(spec.names) ? spec.names : {};
    const group = str(spec.group);
    const plural = str(names.plural);
    const kind = str(names.kind);
    if (!group || !plural || !kind) {
      throw new KubeStatusError(
        422,
        'Invalid',
        'CustomResourceDefinition is invalid: spec.group, spec.names.plural and spec.names.kind are required',
      );
    }
    if (`${plural}.${group}` !== metaOf(crd).name) {
      throw new KubeStatusError(
        422,
        'Invalid',
        `CustomResourceDefinition.apiextensions.k8s.io "${String(metaOf(crd).name)}" is invalid: metadata.name: Invalid value: must be spec.names.plural+"."+spec.group`,
      );
    }
    const versions = Array.isArray(spec.versions) ? spec.versions.filter(isObject) : [];
    const served = versions.filter((v) => v.served !== false).map((v) => str(v.name) ?? '');
    const status = versions.some((v) => isObject(v.subresources) && isObject(v.subresources.status));
    this.types.set(`${group}/${plural}`, {
      group,
      versions: served,
      plural,
      singular: str(names.singular) ?? kind.toLowerCase(),
      kind,
      listKind: str(names.listKind) ?? `${kind}List`,
      namespaced: spec.scope !== 'Cluster',
      allowUnconditionalUpdate: false,
      statusSubresource: status,
      custom: true,
    });
  }

  private unregisterCrd(crd: JsonObject): void {
    const spec = isObject(crd.spec) ? crd.spec : {};
    const names = isObject(spec.names) ? spec.names : {};
    const typeKey = `${str(spec.group) ?? ''}/${str(names.plural) ?? ''}`;
    const type = this.types.get(typeKey);
    if (!type) return;
    for (const [k, o] of [...this.bucket(typeKey).entries()]) {
      this.deleteStored(type, groupVersion(type.group, type.versions[0] ?? 'v1'), k, o);
    }
    for (const w of [...this.watchers]) if (w.typeKey === typeKey) this.endWatch(w, false);
    this.types.delete(typeKey);
  }

  // ---- watch --------------------------------------------------------------

  private startWatch(
    type: ResourceType,
    apiVersion: string,
    namespace: string | undefined,
    q: URLSearchParams,
    res: ServerResponse,
  ): void {
    const labels = parseSelector(q.get('labelSelector'));
    const fields = parseFieldSelector(q.get('fieldSelector') ?? '');
    const rvText = q.get('resourceVersion') ?? '';
    if (rvText !== '' && !/^\d+$/.test(rvText)) {
      throw invalid(type, '', 'resourceVersion', `Invalid value: "${rvText}": must be a decimal integer`);
    }
    const watcher: Watcher = {
      typeKey: typeKeyOf(type),
      type,
      apiVersion,
      namespace,
      labels,
      fields,
      res,
      token: bearerOf(res.req),
      bookmarks: q.get('allowWatchBookmarks') === 'true',
      timers: [],
      closed: false,
    };
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, private' });
    res.flushHeaders();
    const from = rvText === '' || rvText === '0' ? undefined : Number(rvText);
    if (from !== undefined && from < this.compactedRv) {
      const gone = new KubeStatusError(
        410,
        'Expired',
        `too old resource version: ${from} (${this.compactedRv})`,
      );
      res.end(`${JSON.stringify({ type: 'ERROR', object: gone.toStatus() })}\n`);
      return;
    }
    this.watchers.add(watcher);
    res.on('close', () => this.endWatch(watcher, false));
    if (from === undefined) {
      // "Get state and start at most recent": synthetic ADDED events for what exists now.
      for (const key of [...this.bucket(watcher.typeKey).keys()].sort()) {
        const stored = this.bucket(watcher.typeKey).get(key);
        if (stored && this.selects(watcher, stored.obj)) this.writeEvent(watcher, 'ADDED', stored.json);
      }
    } else {
      for (const ev of this.history) if (ev.rv > from) this.deliver(watcher, ev);
    }
    const timeout = Number(q.get('timeoutSeconds') ?? '0');
    if (Number.isFinite(timeout) && timeout > 0) {
      watcher.timers.push(setTimeout(() => this.endWatch(watcher, false), timeout * 1000));
    }
    if (watcher.bookmarks) {
      const t = setInterval(() => this.writeBookmark(watcher), this.options.bookmarkIntervalMs);
      t.unref();
      watcher.timers.push(t);
    }
  }

  private selects(w: Watcher, obj: JsonObject): boolean {
    if (w.namespace !== undefined && metaOf(obj).namespace !== w.namespace) return false;
    if (w.labels && !w.labels.matches(labelsOf(obj))) return false;
    return fieldsMatch(obj, w.fields);
  }

  private deliver(w: Watcher, ev: HistoryEvent): void {
    if (w.closed || ev.typeKey !== w.typeKey) return;
    if (w.namespace !== undefined && ev.namespace !== w.namespace) return;
    const now = this.selects(w, ev.obj);
    if (ev.type === 'MODIFIED' && ev.prev !== undefined) {
      const before = this.selects(w, ev.prev);
      if (before && now) this.writeEvent(w, 'MODIFIED', ev.json);
      else if (now) this.writeEvent(w, 'ADDED', ev.json);
      else if (before) this.writeEvent(w, 'DELETED', ev.json);
      return;
    }
    if (now) this.writeEvent(w, ev.type, ev.json);
  }

  private writeEvent(w: Watcher, type: string, json: string): void {
    const obj = JSON.parse(json) as JsonObject;
    obj.apiVersion = w.apiVersion;
    obj.kind = w.type.kind;
    w.res.write(`${JSON.stringify({ type, object: obj })}\n`);
  }

  private writeBookmark(w: Watcher): void {
    if (w.closed) return;
    const object = {
      kind: w.type.kind,
      apiVersion: w.apiVersion,
      metadata: { resourceVersion: String(this.rv) },
    };
    w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object })}\n`);
  }

  private endWatch(w: Watcher, abrupt: boolean): void {
    if (w.closed) return;
    w.closed = true;
    this.watchers.delete(w);
    for (const t of w.timers) clearTimeout(t);
    if (abrupt) w.res.socket?.destroy();
    else w.res.end();
  }

  // ---- TokenReview ----------------------------------------------------------

  private tokenReview(body: unknown): JsonObject {
    const spec = isObject(body) && isObject(body.spec) ? body.spec : {};
    const token = str(spec.token) ?? '';
    const wanted = Array.isArray(spec.audiences)
      ? spec.audiences.filter((a): a is string => typeof a === 'string')
      : [];
    const audiences = wanted.length > 0 ? wanted : this.options.apiAudiences;
    const review = (status: JsonObject): JsonObject => ({
      kind: 'TokenReview',
      apiVersion: 'authentication.k8s.io/v1',
      metadata: { creationTimestamp: null },
      spec,
      status,
    });
    const sa = this.saTokens.get(token);
    if (!sa) return review({ user: {}, error: '[invalid bearer token, token lookup failed]' });
    const tokenAudiences = sa.audiences ?? this.options.apiAudiences;
    const granted = tokenAudiences.filter((a) => audiences.includes(a));
    if (granted.length === 0) {
      return review({
        user: {},
        error: `[invalid bearer token, token audiences ${JSON.stringify(tokenAudiences)} is invalid for the target audiences ${JSON.stringify(audiences)}]`,
      });
    }
    return review({
      authenticated: true,
      user: {
        username: `system:serviceaccount:${sa.namespace}:${sa.serviceAccount}`,
        uid: sa.uid,
        groups: ['system:serviceaccounts', `system:serviceaccounts:${sa.namespace}`, 'system:authenticated'],
      },
      audiences: granted,
    });
  }
}

function bearerOf(req: IncomingMessage): string | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  return m?.[1];
}

function typeKeyOf(type: ResourceType): string {
  return `${type.group}/${type.plural}`;
}

function labelsOf(obj: JsonObject): Record<string, string> {
  const labels = metaOf(obj).labels;
  return isObject(labels) ? (labels as Record<string, string>) : {};
}

function parseSelector(text: string | null): LabelSelector | undefined {
  if (text === null || text.trim() === '') return undefined;
  try {
    return parseLabelSelector(text);
  } catch (err) {
    throw badRequest(`unable to parse requirement: ${(err as Error).message}`);
  }
}

function pageNotFound(): KubeStatusError {
  return new KubeStatusError(404, 'NotFound', 'the server could not find the requested resource', {});
}

function methodNotAllowed(method: string): KubeStatusError {
  return new KubeStatusError(
    405,
    'MethodNotAllowed',
    `the server does not allow this method on the requested resource (${method})`,
  );
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw badRequest(`the body of the request could not be decoded as JSON: ${(err as Error).message}`);
  }
}

function parseObject(body: Buffer, contentType: string): JsonObject {
  const mediaType = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  if (mediaType !== '' && mediaType !== 'application/json') {
    throw new KubeStatusError(
      415,
      'UnsupportedMediaType',
      `the body of the request was in an unknown format - accepted media types include: application/json`,
    );
  }
  const obj = parseJson(body);
  if (!isObject(obj)) throw badRequest('the body of the request must be a JSON object');
  return obj;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY) throw new KubeStatusError(413, 'RequestEntityTooLarge', 'Request entity too large');
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}
