/**
 * An in-process Consul HTTP API for tests: the real `consul` npm client (or
 * plain fetch) talks to it over HTTP exactly as it would to a Consul agent,
 * because no Consul server can be installed on the machines that run these
 * tests.
 *
 * It is honest and generic: a catalog of nodes, services and checks with
 * Consul's write semantics and raft-index bookkeeping, knowing nothing about
 * meshfed. What it implements, in Consul's wire format (developer.hashicorp.com
 * /consul/api-docs: catalog, health, features/blocking):
 * - `PUT /v1/catalog/register` (node, `Service`, `Check`/`Checks`,
 *   `SkipNodeUpdate`; `Service.ID` defaults to the name, `CheckID` to the
 *   check name, a check without status is `critical`, a check naming an
 *   unknown service is refused) and `PUT /v1/catalog/deregister` (a check, a
 *   service with its checks, or a whole node with everything on it);
 * - `GET /v1/catalog/services` (name → union of tags),
 *   `GET /v1/catalog/service/:name` and `GET /v1/health/service/:name` (with
 *   `?passing` and repeated `?tag=`), `dc` (another datacenter has no path);
 * - blocking queries: every write is one raft index; tables and each
 *   service carry the index of their last change (a node or node-check
 *   change touches every service on the node; removing a service's last
 *   instance records an "extinction" index), `X-Consul-Index` answers that,
 *   never 0 (Consul answers 1 instead, to spare clients a busy loop);
 *   `?index=N&wait=D` holds the request until the answer's index passes N or
 *   D (default 5 min, at most 10 min, plus up to D/16 of jitter) elapses;
 *   `index=0` never blocks; writes that change nothing wake nothing;
 * - ACLs when `aclTokens` is set: the token comes from `X-Consul-Token`,
 *   `Authorization: Bearer` or `?token=`; an unknown token is 403 `ACL not
 *   found`; without one (the anonymous token, default-deny) reads are
 *   filtered to nothing with `X-Consul-Results-Filtered-By-ACLs: true` and
 *   writes are 403 `Permission denied`;
 * - errors as Consul sends them: plain text, 400 for a bad request, 500 for
 *   what the servers refuse, 403 for ACLs, 405 for a wrong method.
 *
 * Known simplifications: one datacenter; no `filter`, `near`, `node-meta`,
 * `peer` or non-default `ns` (refused with 400, so a client relying on them
 * finds out); no agent endpoints, KV, sessions or Connect; ACL tokens are
 * all-or-nothing; consistency modes are accepted and ignored.
 *
 * Test controls: `register()`/`deregister()` (the HTTP bodies, in process),
 * `snapshot()`/`restore()` (a raft snapshot restore: the index goes
 * backwards and blocked queries are released, as Consul does),
 * `setAvailable(false)` (500 `No cluster leader`), `injectFault()` (answer a
 * path with a chosen status, body or index) and `clearFaults()`, `requests()`,
 * `blockedQueries()`.
 */

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeConsulOptions {
  /** Default `dc1`. */
  datacenter?: string;
  /** Name of the agent's own node. Default `consul-server-1`. */
  nodeName?: string;
  host?: string;
  /** Listen here (a restart reuses the port of the previous instance). Default 0. */
  port?: number;
  /** Enables ACLs: these tokens may read and write everything; anything else is refused or filtered. */
  aclTokens?: string[];
  /** Register the `consul` service on the agent's node, as a server agent does. Default true. */
  registerSelf?: boolean;
  /** The agent's longest blocking wait. Default 10 min, as Consul. */
  maxWaitMs?: number;
}

/** One request the fake answered. */
export interface ConsulRecordedRequest {
  method: string;
  /** Path without the query, e.g. `/v1/health/service/web`. */
  path: string;
  query: URLSearchParams;
  status: number;
  /** The `X-Consul-Index` answered, if any. */
  index?: string;
  /** The request waited for a change (index > 0). */
  blocking: boolean;
}

/** A canned answer for GET requests whose path matches. */
export interface ConsulFault {
  /** A path prefix (`/v1/health/service/web`) or a pattern. */
  path: string | RegExp;
  status?: number;
  /** Raw body. Default: the real answer's body. */
  body?: string;
  contentType?: string;
  /** `X-Consul-Index` to send; null omits the header. Default: the real index. */
  index?: string | null;
  /** How many requests it answers. Default 1; Infinity for all. */
  times?: number;
}

/** An opaque copy of the catalog, for `restore()`. */
export interface ConsulSnapshot {
  readonly state: string;
}

interface NodeRecord {
  ID: string;
  Node: string;
  Address: string;
  Datacenter: string;
  TaggedAddresses: Record<string, string> | null;
  Meta: Record<string, string> | null;
  CreateIndex: number;
  ModifyIndex: number;
}

