/**
 * The two Consul reads the Consul discovery source makes, as blocking
 * queries through the `consul` npm client: `GET /v1/catalog/services` and
 * `GET /v1/health/service/:name`, each with `index`/`wait`, an overall
 * timeout, and cancellation (the client aborts the request when its
 * context emits `cancel`). The client returns the raw response when the
 * context asks for it, which is how the `X-Consul-Index` header is read.
 *
 * The client's own `Watch` is not used: it treats an index of 0 as fatal
 * and gives no control over how an index going backwards is handled; the
 * source implements Consul's documented rules itself.
 */

import { EventEmitter } from 'node:events';
import https from 'node:https';
import http from 'node:http';
import { types } from 'node:util';

import Consul from 'consul';

/** What one read answered. */
export interface ConsulAnswer {
  /** `X-Consul-Index`; undefined when the header is missing or not a number. */
  index: bigint | undefined;
  /** The decoded JSON body (unknown shape: the caller checks it). */
  body: unknown;
  /** `X-Consul-Results-Filtered-By-ACLs: true`: the token may not read everything. */
  filteredByAcls: boolean;
}

export interface ConsulReadOptions {
  /** 0 for an immediate read; otherwise wait for a change after this index. */
  index: bigint;
  /** Consul's `wait`, in milliseconds (sent as whole seconds, at least 1 s). */
  waitMs: number;
  /** Give up on the request after this long. */
  timeoutMs: number;
  call: ConsulCall;
}

export interface ConsulHttpClientOptions {
  /** `http://host:port` or `https://host:port`. */
  address: URL;
  token?: string;
  datacenter?: string;
  /** Let any server answer (Consul's `stale` consistency mode). */
  stale?: boolean;
  /** PEM of the CA that signed an https Consul's certificate (default: the system's). */
  caPem?: string;
}

/**
 * The context of one request: the `consul` client aborts the request when
 * it emits `cancel`, and returns `[response, body]` because of
 * `includeResponse`.
 */
export class ConsulCall extends EventEmitter {
  readonly includeResponse = true;
  canceled = false;

  cancel(): void {
    if (this.canceled) return;
    this.canceled = true;
    this.emit('cancel');
  }
}

/** The subset of the `consul` client's options object that the source sends. */
interface ReadOptions {
  service?: string;
  index?: string;
  wait?: string;
  timeout: number;
  ctx: ConsulCall;
}

type ReadFn = (options: ReadOptions) => Promise<unknown>;

interface RawResponse {
  headers: Record<string, string | string[] | undefined>;
}

function isRawResponse(value: unknown): value is RawResponse {
  return typeof value === 'object' && value !== null && typeof (value as RawResponse).headers === 'object';
}

function header(res: RawResponse, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export class ConsulHttpClient {
  private readonly consul: Consul;
  private readonly agent: http.Agent;

  constructor(options: ConsulHttpClientOptions) {
    const secure = options.address.protocol === 'https:';
    // Every watched service holds one long poll open: no socket limit, keep-alive between polls.
    this.agent = secure
      ? new https.Agent({ keepAlive: true, ...(options.caPem === undefined ? {} : { ca: options.caPem }) })
      : new http.Agent({ keepAlive: true });
    const port = options.address.port === '' ? (secure ? 443 : 80) : Number(options.address.port);
    this.consul = new Consul({
      host: options.address.hostname.replace(/^\[(.*)\]$/, '$1'),
      port,
      secure,
      agent: this.agent,
      defaults: {
        ...(options.token === undefined ? {} : { token: options.token }),
        ...(options.datacenter === undefined ? {} : { dc: options.datacenter }),
        ...(options.stale ? { stale: true } : {}),
      },
    });
  }

  /** `GET /v1/catalog/services`: service name → union of its instances' tags. */
  services(read: ConsulReadOptions): Promise<ConsulAnswer> {
    // The client's typings omit the blocking-query options it forwards (index, wait, timeout, ctx).
    const list = this.consul.catalog.service.list.bind(this.consul.catalog.service) as unknown as ReadFn;
    return this.answer(() => list(this.readOptions(read)));
  }

  /** `GET /v1/health/service/:name`: every instance with its node and checks. */
  healthService(name: string, read: ConsulReadOptions): Promise<ConsulAnswer> {
    const service = this.consul.health.service.bind(this.consul.health) as unknown as ReadFn;
    return this.answer(() => service({ ...this.readOptions(read), service: name }));
  }

  close(): void {
    this.consul.destroy();
    this.agent.destroy();
  }

  private readOptions(read: ConsulReadOptions): ReadOptions {
    const opts: ReadOptions = { timeout: read.timeoutMs, ctx: read.call };
    if (read.index > 0n) {
      opts.index = read.index.toString();
      opts.wait = `${Math.max(1, Math.round(read.waitMs / 1000))}s`;
    }
    return opts;
  }

  private async answer(send: () => Promise<unknown>): Promise<ConsulAnswer> {
    const result = await send();
    // The client's middleware tells errors from values with `instanceof Error`, which fails for
    // errors made in another realm (under a test runner's VM context): it then resolves them.
    if (types.isNativeError(result)) throw result;
    // With includeResponse the client resolves [response, body].
    if (!Array.isArray(result) || !isRawResponse(result[0])) {
      throw new Error('the consul client returned no response object');
    }
    const res = result[0];
    const text = header(res, 'x-consul-index');
    const index = text !== undefined && /^\d+$/.test(text) ? BigInt(text) : undefined;
    return {
      index,
      body: result[1],
      filteredByAcls: header(res, 'x-consul-results-filtered-by-acls') === 'true',
    };
  }
}
