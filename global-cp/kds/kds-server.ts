/**
 * The global CP's KDS server (meshfed.kds.v1.GlobalSync over TLS, port
 * 5685): one ZoneSession per zone stream, the zone registry (Zone status,
 * replica leases), the cross-zone catalog with its grace period, and the
 * watches that end a stream when its token is revoked or its zone disabled
 * or deleted. Several replicas may serve one store (Redis): everything a
 * zone's state depends on lives in the store.
 */

import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { ErrorCodes, MeshError, isMeshError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Registry } from '../../core/metrics.js';
import { Gauge } from '../../core/metrics.js';
import type { TokenService } from '../../core/auth/token-service.js';
import type { CertificateAuthority } from '../../core/pki/ca.js';
import type { Store } from '../../core/store/store.js';
import { kdsChannelOptions, kdsServiceDefinition } from '../../core/kds/kds-grpc.js';
import type { ZoneTelemetrySink } from '../../core/telemetry/telemetry-report.js';
import { KDS_STORE_ID_KIND, KDS_STORE_ID_NAME, internalResource } from '../../core/kds/kds-internal-kinds.js';
import type { GlobalMessage, ZoneMessage } from '../../core/kds/kds-messages.js';
import { ZoneCatalog } from './kds-catalog.js';
import { createKdsMetrics } from './kds-metrics.js';
import { Semaphore } from './kds-semaphore.js';
import { ZoneSession, type SessionContext } from './kds-session.js';
import { resolveKdsSettings, type KdsSettings } from './kds-settings.js';
import { issueKdsServerIdentity } from './kds-tls.js';
import { ZoneRegistry } from './kds-zone-registry.js';

export interface KdsServerOptions {
  store: Store;
  tokens: TokenService;
  trustRoot: CertificateAuthority;
  /** Bind address; 0.0.0.0 or :: to serve other hosts (KDS is always TLS and token-authenticated). */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The global CP's metrics registry. */
  metricsRegistry: Registry;
  logger: Logger;
  softwareVersion: string;
  settings?: Partial<KdsSettings>;
  /** Where zones' telemetry summaries go (the dashboard). */
  telemetry?: ZoneTelemetrySink;
  /** Extra DNS names for the server certificate (besides localhost). */
  dnsNames?: readonly string[];
}

export interface KdsServer {
  /** host:port zones dial. */
  readonly address: string;
  readonly port: number;
  /** This replica's id (in leases and Zone.status.replica). */
  readonly replicaId: string;
  /** Global's store identity (Welcome.store_id). */
  readonly storeId: string;
  readonly settings: KdsSettings;
  /** Zones with an open stream on this replica. */
  connectedZones(): string[];
  /** The cross-zone catalog every zone receives now (JSON ServiceCatalog, all zones). */
  catalogJson(): Promise<Buffer>;
  /** Ends every stream (zones reconnect elsewhere), records the disconnects, stops serving. Idempotent. */
  close(): Promise<void>;
}

