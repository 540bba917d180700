/**
 * Connection pools, one per upstream endpoint of a cluster: HTTP/1.1
 * keep-alive connections on the lean client (upstream-h1-pool: LIFO, so
 * warm connections are reused and cold ones time out) or multiplexed
 * HTTP/2 sessions on the lean HTTP/2 client (upstream-h2-pool). Pools
 * outlive snapshots: a new snapshot that keeps an endpoint keeps its warm
 * connections.
 */

import type { TlsProvider } from './upstream-connect.js';
import { H1Pool } from './upstream-h1-pool.js';
import { H2Pool } from './upstream-h2-pool.js';
import type { PoolSettings, UpstreamPool } from './upstream-pool-types.js';

export { H1Pool } from './upstream-h1-pool.js';
export { H2Pool } from './upstream-h2-pool.js';
export { poolKey, type PoolSettings, type UpstreamPool } from './upstream-pool-types.js';

export function createPool(settings: PoolSettings, provider: TlsProvider | undefined): UpstreamPool {
  return settings.h2 ? new H2Pool(settings, provider) : new H1Pool(settings, provider);
}
