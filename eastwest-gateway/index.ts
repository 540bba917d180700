/**
 * Public entry of the east-west gateway: `startGateway(options)` listens on
 * 15443 (TLS passthrough by SNI), serves /ready and /metrics on the admin
 * port (15021) and follows its zone CP's MDS snapshots when `mds` is given.
 * docs/gateway.md is the operator's reference.
 */

import type { Registry } from '../core/metrics.js';
import { startAdminServer } from './gateway-admin.js';
import { startGatewayMds } from './gateway-mds.js';
import {
  DEFAULT_ADMIN_PORT,
  DEFAULT_GATEWAY_PORT,
  checkPort,
  type GatewayOptions,
} from './gateway-options.js';
import { Gateway, type NotReadyReason } from './gateway.js';

export interface GatewayHandle {
  /** The listener's port (the one bound when 0 was asked). */
  readonly port: number;
  readonly host: string;
  /** The admin server's port: /ready, /healthz, /metrics, /config_dump. */
  readonly adminPort: number;
  readonly registry: Registry;
  /** Apply a GatewaySnapshot (object, JSON text or bytes); throws MeshError(VALIDATION) and keeps the old table. */
  applySnapshot(json: unknown, version?: string): void;
  /** Undefined when ready; else why not (`no-snapshot`, `draining`, `closed`). */
  notReadyReason(): NotReadyReason | undefined;
  /** Connections open now. */
  readonly activeConnections: number;
  /**
   * Graceful drain: stop accepting, report not ready, let open connections
   * finish up to the drain deadline, then close the admin server and the MDS
   * stream. Idempotent.
   */
  close(): Promise<void>;
  /** Cut everything now. Idempotent. */
  destroy(): void;
}

export async function startGateway(options: GatewayOptions = {}): Promise<GatewayHandle> {
  const port = checkPort(options.port, 'port', DEFAULT_GATEWAY_PORT);
  const adminPort = checkPort(options.adminPort, 'adminPort', DEFAULT_ADMIN_PORT);
  const host = options.host ?? '0.0.0.0';
  const gateway = new Gateway(options);
  if (options.snapshot !== undefined) gateway.applySnapshot(options.snapshot, 'static');
  const boundPort = await gateway.listen(host, port);
  let admin;
  try {
    admin = await startAdminServer(
      {
        notReadyReason: () => gateway.notReadyReason(),
        describeTable: () => gateway.describeTable(),
        registry: gateway.metrics.registry,
      },
      options.adminHost ?? '127.0.0.1',
      adminPort,
    );
  } catch (err) {
    gateway.destroy();
    throw err;
  }
  let mds;
  try {
    mds = options.mds === undefined ? undefined : startGatewayMds(options.mds, gateway, gateway.logger);
  } catch (err) {
    gateway.destroy();
    await admin.close();
    throw err;
  }
  gateway.logger.info('east-west gateway listening', { host, port: boundPort, adminPort: admin.port });
  let closing: Promise<void> | undefined;
  const adminServer = admin;
  return {
    port: boundPort,
    host,
    adminPort: admin.port,
    registry: gateway.metrics.registry,
    applySnapshot: (json, version) => gateway.applySnapshot(json, version),
    notReadyReason: () => gateway.notReadyReason(),
    get activeConnections() {
      return gateway.activeConnections;
    },
    close() {
      closing ??= (async () => {
        // Keep the table current while draining, then stop listening for it.
        await gateway.close();
        mds?.close();
        await adminServer.close();
      })();
      return closing;
    },
    destroy() {
      gateway.destroy();
      mds?.close();
      void adminServer.close();
    },
  };
}

export { DEFAULT_ADMIN_PORT, DEFAULT_GATEWAY_PORT } from './gateway-options.js';
export type { GatewayLimits, GatewayMdsOptions, GatewayOptions } from './gateway-options.js';
export { REFUSAL_REASONS, type RefusalReason } from './gateway-metrics.js';
export { registerLoadBalancer, type LoadBalancer } from './lb.js';
export type { NotReadyReason } from './gateway.js';
