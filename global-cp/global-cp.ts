/**
 * The global control plane process: store, trust root, tokens, the policy
 * REST API and the KDS server zones sync from. Later issues add the
 * dashboard here.
 */

import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { ErrorCodes, MeshError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { Router } from '../core/http/router.js';
import { sendJson } from '../core/http/respond.js';
import { createApiHandler } from '../core/api/api-server.js';
import { registerResourceRoutes } from '../core/api/resource-routes.js';
import { createApiMetrics, createRegistry, Counter, Gauge } from '../core/metrics.js';
import { createStore } from '../core/store/store-registry.js';
import type { GlobalCpHandle, GlobalCpOptions } from './options.js';
import { ensureTrustRoot } from './trust-root.js';
import { TokenService } from '../core/auth/token-service.js';
import { registerTokenRoutes } from '../core/api/token-routes.js';
import { vmTokenKindSpec } from '../core/vm/vm-token-spec.js';
import { isDns1123Label } from '../core/resource/dns-name.js';
import { DEFAULT_KDS_PORT } from '../core/kds/kds-protocol.js';
import { meshfedVersion } from '../core/kds/kds-version.js';
import { startKdsServer, type KdsServer } from './kds/kds-server.js';
import { registerDashboardRoutes } from './dashboard/dashboard-routes.js';
import { GlobalTelemetry } from './telemetry/global-telemetry.js';

export const DEFAULT_GLOBAL_PORT = 5681;
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

export async function startGlobalCp(options: GlobalCpOptions): Promise<GlobalCpHandle> {
  const logger = createLogger('global-cp');
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? DEFAULT_GLOBAL_PORT;
  const dataDir = resolve(options.dataDir);
  const tls = await loadTls(options);
  if (tls === undefined && !isLoopback(host)) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `refusing to serve plain HTTP on ${host}: give --tls-cert and --tls-key, or bind a loopback address`,
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new MeshError(ErrorCodes.CONFIG, `port must be an integer 0-65535, got ${port}`);
  }
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const adminTokenFile = resolve(options.adminTokenFile ?? join(dataDir, 'admin-token'));

  // API port 0 is "pick free ports" (tests, several CPs on one host): KDS then picks one too.
  const kdsPort = options.kdsPort ?? (port === 0 ? 0 : DEFAULT_KDS_PORT);
  if (!Number.isInteger(kdsPort) || kdsPort < 0 || kdsPort > 65535) {
    throw new MeshError(ErrorCodes.CONFIG, `KDS port must be an integer 0-65535, got ${kdsPort}`);
  }

  const store = await createStore(options.storeUrl ?? `file://${join(dataDir, 'store')}`);
  let tokens: TokenService | undefined;
  let kds: KdsServer | undefined;
  try {
    const trustRoot = await ensureTrustRoot(
      store,
      {
        trustDomain: options.trustDomain ?? 'cluster.local',
        caCertFile: options.caCertFile,
        caKeyFile: options.caKeyFile,
      },
      logger,
    );
    tokens = await TokenService.open(store, logger);
    await tokens.ensureAdminTokenFile(adminTokenFile);

    const registry = createRegistry('global-cp');
    const applies = new Counter({
      name: 'meshfed_global_applies_total',
      help: 'Resources written through the policy API, by kind and outcome.',
      labelNames: ['kind', 'action'],
      registers: [registry],
    });
    const watchers = new Gauge({
      name: 'meshfed_global_watchers',
      help: 'Open watch streams on the policy API.',
      registers: [registry],
    });
    new Gauge({
      name: 'meshfed_global_store_revision',
      help: 'Latest revision of the policy store.',
      registers: [registry],
      async collect() {
        this.set(await store.currentRevision());
      },
    });

    const router = new Router();
    router
      .add('GET', '/healthz', 'public', (ctx) => sendJson(ctx.res, 200, { status: 'ok' }))
      .add('GET', '/readyz', 'public', (ctx) =>
        sendJson(ctx.res, 200, { status: 'ready', store: store.backend }),
      )
      .add('GET', '/metrics', 'public', async (ctx) => {
        const text = await registry.metrics();
        ctx.res.writeHead(200, { 'content-type': registry.contentType });
        ctx.res.end(text);
      })
      .add('GET', '/api/v1/trust-bundle', 'read', (ctx) =>
        sendJson(ctx.res, 200, { trustDomain: trustRoot.trustDomain, roots: [trustRoot.certPem] }),
      );
    const resourceRoutes = registerResourceRoutes(router, {
      store,
      maxBodyBytes,
      onApplied: (result) => applies.inc({ kind: result.kind, action: result.action }),
      onWatchers: (delta) => watchers.inc(delta),
    });
    registerTokenRoutes(router, tokens, [
      { kind: 'admin' },
      { kind: 'readonly' },
      { kind: 'zone', fields: ['zone'], claims: (fields) => ({ zone: zoneClaim(fields.zone) }) },
      // VM join tokens for any zone (issue #8); the zone redeems them with global's KDS-synced key.
      vmTokenKindSpec({ store, bundlePem: () => trustRoot.certPem, where: 'on global' }),
    ]);
    // Zones' traffic and VMs, for the dashboard (docs/dashboard.md).
    const telemetry = new GlobalTelemetry({ registry });
    const kdsServer = await startKdsServer({
      telemetry,
      store,
      tokens,
      trustRoot,
      host: options.kdsHost ?? host,
      port: kdsPort,
      metricsRegistry: registry,
      logger: logger.child('kds'),
      softwareVersion: meshfedVersion(),
      settings: {
        ...options.kds,
        ...(options.zoneGracePeriodMs === undefined ? {} : { gracePeriodMs: options.zoneGracePeriodMs }),
      },
      dnsNames: options.kdsDnsNames,
    });
    kds = kdsServer;
    router.add('GET', '/api/v1/kds', 'read', (ctx) =>
      sendJson(ctx.res, 200, {
        address: kdsServer.address,
        replica: kdsServer.replicaId,
        storeId: kdsServer.storeId,
        connectedZones: kdsServer.connectedZones(),
        gracePeriodMs: kdsServer.settings.gracePeriodMs,
      }),
    );
    router.add('GET', '/api/v1/kds/catalog', 'read', async (ctx) => {
      const json = await kdsServer.catalogJson();
      ctx.res.writeHead(200, { 'content-type': 'application/json' });
      ctx.res.end(json);
    });
    const dashboard = registerDashboardRoutes(router, {
      store,
      telemetry,
      catalogJson: () => kdsServer.catalogJson(),
      logger: logger.child('dashboard'),
      index: { name: 'meshfed global control plane', api: '/apis', docs: 'docs/api.md', dashboard: '/' },
    });

    const handler = createApiHandler({
      router,
      authenticator: tokens,
      logger,
      observer: createApiMetrics(registry, 'meshfed_global'),
    });
    const server: Server = tls === undefined ? createHttpServer(handler) : createHttpsServer(tls, handler);
    // Bounded header and request times: a slowloris client cannot hold the API.
    server.headersTimeout = 10_000;
    server.requestTimeout = 60_000;
    await listen(server, port, host);
    const actualPort = (server.address() as AddressInfo).port;
    const url = `${tls === undefined ? 'http' : 'https'}://${formatHost(host)}:${actualPort}`;
    logger.info('global control plane serving', {
      url,
      kds: kdsServer.address,
      store: store.backend,
      adminTokenFile,
    });

    let closing: Promise<void> | undefined;
    const openTokens = tokens;
    return {
      url,
      port: actualPort,
      adminTokenFile,
      kdsAddress: kdsServer.address,
      kdsPort: kdsServer.port,
      caCertPem: trustRoot.certPem,
      close() {
        closing ??= (async () => {
          dashboard.close();
          // Zones first: their streams end with a status that sends them to another replica.
          await kdsServer.close();
          await new Promise<void>((done) => {
            server.close(() => done());
            // Watches are long-lived by design: end them so close() does not wait on them.
            resourceRoutes.closeWatches();
            server.closeIdleConnections();
            // In-flight requests get a grace period, then the sockets go.
            setTimeout(() => server.closeAllConnections(), 5000).unref();
          });
          openTokens.close();
          await store.close();
          logger.info('global control plane stopped');
        })();
        return closing;
      },
    };
  } catch (err) {
    await kds?.close();
    tokens?.close();
    await store.close();
    throw err;
  }
}