interface ServiceRecord {
  Kind?: string;
  ID: string;
  Service: string;
  Tags: string[];
  Address: string;
  TaggedAddresses: Record<string, { address: string; port: number }> | null;
  Meta: Record<string, string> | null;
  Port: number;
  Weights: { Passing: number; Warning: number };
  EnableTagOverride: boolean;
  Proxy?: unknown;
  Connect?: unknown;
  Namespace?: string;
  CreateIndex: number;
  ModifyIndex: number;
}

type CheckStatus = 'passing' | 'warning' | 'critical';

interface CheckRecord {
  Node: string;
  CheckID: string;
  Name: string;
  Status: CheckStatus;
  Notes: string;
  Output: string;
  ServiceID: string;
  ServiceName: string;
  ServiceTags: string[];
  Type: string;
  Definition: Record<string, unknown>;
  Namespace?: string;
  CreateIndex: number;
  ModifyIndex: number;
}

interface State {
  raftIndex: number;
  nodes: Record<string, NodeRecord>;
  /** Node → service ID → service. */
  services: Record<string, Record<string, ServiceRecord>>;
  /** Node → check ID → check. */
  checks: Record<string, Record<string, CheckRecord>>;
  tableIndex: { nodes: number; services: number; checks: number };
  /** Service name → index of its last change. */
  serviceIndex: Record<string, number>;
  lastExtinction: number;
}

interface Waiter {
  path: string;
  /** Answers if the index passed the request's (or `force`); false while it has not. */
  poll: (force: boolean) => boolean;
  timer: NodeJS.Timeout;
}

type Json = Record<string, unknown>;

/** An error Consul answers in plain text. */
class ConsulHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const MAX_BODY = 512 * 1024;
const DEFAULT_WAIT_MS = 5 * 60_000;
const UNSUPPORTED_PARAMS = ['filter', 'near', 'node-meta', 'peer'];

function isObj(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function emptyState(): State {
  return {
    raftIndex: 0,
    nodes: {},
    services: {},
    checks: {},
    tableIndex: { nodes: 0, services: 0, checks: 0 },
    serviceIndex: {},
    lastExtinction: 0,
  };
}

/** Go's time.ParseDuration for the units Consul's `wait` takes; undefined when malformed. */
function parseGoDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const unit: Record<string, number> = {
    ns: 1e-6,
    us: 1e-3,
    µs: 1e-3,
    ms: 1,
    s: 1000,
    m: 60_000,
    h: 3_600_000,
  };
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    total += Number(m[1]) * (unit[m[2] ?? ''] ?? NaN);
    matched = re.lastIndex;
  }
  return matched === text.length && text.length > 0 && Number.isFinite(total) ? total : undefined;
}

function stringMap(value: unknown, field: string): Record<string, string> | null {
  if (value === undefined || value === null) return null;
  if (!isObj(value)) throw new ConsulHttpError(400, `Request decode failed: ${field} must be an object`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string')
      throw new ConsulHttpError(400, `Request decode failed: ${field}.${k} must be a string`);
    out[k] = v;
  }
  return Object.keys(out).length === 0 ? null : out;
}

function optString(value: unknown, field: string): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string')
    throw new ConsulHttpError(400, `Request decode failed: ${field} must be a string`);
  return value;
}

function optInt(value: unknown, field: string): number {
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new ConsulHttpError(400, `Request decode failed: ${field} must be an integer`);
  }
  return value;
}