export async function startKdsServer(options: KdsServerOptions): Promise<KdsServer> {
  const settings = resolveKdsSettings(options.settings);
  const { store, logger } = options;
  const replicaId = randomUUID();
  const storeId = await ensureStoreId(store);
  const identity = issueKdsServerIdentity(options.trustRoot, options.dnsNames);
  const metrics = createKdsMetrics(options.metricsRegistry);
  const sessions = new Map<string, ZoneSession>();
  const all = new Set<ZoneSession>();

  const catalog = new ZoneCatalog({
    store,
    replicaId,
    gracePeriodMs: settings.gracePeriodMs,
    inventoryWriteIntervalMs: settings.inventoryWriteIntervalMs,
    logger: logger.child('catalog'),
  });
  await catalog.start();

  const server = new Server(kdsChannelOptions(settings.keepalive));
  const credentials = ServerCredentials.createSsl(
    null,
    [{ cert_chain: Buffer.from(identity.certChainPem), private_key: Buffer.from(identity.keyPem) }],
    false,
  );
  let port: number;
  try {
    port = await bind(server, options.host, options.port, credentials);
  } catch (err) {
    catalog.close();
    throw err;
  }
  const address = `${isIP(options.host) === 6 ? `[${options.host}]` : options.host}:${port}`;
  const registry = new ZoneRegistry({
    store,
    replicaId,
    address,
    statusIntervalMs: settings.statusIntervalMs,
    leaseMs: settings.leaseMs,
    logger: logger.child('zones'),
  });

  const ctx: SessionContext = {
    store,
    tokens: options.tokens,
    trustRoot: options.trustRoot,
    registry,
    catalog,
    storeId,
    replicaId,
    softwareVersion: options.softwareVersion,
    settings,
    metrics,
    logger,
    resyncPermits: new Semaphore(settings.maxConcurrentResyncs),
    ...(options.telemetry === undefined ? {} : { telemetry: options.telemetry }),
    attach(session) {
      const previous = sessions.get(session.zone);
      sessions.set(session.zone, session);
      if (previous !== undefined && previous !== session) {
        previous.fail(
          new MeshError(ErrorCodes.UNAVAILABLE, `superseded by a newer stream of zone ${session.zone}`),
          'superseded',
        );
      }
    },
    detach(session) {
      if (session.zone !== '' && sessions.get(session.zone) === session) sessions.delete(session.zone);
      all.delete(session);
    },
  };

  new Gauge({
    name: 'meshfed_kds_zones_connected',
    help: 'Zones with an open KDS stream on this replica.',
    registers: [options.metricsRegistry],
    collect() {
      this.set(sessions.size);
    },
  });

  catalog.onChange(() => {
    for (const session of sessions.values()) session.pushCatalog();
  });
  catalog.onZoneEvent(({ zone, type }) => {
    if (type === 'status-cleared') {
      registry.restore(zone);
      return;
    }
    const session = sessions.get(zone);
    if (session === undefined) return;
    session.fail(
      new MeshError(
        ErrorCodes.FORBIDDEN,
        type === 'disabled'
          ? `zone "${zone}" was disabled (Zone ${zone} spec.enabled=false)`
          : `zone "${zone}" was deleted from global's zone registry`,
      ),
      `zone-${type}`,
    );
  });

  // A revoked zone token ends its open stream at once, on every replica (the
  // token service follows revocations through the store); after a gap in that
  // watch, open streams re-verify their tokens.
  // Every other zone learns the revocation through its trust message, so it
  // refuses the token on its own API and at VM join.
  const stopRevoked = options.tokens.onRevoked((jti) => {
    for (const session of [...sessions.values()]) {
      if (session.tokenId === jti) {
        session.fail(new MeshError(ErrorCodes.TOKEN_INVALID, `the zone token ${jti} was revoked`), 'token');
      } else {
        session.pushRevocations();
      }
    }
  });
  const stopResync = options.tokens.onRevocationResync(() => {
    for (const session of [...sessions.values()]) {
      session.recheckToken();
      session.pushRevocations();
    }
  });
  const revocations = {
    close(): void {
      stopRevoked();
      stopResync();
    },
  };

  server.addService(kdsServiceDefinition(), {
    Sync: (call: ServerDuplexStream<ZoneMessage, GlobalMessage>) => {
      const session = new ZoneSession(call, ctx);
      all.add(session);
      session.start();
    },
  });
  await registry.startLease();
  logger.info('KDS server serving', { address, replicaId, storeId, spiffeId: identity.spiffeId });

  let closing: Promise<void> | undefined;
  return {
    address,
    port,
    replicaId,
    storeId,
    settings,
    connectedZones: () => [...sessions.keys()].sort(),
    catalogJson: async () => (await catalog.encoded('identity')).payload,
    close() {
      closing ??= (async () => {
        revocations.close();
        catalog.close();
        const open = [...all];
        for (const session of open) {
          session.fail(
            new MeshError(ErrorCodes.UNAVAILABLE, 'the global control plane is shutting down'),
            'shutdown',
          );
        }
        await Promise.all(open.map((s) => s.closed()));
        await registry.close();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 2000);
          timer.unref();
          server.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        });
        logger.info('KDS server stopped', { address });
      })();
      return closing;
    },
  };
}

function bind(server: Server, host: string, port: number, credentials: ServerCredentials): Promise<number> {
  const target = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  return new Promise((resolve, reject) => {
    server.bindAsync(target, credentials, (err, bound) => {
      if (err) {
        reject(
          new MeshError(
            ErrorCodes.CONFIG,
            /EADDRINUSE|address already in use/i.test(err.message)
              ? `KDS port ${port} on ${host} is taken by another process: stop it or pass --kds-port N (0 picks a free port)`
              : `cannot serve KDS on ${target}: ${err.message}`,
          ),
        );
        return;
      }
      resolve(bound);
    });
  });
}

/** Global's store identity, created once per store (every replica reads the same). */
async function ensureStoreId(store: Store): Promise<string> {
  const key = { kind: KDS_STORE_ID_KIND, namespace: '', name: KDS_STORE_ID_NAME };
  const existing = await store.get(key);
  if (typeof existing?.spec.id === 'string') return existing.spec.id;
  try {
    const created = await store.create(
      internalResource(KDS_STORE_ID_KIND, KDS_STORE_ID_NAME, { id: randomUUID() }),
    );
    return String(created.spec.id);
  } catch (err) {
    if (!isMeshError(err, ErrorCodes.ALREADY_EXISTS)) throw err;
    const winner = await store.get(key);
    if (typeof winner?.spec.id !== 'string') throw err;
    return winner.spec.id;
  }
}
