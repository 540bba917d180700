/**
 * The sidecar's public entry: `startProxy(options)` starts the listeners
 * (outbound 15001, inbound 15006, admin 15000, Prometheus 15090; 0 picks
 * free ports, reported on the handle) and, given a zone CP, the certificate
 * and MDS wiring. The vm-agent and `meshfed proxy` start it through here.
 */

import { createLogger } from '../core/log.js';
import type { ReceivedSnapshot } from '../core/mds/mds-client.js';
import { SidecarProxy, type BoundPorts } from './proxy.js';
import type { ProxyOptions } from './proxy-options.js';
import type { ControlPlaneLink } from './proxy-runtime.js';
import type { ProxyCredentials } from './tls/tls-material.js';

export type {
  ProxyOptions,
  ProxyPorts,
  TcpListenerOption,
  ZoneCpOptions,
  ProxyLimitsOptions,
} from './proxy-options.js';
export type { ProxyCredentials } from './tls/tls-material.js';
export type { BoundPorts } from './proxy.js';
export type { AccessLogEntry, AccessLogSink } from './telemetry/access-log.js';

export interface ProxyHandle {
  /** The ports actually bound. */
  readonly ports: BoundPorts;
  readonly proxyId: string;
  /** Version of the active snapshot ('' before the first). */
  readonly version: string;
  /**
   * Validates and activates a SidecarSnapshot (parsed JSON).
   * @throws MeshError VALIDATION naming the field; the previous config stays active.
   */
  applySnapshot(json: unknown, version?: string): void;
  /**
   * Activates a snapshot as MDS delivers it; one that is not a sidecar's is refused by name.
   * @throws MeshError VALIDATION; the previous config stays active.
   */
  applyReceived(snapshot: ReceivedSnapshot): void;
  /**
   * Installs the workload certificate chain, key and trust bundle; new
   * connections use them at once.
   * @throws MeshError PKI naming what is wrong.
   */
  setCredentials(credentials: ProxyCredentials): void;
  /** True once a config and a certificate are installed and the proxy is not draining. */
  ready(): boolean;
  /** Graceful: stop accepting, let requests in flight finish (drain timeout), then stop. Idempotent. */
  close(): Promise<void>;
  /** Hard stop. Idempotent. */
  destroy(): void;
}

export async function startProxy(options: ProxyOptions): Promise<ProxyHandle> {
  const logger = options.logger ?? createLogger('proxy');
  const proxy = new SidecarProxy({ ...options, logger });
  if (options.credentials !== undefined) proxy.setCredentials(options.credentials);
  if (options.snapshot !== undefined) proxy.applySnapshot(options.snapshot, 'static');
  try {
    await proxy.listen();
  } catch (err) {
    proxy.destroy();
    throw err;
  }
  let link: ControlPlaneLink | undefined;
  if (options.zoneCp !== undefined) {
    try {
      // gRPC and protobuf cost ~15 MB of RSS: loaded only when a zone CP is used.
      const { connectControlPlane } = await import('./proxy-runtime.js');
      link = await connectControlPlane(
        proxy,
        options.zoneCp,
        logger,
        options.credentials === undefined
          ? undefined
          : { certPem: options.credentials.certChainPem, keyPem: options.credentials.keyPem },
      );
    } catch (err) {
      proxy.destroy();
      throw err;
    }
  }
  logger.info('proxy listening', { proxyId: proxy.options.proxyId, ports: proxy.ports });
  return {
    ports: proxy.ports,
    proxyId: proxy.options.proxyId,
    get version() {
      return proxy.version;
    },
    applySnapshot: (json, version) => proxy.applySnapshot(json, version),
    applyReceived: (snapshot) => proxy.applyReceived(snapshot),
    setCredentials: (credentials) => proxy.setCredentials(credentials),
    ready: () => proxy.notReadyReason() === undefined,
    async close() {
      link?.close();
      await proxy.close();
    },
    destroy() {
      link?.close();
      proxy.destroy();
    },
  };
}
