/**
 * Options of the Consul discovery source, checked up front: they arrive
 * from flags, environment or a config file as loosely typed values, and a
 * mistake must fail the zone's start with the option's name, not surface
 * later as an odd view.
 */

import { readFileSync } from 'node:fs';

import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { parseDuration } from '../../core/resource/duration.js';
import { isDns1123Label } from '../../core/resource/dns-name.js';
import { META_NAMESPACE } from './discovery-consul-map.js';

export interface ConsulSourceOptions {
  /**
   * Consul's HTTP API: `http://host:port`, `https://host:port`, or
   * `host:port` (https when `CONSUL_HTTP_SSL=true`). Default:
   * `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`.
   */
  address?: string;
  /** ACL token (sent as `X-Consul-Token`). Default: `CONSUL_HTTP_TOKEN_FILE`'s content, else `CONSUL_HTTP_TOKEN`. */
  token?: string;
  /** A file holding the token (read at start; wins over `token`). */
  tokenFile?: string;
  /** PEM (or a file holding it) of the CA of an https Consul. Default: `CONSUL_CACERT`, else the system's CAs. */
  caPem?: string;
  caFile?: string;
  /** Datacenter to import. Default: the agent's. */
  datacenter?: string;
  /** Import only instances carrying every one of these tags (a list or comma-separated). */
  tagFilter?: readonly string[] | string;
  /** Where an instance's namespace comes from. */
  namespaceMapping?: {
    /** Namespace of instances that name none. Default `default`. */
    default?: string;
    /** Service meta key (or `key=value` tag) naming it. Default `meshfed-namespace`; '' disables. */
    key?: string;
  };
  /** Instances whose worst check is `warning` get traffic. Default true, as Consul's DNS. */
  warningHealthy?: boolean;
  /** Consul services never imported. Default `['consul']` (the servers themselves). */
  excludeServices?: readonly string[] | string;
  /** Longest blocking wait per query (Consul duration, at most 10m). Default `5m`. */
  pollWait?: string;
  /** Let any Consul server answer reads (`?stale`): scales reads, may lag the leader slightly. Default false. */
  stale?: boolean;
  logger?: Logger;
  /** Gather changes this long before notifying. Default 10 ms. */
  debounceMs?: number;
  /** `start()` fails with UNAVAILABLE if the first full view is not loaded by then. Default 30 s. */
  startTimeoutMs?: number;
  /** First retry delay after a failed read; doubles up to `retryMaxMs`. Default 250 ms. */
  retryInitialMs?: number;
  /** Default 30 s. */
  retryMaxMs?: number;
  /** Least time between two reads of one query, so a flapping index cannot make a busy loop. Default 50 ms. */
  minIntervalMs?: number;
  /** Added to the wait for a request's timeout. Default 15 s. */
  requestTimeoutMs?: number;
  /** Set by the zone CP for every source; the Consul source does not use it. */
  zone?: string;
  /** Set by the zone CP for every source; the Consul source does not use it. */
  store?: unknown;
}

/** The options, checked and defaulted. */
export interface ConsulSettings {
  address: URL;
  token: string | undefined;
  caPem: string | undefined;
  datacenter: string | undefined;
  tagFilter: string[];
  defaultNamespace: string;
  namespaceKey: string;
  warningHealthy: boolean;
  excludeServices: Set<string>;
  waitMs: number;
  stale: boolean;
  debounceMs: number;
  startTimeoutMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
  minIntervalMs: number;
  requestTimeoutMs: number;
}

const MAX_WAIT_MS = 10 * 60_000;

function invalid(field: string, message: string): MeshError {
  return new MeshError(ErrorCodes.CONFIG, `consul discovery: ${field} ${message}`, { field });
}

function optString(options: Record<string, unknown>, field: string): string | undefined {
  const value = options[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  return value;
}

function optBool(options: Record<string, unknown>, field: string, fallback: boolean): boolean {
  const value = options[field];
  if (value === undefined || value === null) return fallback;
  if (typeof value === 'boolean') return value;
  if (value === 'true' || value === 'false') return value === 'true';
  throw invalid(field, 'must be true or false');
}

function optMs(options: Record<string, unknown>, field: string, fallback: number): number {
  const value = options[field];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw invalid(field, 'must be a number of milliseconds ≥ 0');
  }
  return value;
}

function stringList(options: Record<string, unknown>, field: string, fallback: string[]): string[] {
  const value = options[field];
  if (value === undefined || value === null) return fallback;
  const list = typeof value === 'string' ? value.split(',') : value;
  if (!Array.isArray(list) || list.some((v) => typeof v !== 'string')) {
    throw invalid(field, 'must be a list of strings or a comma-separated string');
  }
  return (list as string[]).map((s) => s.trim()).filter((s) => s !== '');
}

