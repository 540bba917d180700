/**
 * Store backends by URL scheme, in the shape of grpc-js's load-balancer
 * registry: `registerStoreType(scheme, factory)` / `createStore(url)`.
 *
 * - `memory://`                         volatile, in memory
 * - `file:///abs/dir`                   memory + append-only log in /abs/dir
 * - `redis://host:port/db?prefix=name`  Redis (`rediss://` for TLS)
 * - `kubernetes://[context]`            meshfed CRDs through the Kubernetes API
 *                                       (in-cluster config or a kubeconfig)
 */

import { ErrorCodes, MeshError } from '../errors.js';
import { FactoryRegistry } from '../factory-registry.js';
import type { Logger } from '../log.js';
import { MemoryStore } from './store-memory.js';
import type { Store } from './store.js';

/** Tuning shared by the built-in backends; each ignores what it does not use. */
export interface CreateStoreOptions {
  logger?: Logger;
  /** memory/file: events kept for watch-from-revision. */
  historySize?: number;
  /** file: compaction thresholds. */
  compactAfterRecords?: number;
  compactAfterBytes?: number;
  /** redis: change-feed length. */
  streamMaxLen?: number;
}

export type StoreFactory = (url: URL, options: CreateStoreOptions) => Promise<Store>;

/** By scheme; the URL's own errors (configError) name the URL rather than the scheme alone. */
const factories = new FactoryRegistry<StoreFactory>('store scheme', ErrorCodes.CONFIG);

function configError(url: string, why: string): MeshError {
  const schemes = factories.names();
  return new MeshError(
    ErrorCodes.CONFIG,
    `invalid store URL "${url}": ${why} (supported: ${schemes.map((s) => `${s}://`).join(', ')})`,
    { details: { url, supportedSchemes: schemes } },
  );
}

/** Registers (or replaces) the factory for `scheme` (without the `:`). */
export function registerStoreType(scheme: string, factory: StoreFactory): void {
  factories.register(scheme.toLowerCase().replace(/:$/, ''), factory);
}

/** Schemes that `createStore` accepts. */
export function supportedStoreSchemes(): string[] {
  return factories.names();
}

/** Opens the store a URL names. MeshError CONFIG for a malformed URL or unknown scheme. */
export async function createStore(url: string, options: CreateStoreOptions = {}): Promise<Store> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw configError(url, 'not a URL');
  }
  const scheme = parsed.protocol.replace(/:$/, '');
  const factory = factories.get(scheme);
  if (!factory) throw configError(url, `unknown scheme "${scheme}"`);
  return factory(parsed, options);
}

registerStoreType('memory', async (url, options) => {
  if ((url.host !== '' && url.host !== 'localhost') || (url.pathname !== '' && url.pathname !== '/')) {
    throw configError(url.href, 'memory:// takes no host or path');
  }
  return new MemoryStore({ historySize: options.historySize, logger: options.logger });
});

registerStoreType('file', async (url, options) => {
  if (url.host !== '' && url.host !== 'localhost') {
    throw configError(url.href, 'file URLs name a local absolute directory: file:///abs/dir');
  }
  const dataDir = decodeURIComponent(url.pathname).replace(/\/+$/, '');
  if (dataDir === '') throw configError(url.href, 'no directory given');
  return MemoryStore.open({
    dataDir,
    historySize: options.historySize,
    compactAfterRecords: options.compactAfterRecords,
    compactAfterBytes: options.compactAfterBytes,
    logger: options.logger,
  });
});

const redisFactory: StoreFactory = async (url, options) => {
  const dbText = url.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isSafeInteger(db) || db < 0)
    throw configError(url.href, `"${dbText}" is not a database number`);
  if (url.hostname === '') throw configError(url.href, 'no host given');
  const prefix = url.searchParams.get('prefix') ?? undefined;
  if (prefix !== undefined && (prefix === '' || /[{}]/.test(prefix))) {
    throw configError(url.href, 'prefix must be non-empty and must not contain braces');
  }
  // Loaded on first use: ioredis costs every sidecar and CLI process ~13 MiB.
  const { RedisStore } = await import('./store-redis.js');
  return RedisStore.open({
    redis: {
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port === '' ? 6379 : Number(url.port),
      db,
      ...(url.username === '' ? {} : { username: decodeURIComponent(url.username) }),
      ...(url.password === '' ? {} : { password: decodeURIComponent(url.password) }),
      ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
    },
    prefix,
    streamMaxLen: options.streamMaxLen,
    logger: options.logger,
  });
};
registerStoreType('redis', redisFactory);
registerStoreType('rediss', redisFactory);
// Loaded on first use: @kubernetes/client-node is heavy and only in-cluster control planes need it.
registerStoreType('kubernetes', async (url, options) =>
  (await import('./store-kubernetes.js')).openKubernetesStore(url, options.logger),
);