/** The zone claim of a zone token: a zone name as Zone objects spell it. */
function zoneClaim(value: unknown): string {
  if (typeof value !== 'string' || !isDns1123Label(value)) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `zone must be a zone name (a DNS-1123 label such as "zone-a"), got ${JSON.stringify(value) ?? 'nothing'}`,
      { field: 'zone' },
    );
  }
  return value;
}

async function loadTls(options: GlobalCpOptions): Promise<{ cert: string; key: string } | undefined> {
  if (options.tlsCertFile === undefined && options.tlsKeyFile === undefined) return undefined;
  if (options.tlsCertFile === undefined || options.tlsKeyFile === undefined) {
    throw new MeshError(ErrorCodes.CONFIG, 'give both --tls-cert and --tls-key, or neither');
  }
  const read = (path: string, flag: string) =>
    readFile(path, 'utf8').catch((err: Error) => {
      throw new MeshError(ErrorCodes.CONFIG, `cannot read ${flag} file ${path}: ${err.message}`);
    });
  return {
    cert: await read(options.tlsCertFile, '--tls-cert'),
    key: await read(options.tlsKeyFile, '--tls-key'),
  };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

function formatHost(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolveListen, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(
        new MeshError(
          ErrorCodes.CONFIG,
          err.code === 'EADDRINUSE'
            ? `port ${port} on ${host} is already in use`
            : `cannot listen on ${host}:${port}: ${err.message}`,
        ),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolveListen();
    });
  });
}