function readFile(path: string, field: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `consul discovery: cannot read ${field} ${path}: ${(err as Error).message}`,
      {
        field,
        cause: err,
      },
    );
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** `host:port` (as CONSUL_HTTP_ADDR may be) or a URL → a URL with scheme http(s). */
function parseAddress(text: string, ssl: boolean): URL {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `${ssl ? 'https' : 'http'}://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw invalid('address', `"${text}" is not a URL (http://host:8500)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw invalid('address', `"${text}" must use http or https (a unix socket is not supported)`);
  }
  if (url.pathname !== '/' && url.pathname !== '') {
    throw invalid('address', `"${text}" must not have a path: the API is always under /v1`);
  }
  return url;
}

/**
 * Checks and defaults the options.
 * @throws MeshError CONFIG naming the option.
 */
export function resolveConsulSettings(
  input: ConsulSourceOptions | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ConsulSettings {
  if (input !== undefined && (typeof input !== 'object' || input === null)) {
    throw new MeshError(ErrorCodes.CONFIG, 'consul discovery: options must be an object');
  }
  const options = (input ?? {}) as Record<string, unknown>;
  // Consul's own environment variables, as its CLI and SDKs read them.
  const address = parseAddress(
    optString(options, 'address') ?? nonEmpty(env.CONSUL_HTTP_ADDR) ?? '127.0.0.1:8500',
    env.CONSUL_HTTP_SSL === 'true' || env.CONSUL_HTTP_SSL === '1',
  );
  const explicitToken = optString(options, 'token');
  const tokenFile =
    optString(options, 'tokenFile') ??
    (explicitToken === undefined ? nonEmpty(env.CONSUL_HTTP_TOKEN_FILE) : undefined);
  let token = tokenFile !== undefined ? readFile(tokenFile, 'tokenFile').trim() : explicitToken;
  token ??= env.CONSUL_HTTP_TOKEN;
  if (token === '') token = undefined;
  const caFile =
    optString(options, 'caFile') ??
    (optString(options, 'caPem') === undefined && address.protocol === 'https:'
      ? nonEmpty(env.CONSUL_CACERT)
      : undefined);
  const caPem = caFile !== undefined ? readFile(caFile, 'caFile') : optString(options, 'caPem');
  if (caPem !== undefined && address.protocol !== 'https:')
    throw invalid('caPem', 'is only used with an https address');
  const datacenter = optString(options, 'datacenter');
  if (datacenter === '') throw invalid('datacenter', 'must not be empty');

  const mapping = options.namespaceMapping;
  if (mapping !== undefined && (typeof mapping !== 'object' || mapping === null || Array.isArray(mapping))) {
    throw invalid('namespaceMapping', 'must be an object { default, key }');
  }
  const mappingObj = (mapping ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(mappingObj)) {
    if (key !== 'default' && key !== 'key')
      throw invalid(`namespaceMapping.${key}`, 'is not an option (default, key)');
  }
  const defaultNamespace = optString(mappingObj, 'default') ?? 'default';
  if (!isDns1123Label(defaultNamespace))
    throw invalid('namespaceMapping.default', `"${defaultNamespace}" is not a DNS-1123 label`);
  const namespaceKey = optString(mappingObj, 'key') ?? META_NAMESPACE;
  if (namespaceKey.includes('=')) throw invalid('namespaceMapping.key', 'must not contain "="');

  const waitText = optString(options, 'pollWait') ?? '5m';
  let waitMs: number;
  try {
    waitMs = parseDuration(waitText);
  } catch {
    throw invalid('pollWait', `"${waitText}" is not a duration (5m, 30s)`);
  }
  if (waitMs < 1000 || waitMs > MAX_WAIT_MS)
    throw invalid('pollWait', `"${waitText}" must be between 1s and 10m (Consul's limit)`);

  return {
    address,
    token,
    caPem,
    datacenter,
    tagFilter: stringList(options, 'tagFilter', []),
    defaultNamespace,
    namespaceKey,
    warningHealthy: optBool(options, 'warningHealthy', true),
    excludeServices: new Set(stringList(options, 'excludeServices', ['consul'])),
    waitMs,
    stale: optBool(options, 'stale', false),
    debounceMs: optMs(options, 'debounceMs', 10),
    startTimeoutMs: optMs(options, 'startTimeoutMs', 30_000),
    retryInitialMs: Math.max(1, optMs(options, 'retryInitialMs', 250)),
    retryMaxMs: optMs(options, 'retryMaxMs', 30_000),
    minIntervalMs: optMs(options, 'minIntervalMs', 50),
    requestTimeoutMs: optMs(options, 'requestTimeoutMs', 15_000),
  };
}
