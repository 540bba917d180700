/** Upstream pool settings for client tests: plaintext to 127.0.0.1:`port`, generous limits. */

import type { PoolSettings } from '../../proxy/upstream/upstream-pool-types.js';

export function poolSettings(port: number, extra: Partial<PoolSettings> = {}): PoolSettings {
  return {
    address: '127.0.0.1',
    port,
    tls: false,
    sni: '',
    alpn: [],
    identities: [],
    connectTimeoutMs: 2000,
    h2: false,
    maxRequestsPerConnection: 0,
    idleTimeoutMs: 10_000,
    maxConnections: 100,
    ...extra,
  };
}