function matches(pattern: string | RegExp, path: string): boolean {
  return typeof pattern === 'string' ? path.startsWith(pattern) : pattern.test(path);
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class FakeConsul {
  private state: State = emptyState();
  private readonly server: http.Server;
  private readonly waiters = new Set<Waiter>();
  private readonly faults: Array<ConsulFault & { left: number }> = [];
  private readonly recorded: ConsulRecordedRequest[] = [];
  private readonly aclTokens: Set<string> | undefined;
  private readonly maxWaitMs: number;
  private available = true;
  private closed = false;
  private portNumber = 0;

  readonly datacenter: string;
  readonly nodeName: string;

  private constructor(private readonly options: FakeConsulOptions) {
    this.datacenter = options.datacenter ?? 'dc1';
    this.nodeName = options.nodeName ?? 'consul-server-1';
    this.aclTokens = options.aclTokens === undefined ? undefined : new Set(options.aclTokens);
    this.maxWaitMs = options.maxWaitMs ?? 10 * 60_000;
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 60_000;
  }

  static async start(options: FakeConsulOptions = {}): Promise<FakeConsul> {
    const fake = new FakeConsul(options);
    await new Promise<void>((resolve, reject) => {
      fake.server.once('error', reject);
      fake.server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
        fake.server.off('error', reject);
        resolve();
      });
    });
    fake.portNumber = (fake.server.address() as AddressInfo).port;
    if (options.registerSelf ?? true) {
      fake.register({
        Node: fake.nodeName,
        Address: '127.0.0.1',
        Service: { ID: 'consul', Service: 'consul', Port: 8300 },
        Check: { CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing' },
      });
    }
    return fake;
  }

  get port(): number {
    return this.portNumber;
  }

  /** `http://host:port`, without `/v1`. */
  get url(): string {
    return `http://${this.options.host ?? '127.0.0.1'}:${this.portNumber}`;
  }

  /** The current raft index. */
  index(): number {
    return this.state.raftIndex;
  }

  // ---- test controls ----------------------------------------------------

  /** `PUT /v1/catalog/register` in process (no ACL check). */
  register(body: Json): void {
    this.applyRegister(body);
  }

  /** `PUT /v1/catalog/deregister` in process (no ACL check). */
  deregister(body: Json): void {
    this.applyDeregister(body);
  }

  /** Shortcut: sets one check's status (and output) on a node, as the agent's check runner would. */
  setCheckStatus(node: string, checkId: string, status: CheckStatus, output = ''): void {
    const check = this.state.checks[node]?.[checkId];
    if (!check) throw new Error(`no check ${checkId} on node ${node}`);
    this.register({
      Node: node,
      SkipNodeUpdate: true,
      Check: {
        CheckID: checkId,
        Name: check.Name,
        ServiceID: check.ServiceID,
        Status: status,
        Output: output,
        Notes: check.Notes,
      },
    });
  }

  snapshot(): ConsulSnapshot {
    return { state: JSON.stringify(this.state) };
  }

  /**
   * Replaces the catalog with a snapshot's, index included (it goes
   * backwards), and releases every blocked query with the restored data,
   * as Consul's servers do after `consul snapshot restore`.
   */
  restore(snapshot: ConsulSnapshot): void {
    this.state = JSON.parse(snapshot.state) as State;
    this.wakeAll(true);
  }

  /** While false, every API request answers 500 `No cluster leader` (blocked ones at once). */
  setAvailable(available: boolean): void {
    this.available = available;
    if (!available) this.wakeAll(true);
  }

  injectFault(fault: ConsulFault): void {
    this.faults.push({ ...fault, left: fault.times ?? 1 });
    // A blocked query on that path answers the fault now rather than after its wait.
    this.wakeAll(true, (path) => matches(fault.path, path));
  }

  /** Drops every fault not yet used up. */
  clearFaults(): void {
    this.faults.length = 0;
  }

  requests(): ConsulRecordedRequest[] {
    return [...this.recorded];
  }

  /** Blocking queries currently held open. */
  blockedQueries(): number {
    return this.waiters.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const waiter of this.waiters) clearTimeout(waiter.timer);
    this.waiters.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- HTTP ---------------------------------------------------------------

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const record = (status: number, index: string | undefined, blocking: boolean): void => {
      this.recorded.push({
        method,
        path: url.pathname,
        query: url.searchParams,
        status,
        ...(index === undefined ? {} : { index }),
        blocking,
      });
    };
    const fail = (err: unknown): void => {
      const status = err instanceof ConsulHttpError ? err.status : 500;
      const message = err instanceof Error ? err.message : String(err);
      record(status, undefined, false);
      this.sendText(res, status, message);
    };
    void this.route(req, res, url, method, record).catch(fail);
  }

  private async route(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    method: string,
    record: (status: number, index: string | undefined, blocking: boolean) => void,
  ): Promise<void> {
    const path = url.pathname;
    const token = this.tokenOf(req, url);
    const write = path === '/v1/catalog/register' || path === '/v1/catalog/deregister';
    if (write) {
      if (method !== 'PUT') throw new ConsulHttpError(405, `method ${method} not allowed`);
      const body = await this.readJson(req);
      if (!this.available) throw new ConsulHttpError(500, 'No cluster leader');
      this.checkWrite(token);
      this.checkDatacenter(url, body.Datacenter);
      if (path === '/v1/catalog/register') this.applyRegister(body);
      else this.applyDeregister(body);
      record(200, undefined, false);
      this.sendJson(res, 200, true, undefined, false);
      return;
    }
    const read = this.readerFor(path);
    if (!read) throw new ConsulHttpError(404, '404 page not found');
    if (method !== 'GET' && method !== 'HEAD') throw new ConsulHttpError(405, `method ${method} not allowed`);
    for (const param of UNSUPPORTED_PARAMS) {
      if (url.searchParams.has(param))
        throw new ConsulHttpError(400, `the fake Consul does not implement ?${param}`);
    }
    const ns = url.searchParams.get('ns');
    if (ns !== null && ns !== '' && ns !== 'default') {
      throw new ConsulHttpError(400, 'Namespaces are a Consul Enterprise feature');
    }
    this.checkDatacenter(url, undefined);
    const filtered = this.readFiltered(token);
    const indexText = url.searchParams.get('index');
    let minIndex = 0;
    if (indexText !== null && indexText !== '') {
      if (!/^\d+$/.test(indexText)) throw new ConsulHttpError(400, 'Invalid index');
      minIndex = Number(indexText);
    }
    let waitMs = DEFAULT_WAIT_MS;
    const waitText = url.searchParams.get('wait');
    if (waitText !== null && waitText !== '') {
      const parsed = parseGoDuration(waitText);
      if (parsed === undefined) throw new ConsulHttpError(400, 'Invalid wait time');
      waitMs = parsed;
    }
    waitMs = Math.min(waitMs, this.maxWaitMs);
    // Consul adds up to wait/16 so that many clients do not wake together.
    waitMs += Math.random() * (waitMs / 16);

    const answer = (force: boolean): boolean => {
      if (res.destroyed) return true;
      const fault = this.takeFault(path);
      if (!this.available) {
        record(500, undefined, minIndex > 0);
        this.sendText(res, 500, 'No cluster leader');
        return true;
      }
      const { index, body } = read(url.searchParams, filtered);
      if (!fault && !force && index <= minIndex) return false;
      const indexHeader = fault && fault.index !== undefined ? fault.index : String(Math.max(1, index));
      const status = fault?.status ?? 200;
      record(status, indexHeader ?? undefined, minIndex > 0);
      if (fault?.body !== undefined) {
        res.writeHead(status, {
          'content-type': fault.contentType ?? 'application/json',
          ...(indexHeader === null ? {} : { 'x-consul-index': indexHeader }),
        });
        res.end(method === 'HEAD' ? undefined : fault.body);
        return true;
      }
      if (status >= 400) {
        this.sendText(res, status, fault?.body ?? http.STATUS_CODES[status] ?? 'error');
        return true;
      }
      this.sendJson(res, status, body, indexHeader ?? undefined, filtered, method === 'HEAD');
      return true;
    };

    // index=0 (or none) never blocks.
    if (minIndex === 0) {
      answer(true);
      return;
    }
    if (answer(false)) return;
    const waiter: Waiter = {
      path,
      poll: (force) => answer(force),
      timer: setTimeout(() => {
        this.waiters.delete(waiter);
        try {
          answer(true);
        } catch {
          res.destroy();
        }
      }, waitMs),
    };
    this.waiters.add(waiter);
    res.on('close', () => {
      clearTimeout(waiter.timer);
      this.waiters.delete(waiter);
    });
  }

  private readerFor(
    path: string,
  ): ((query: URLSearchParams, filtered: boolean) => { index: number; body: unknown }) | undefined {
    if (path === '/v1/catalog/services') return (_q, filtered) => this.readServices(filtered);
    const health = /^\/v1\/health\/service\/([^/]+)$/.exec(path);
    if (health?.[1]) {
      const name = decodeURIComponent(health[1]);
      return (q, filtered) => this.readHealth(name, q, filtered);
    }
    const catalog = /^\/v1\/catalog\/service\/([^/]+)$/.exec(path);
    if (catalog?.[1]) {
      const name = decodeURIComponent(catalog[1]);
      return (q, filtered) => this.readCatalogService(name, q, filtered);
    }
    return undefined;
  }

  private tokenOf(req: IncomingMessage, url: URL): string | undefined {
    const header = req.headers['x-consul-token'];
    if (typeof header === 'string' && header !== '') return header;
    const auth = req.headers.authorization;
    if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7).trim();
    const query = url.searchParams.get('token');
    return query === null || query === '' ? undefined : query;
  }

  private checkWrite(token: string | undefined): void {
    if (!this.aclTokens) return;
    if (token === undefined)
      throw new ConsulHttpError(403, 'Permission denied: anonymous token lacks permission');
    if (!this.aclTokens.has(token)) throw new ConsulHttpError(403, 'ACL not found');
  }

  /** True when the caller may read nothing (the anonymous token under default deny). */
  private readFiltered(token: string | undefined): boolean {
    if (!this.aclTokens) return false;
    if (token === undefined) return true;
    if (!this.aclTokens.has(token)) throw new ConsulHttpError(403, 'ACL not found');
    return false;
  }

  private checkDatacenter(url: URL, bodyDc: unknown): void {
    const dc = url.searchParams.get('dc') ?? (typeof bodyDc === 'string' ? bodyDc : '');
    if (dc !== '' && dc !== this.datacenter) throw new ConsulHttpError(500, 'No path to datacenter');
  }

  private takeFault(path: string): ConsulFault | undefined {
    const i = this.faults.findIndex((f) => matches(f.path, path));
    const fault = this.faults[i];
    if (!fault) return undefined;
    fault.left--;
    if (fault.left <= 0) this.faults.splice(i, 1);
    return fault;
  }

  private async readJson(req: IncomingMessage): Promise<Json> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      const buf = chunk as Buffer;
      size += buf.length;
      if (size > MAX_BODY) throw new ConsulHttpError(413, 'Request body too large');
      chunks.push(buf);
    }
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (err) {
      throw new ConsulHttpError(400, `Request decode failed: ${(err as Error).message}`);
    }
    if (!isObj(body)) throw new ConsulHttpError(400, 'Request decode failed: body must be an object');
    return body;
  }

  private sendText(res: ServerResponse, status: number, text: string): void {
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(text);
  }

  private sendJson(
    res: ServerResponse,
    status: number,
    body: unknown,
    index: string | undefined,
    filtered: boolean,
    head = false,
  ): void {
    if (res.headersSent || res.destroyed) return;
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'x-consul-knownleader': 'true',
      'x-consul-lastcontact': '0',
      'x-consul-effective-consistency': 'leader',
    };
    if (index !== undefined) headers['x-consul-index'] = index;
    if (filtered) headers['x-consul-results-filtered-by-acls'] = 'true';
    res.writeHead(status, headers);
    res.end(head ? undefined : JSON.stringify(body));
  }

  private wakeAll(force: boolean, only: (path: string) => boolean = () => true): void {
    for (const waiter of [...this.waiters]) {
      if (!only(waiter.path)) continue;
      let done: boolean;
      try {
        done = waiter.poll(force);
      } catch {
        // The request was validated when it arrived; a failure now means its socket is gone.
        done = true;
      }
      if (done) {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
      }
    }
  }

  // ---- reads --------------------------------------------------------------

  private instancesOf(name: string): Array<{ node: NodeRecord; service: ServiceRecord }> {
    const out: Array<{ node: NodeRecord; service: ServiceRecord }> = [];
    for (const nodeName of Object.keys(this.state.services).sort()) {
      const node = this.state.nodes[nodeName];
      if (!node) continue;
      for (const id of Object.keys(this.state.services[nodeName] ?? {}).sort()) {
        const service = this.state.services[nodeName]?.[id];
        if (service?.Service === name) out.push({ node, service });
      }
    }
    return out;
  }

  private serviceReadIndex(name: string): number {
    const index = this.state.serviceIndex[name];
    if (index !== undefined) return index;
    return this.state.lastExtinction > 0 ? this.state.lastExtinction : this.state.tableIndex.services;
  }

  private readServices(filtered: boolean): { index: number; body: unknown } {
    const out: Record<string, string[]> = {};
    if (!filtered) {
      for (const byId of Object.values(this.state.services)) {
        for (const svc of Object.values(byId)) {
          const tags = (out[svc.Service] ??= []);
          for (const tag of svc.Tags) if (!tags.includes(tag)) tags.push(tag);
        }
      }
    }
    return { index: this.state.tableIndex.services, body: out };
  }

  private selectInstances(
    name: string,
    query: URLSearchParams,
    filtered: boolean,
  ): Array<{ node: NodeRecord; service: ServiceRecord }> {
    if (filtered) return [];
    const tags = query.getAll('tag');
    return this.instancesOf(name).filter(({ service }) => tags.every((t) => service.Tags.includes(t)));
  }

  private checksOf(node: string, serviceId: string): CheckRecord[] {
    return Object.keys(this.state.checks[node] ?? {})
      .sort()
      .map((id) => this.state.checks[node]?.[id])
      .filter((c): c is CheckRecord => c !== undefined && (c.ServiceID === '' || c.ServiceID === serviceId));
  }

  private readHealth(
    name: string,
    query: URLSearchParams,
    filtered: boolean,
  ): { index: number; body: unknown } {
    const passingParam = query.get('passing');
    let passing = false;
    if (passingParam !== null) {
      if (passingParam === '' || passingParam === 'true' || passingParam === '1') passing = true;
      else if (passingParam !== 'false' && passingParam !== '0') {
        throw new ConsulHttpError(400, 'Invalid value for ?passing');
      }
    }
    const body: Json[] = [];
    for (const { node, service } of this.selectInstances(name, query, filtered)) {
      const checks = this.checksOf(node.Node, service.ID);
      if (passing && checks.some((c) => c.Status !== 'passing')) continue;
      const { Kind, ...rest } = service;
      body.push({
        Node: { ...node },
        Service: { ...(Kind ? { Kind } : {}), ...rest, Tags: [...service.Tags] },
        Checks: checks.map((c) => ({ ...c, ServiceTags: [...c.ServiceTags] })),
      });
    }
    return { index: this.serviceReadIndex(name), body };
  }

  private readCatalogService(
    name: string,
    query: URLSearchParams,
    filtered: boolean,
  ): { index: number; body: unknown } {
    const body = this.selectInstances(name, query, filtered).map(({ node, service }) => ({
      ID: node.ID,
      Node: node.Node,
      Address: node.Address,
      Datacenter: node.Datacenter,
      TaggedAddresses: node.TaggedAddresses,
      NodeMeta: node.Meta,
      ServiceKind: service.Kind ?? '',
      ServiceID: service.ID,
      ServiceName: service.Service,
      ServiceTags: [...service.Tags],
      ServiceAddress: service.Address,
      ServiceTaggedAddresses: service.TaggedAddresses,
      ServiceWeights: service.Weights,
      ServiceMeta: service.Meta,
      ServicePort: service.Port,
      ServiceEnableTagOverride: service.EnableTagOverride,
      ServiceProxy: service.Proxy ?? {},
      ServiceConnect: service.Connect ?? {},
      ...(service.Namespace === undefined ? {} : { Namespace: service.Namespace }),
      CreateIndex: service.CreateIndex,
      ModifyIndex: service.ModifyIndex,
    }));
    return { index: this.serviceReadIndex(name), body };
  }

  // ---- writes -------------------------------------------------------------

  /** One raft log entry: the index every record it changes is stamped with. */
  private commit(apply: (index: number, touched: Set<string>) => boolean): void {
    const index = this.state.raftIndex + 1;
    const touched = new Set<string>();
    const changedTables = apply(index, touched);
    this.state.raftIndex = index;
    for (const name of touched) {
      if (this.instancesOf(name).length > 0) this.state.serviceIndex[name] = index;
      else {
        delete this.state.serviceIndex[name];
        this.state.lastExtinction = index;
      }
    }
    if (changedTables || touched.size > 0) this.wakeAll(false);
  }

  private servicesOnNode(node: string): string[] {
    return Object.values(this.state.services[node] ?? {}).map((s) => s.Service);
  }

  private applyRegister(body: Json): void {
    const nodeName = optString(body.Node, 'Node');
    if (nodeName === '') throw new ConsulHttpError(500, 'Must provide node');
    const skipNodeUpdate = body.SkipNodeUpdate === true;
    const existingNode = this.state.nodes[nodeName];
    const address = optString(body.Address, 'Address');
    if (address === '' && !(skipNodeUpdate && existingNode))
      throw new ConsulHttpError(500, 'Must provide address');
    const id = optString(body.ID, 'ID');
    if (id !== '' && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) {
      throw new ConsulHttpError(500, `Invalid node ID: "${id}" is not a UUID`);
    }
    const taggedAddresses = stringMap(body.TaggedAddresses, 'TaggedAddresses');
    const nodeMeta = stringMap(body.NodeMeta, 'NodeMeta');
    const service =
      body.Service === undefined || body.Service === null ? undefined : this.parseService(body.Service);
    const rawChecks: unknown[] = [];
    if (body.Check !== undefined && body.Check !== null) rawChecks.push(body.Check);
    if (body.Checks !== undefined && body.Checks !== null) {
      if (!Array.isArray(body.Checks))
        throw new ConsulHttpError(400, 'Request decode failed: Checks must be a list');
      rawChecks.push(...(body.Checks as unknown[]));
    }
    const checks = rawChecks.map((c) => this.parseCheck(c, nodeName));
    // Validate every check against the services the node will have before writing anything.
    const servicesAfter = new Map<string, ServiceRecord>(Object.entries(this.state.services[nodeName] ?? {}));
    if (service) servicesAfter.set(service.ID, service);
    for (const check of checks) {
      if (check.ServiceID !== '' && !servicesAfter.has(check.ServiceID)) {
        throw new ConsulHttpError(
          500,
          `Unknown service ID '${check.ServiceID}' for check ID '${check.CheckID}'`,
        );
      }
    }

    this.commit((index, touched) => {
      let changed = false;
      if (!(skipNodeUpdate && existingNode)) {
        const next: NodeRecord = {
          ID: id !== '' ? id : (existingNode?.ID ?? randomUUID()),
          Node: nodeName,
          Address: address,
          Datacenter: this.datacenter,
          TaggedAddresses: taggedAddresses,
          Meta: nodeMeta,
          CreateIndex: existingNode?.CreateIndex ?? index,
          ModifyIndex: index,
        };
        if (!existingNode || !sameJson({ ...existingNode, ModifyIndex: 0 }, { ...next, ModifyIndex: 0 })) {
          this.state.nodes[nodeName] = next;
          this.state.tableIndex.nodes = index;
          for (const name of this.servicesOnNode(nodeName)) touched.add(name);
          changed = true;
        }
      }
      if (service) {
        const byId = (this.state.services[nodeName] ??= {});
        const existing = byId[service.ID];
        const next: ServiceRecord = {
          ...service,
          CreateIndex: existing?.CreateIndex ?? index,
          ModifyIndex: index,
        };
        if (!existing || !sameJson({ ...existing, ModifyIndex: 0 }, { ...next, ModifyIndex: 0 })) {
          if (existing && existing.Service !== service.Service) touched.add(existing.Service);
          byId[service.ID] = next;
          this.state.tableIndex.services = index;
          touched.add(service.Service);
          changed = true;
          // Service checks carry the service's name and tags.
          for (const check of Object.values(this.state.checks[nodeName] ?? {})) {
            if (check.ServiceID === service.ID) {
              check.ServiceName = service.Service;
              check.ServiceTags = [...service.Tags];
            }
          }
        }
      }
      for (const check of checks) {
        const byId = (this.state.checks[nodeName] ??= {});
        const existing = byId[check.CheckID];
        const owner = check.ServiceID === '' ? undefined : servicesAfter.get(check.ServiceID);
        const next: CheckRecord = {
          ...check,
          ServiceName: owner?.Service ?? '',
          ServiceTags: owner ? [...owner.Tags] : [],
          CreateIndex: existing?.CreateIndex ?? index,
          ModifyIndex: index,
        };
        if (existing && sameJson({ ...existing, ModifyIndex: 0 }, { ...next, ModifyIndex: 0 })) continue;
        byId[check.CheckID] = next;
        this.state.tableIndex.checks = index;
        changed = true;
        if (existing && existing.ServiceID !== next.ServiceID) {
          for (const name of this.touchedByCheck(nodeName, existing)) touched.add(name);
        }
        for (const name of this.touchedByCheck(nodeName, next)) touched.add(name);
      }
      return changed;
    });
  }

  /** Services whose health answers a check affects: its service, or every service on its node. */
  private touchedByCheck(node: string, check: CheckRecord): string[] {
    if (check.ServiceID === '') return this.servicesOnNode(node);
    const svc = this.state.services[node]?.[check.ServiceID];
    return svc ? [svc.Service] : [];
  }

  private parseService(raw: unknown): ServiceRecord {
    if (!isObj(raw)) throw new ConsulHttpError(400, 'Request decode failed: Service must be an object');
    const name = optString(raw.Service, 'Service.Service');
    if (name === '') throw new ConsulHttpError(500, 'Must provide service name');
    const id = optString(raw.ID, 'Service.ID') || name;
    let tags: string[] = [];
    if (raw.Tags !== undefined && raw.Tags !== null) {
      if (!Array.isArray(raw.Tags) || raw.Tags.some((t) => typeof t !== 'string')) {
        throw new ConsulHttpError(400, 'Request decode failed: Service.Tags must be a list of strings');
      }
      tags = [...(raw.Tags as string[])];
    }
    const port = optInt(raw.Port, 'Service.Port');
    if (port < 0 || port > 65535) throw new ConsulHttpError(500, `Invalid service port ${port}`);
    let weights = { Passing: 1, Warning: 1 };
    if (raw.Weights !== undefined && raw.Weights !== null) {
      if (!isObj(raw.Weights))
        throw new ConsulHttpError(400, 'Request decode failed: Service.Weights must be an object');
      weights = {
        Passing: optInt(raw.Weights.Passing, 'Service.Weights.Passing'),
        Warning: optInt(raw.Weights.Warning, 'Service.Weights.Warning'),
      };
      if (weights.Passing < 1) throw new ConsulHttpError(500, 'Passing must be greater than 0');
    }
    let taggedAddresses: ServiceRecord['TaggedAddresses'] = null;
    if (raw.TaggedAddresses !== undefined && raw.TaggedAddresses !== null) {
      if (!isObj(raw.TaggedAddresses)) {
        throw new ConsulHttpError(400, 'Request decode failed: Service.TaggedAddresses must be an object');
      }
      taggedAddresses = {};
      for (const [k, v] of Object.entries(raw.TaggedAddresses)) {
        if (!isObj(v)) throw new ConsulHttpError(400, `Request decode failed: Service.TaggedAddresses.${k}`);
        taggedAddresses[k] = {
          address: optString(v.address ?? v.Address, `Service.TaggedAddresses.${k}.address`),
          port: optInt(v.port ?? v.Port, `Service.TaggedAddresses.${k}.port`),
        };
      }
    }
    const kind = optString(raw.Kind, 'Service.Kind');
    return {
      ...(kind === '' ? {} : { Kind: kind }),
      ID: id,
      Service: name,
      Tags: tags,
      Address: optString(raw.Address, 'Service.Address'),
      TaggedAddresses: taggedAddresses,
      Meta: stringMap(raw.Meta, 'Service.Meta'),
      Port: port,
      Weights: weights,
      EnableTagOverride: raw.EnableTagOverride === true,
      ...(raw.Proxy === undefined ? {} : { Proxy: raw.Proxy }),
      ...(raw.Connect === undefined ? {} : { Connect: raw.Connect }),
      ...(typeof raw.Namespace === 'string' && raw.Namespace !== '' ? { Namespace: raw.Namespace } : {}),
      CreateIndex: 0,
      ModifyIndex: 0,
    };
  }

  private parseCheck(raw: unknown, nodeName: string): CheckRecord {
    if (!isObj(raw)) throw new ConsulHttpError(400, 'Request decode failed: Check must be an object');
    const node = optString(raw.Node, 'Check.Node') || nodeName;
    if (node !== nodeName)
      throw new ConsulHttpError(500, `Node '${node}' of the check does not match '${nodeName}'`);
    const name = optString(raw.Name, 'Check.Name');
    const checkId = optString(raw.CheckID, 'Check.CheckID') || name;
    if (checkId === '') throw new ConsulHttpError(500, 'Missing check ID');
    const status = optString(raw.Status, 'Check.Status') || 'critical';
    if (status !== 'passing' && status !== 'warning' && status !== 'critical') {
      throw new ConsulHttpError(500, `Invalid check status: "${status}"`);
    }
    const definition = raw.Definition;
    if (definition !== undefined && definition !== null && !isObj(definition)) {
      throw new ConsulHttpError(400, 'Request decode failed: Check.Definition must be an object');
    }
    return {
      Node: nodeName,
      CheckID: checkId,
      Name: name,
      Status: status,
      Notes: optString(raw.Notes, 'Check.Notes'),
      Output: optString(raw.Output, 'Check.Output'),
      ServiceID: optString(raw.ServiceID, 'Check.ServiceID'),
      ServiceName: '',
      ServiceTags: [],
      Type: optString(raw.Type, 'Check.Type'),
      Definition: isObj(definition) ? definition : {},
      CreateIndex: 0,
      ModifyIndex: 0,
    };
  }

  private applyDeregister(body: Json): void {
    const nodeName = optString(body.Node, 'Node');
    if (nodeName === '') throw new ConsulHttpError(500, 'Must provide node');
    const serviceId = optString(body.ServiceID, 'ServiceID');
    const checkId = optString(body.CheckID, 'CheckID');
    this.commit((index, touched) => {
      let changed = false;
      if (serviceId !== '' || checkId !== '') {
        if (serviceId !== '') {
          const svc = this.state.services[nodeName]?.[serviceId];
          if (svc) {
            delete this.state.services[nodeName]?.[serviceId];
            this.state.tableIndex.services = index;
            touched.add(svc.Service);
            for (const [id, check] of Object.entries(this.state.checks[nodeName] ?? {})) {
              if (check.ServiceID === serviceId) {
                delete this.state.checks[nodeName]?.[id];
                this.state.tableIndex.checks = index;
              }
            }
            changed = true;
          }
        }
        if (checkId !== '') {
          const check = this.state.checks[nodeName]?.[checkId];
          if (check) {
            for (const name of this.touchedByCheck(nodeName, check)) touched.add(name);
            delete this.state.checks[nodeName]?.[checkId];
            this.state.tableIndex.checks = index;
            changed = true;
          }
        }
        return changed;
      }
      if (!this.state.nodes[nodeName]) return false;
      for (const name of this.servicesOnNode(nodeName)) touched.add(name);
      if (Object.keys(this.state.services[nodeName] ?? {}).length > 0) this.state.tableIndex.services = index;
      if (Object.keys(this.state.checks[nodeName] ?? {}).length > 0) this.state.tableIndex.checks = index;
      delete this.state.nodes[nodeName];
      delete this.state.services[nodeName];
      delete this.state.checks[nodeName];
      this.state.tableIndex.nodes = index;
      return true;
    });
  }
}
