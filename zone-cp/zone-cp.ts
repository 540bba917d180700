/**
 * The zone control plane process: store, tokens, the workload CA, discovery,
 * the config compiler, MDS and CA on one gRPC/TLS port, and the zone REST
 * API (policies in standalone mode, tokens, inspect, metrics). With global
 * settings it also runs the KDS client; without, it is a standalone zone
 * with its own root CA.
 */

import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createLogger } from '../core/log.js';
import { ErrorCodes, MeshError } from '../core/errors.js';
import { Router } from '../core/http/router.js';
import { sendJson } from '../core/http/respond.js';
import { createApiHandler } from '../core/api/api-server.js';
import { registerResourceRoutes } from '../core/api/resource-routes.js';
import { registerTokenRoutes } from '../core/api/token-routes.js';
import { TokenService } from '../core/auth/token-service.js';
import {
  GLOBAL_TOKEN_KEYS_SECRET,
  GLOBAL_TOKEN_REVOCATIONS_SECRET,
  SECRET_KIND,
  SERVICE_CATALOG_KIND,
} from '../core/auth/internal-kinds.js';
import { loadService } from '../core/ca/grpc-service.js';
import { CA_SERVICE } from '../core/ca/ca-client.js';
import { MDS_SERVICE } from '../core/mds/mds-messages.js';
import type { ServiceCatalog } from '../core/mesh/inventory.js';
import { createApiMetrics, createRegistry, Gauge } from '../core/metrics.js';
import { createStore } from '../core/store/store-registry.js';
import type { Store } from '../core/store/store.js';
import { isDns1123Label } from '../core/resource/validate.js';
import './discovery/discovery-builtins.js';
import type { KubernetesDiscovery } from './discovery/discovery-builtins.js';
import { registerUniversalRoutes } from './discovery/discovery-universal-routes.js';
import { OriginGuardStore } from './api/origin-guard-store.js';
import { registerInspectRoutes } from './api/inspect-routes.js';
import { registerInspectServiceRoutes } from './api/inspect-service-routes.js';
import { proxyTokenKind } from './api/proxy-token-kind.js';
import { caServiceHandlers } from './ca/ca-service.js';
import { CaSignPool } from './ca/ca-sign-pool.js';
import { IssuanceLog } from './ca/issuance-log.js';
import { KubernetesTokenReviewer } from './ca/token-reviewer-kubernetes.js';
import type { TokenReviewer } from './ca/token-reviewer.js';
import { ZoneCaKeeper } from './ca/zone-ca-keeper.js';
import { ConfigCompiler } from './compiler/config-compiler.js';
import { POLICY_KINDS } from './compiler/policy-index.js';
import { DiscoverySet } from './discovery-set.js';
import {
  serverDnsNames,
  startGrpcServer,
  ZoneServerCertificates,
  type GrpcServerHandle,
} from './grpc-server.js';
import { MdsServer } from './mds/mds-server.js';
import { PushScheduler } from './mds/push-scheduler.js';
import type { DiscoverySetting, ZoneCpHandle, ZoneCpOptions } from './options.js';
import { formatHost, startRestServer } from './rest-listen.js';
import { StoreMirror } from './store-mirror.js';
import { VmEnrollment } from './vm/vm-enrollment.js';
import { startKdsLink, type KdsLink } from './kds-link.js';
import { startWebhookServer, type WebhookServer } from './webhook/webhook-server.js';

export const DEFAULT_ZONE_REST_PORT = 5682;
export const DEFAULT_ZONE_GRPC_PORT = 5678;
export const DEFAULT_PUSH_DEBOUNCE_MS = 100;
export const DEFAULT_PUSH_MAX_DELAY_MS = 1000;
const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

export async function startZoneCp(options: ZoneCpOptions): Promise<ZoneCpHandle> {
  const zone = options.zone;
  if (typeof zone !== 'string' || !isDns1123Label(zone)) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `zone name "${String(zone)}" must be a DNS-1123 label (a-z, 0-9, -)`,
    );
  }
  const logger = createLogger('zone-cp').child(zone);
  const dataDir = resolve(options.dataDir);
  const host = options.host ?? '127.0.0.1';
  const grpcHost = options.grpcHost ?? '127.0.0.1';
  const debounceMs = checkMs(options.pushDebounceMs ?? DEFAULT_PUSH_DEBOUNCE_MS, 'pushDebounceMs');
  const maxDelayMs = Math.max(
    debounceMs,
    checkMs(options.pushMaxDelayMs ?? DEFAULT_PUSH_MAX_DELAY_MS, 'pushMaxDelayMs'),
  );
  const gateway = parseGatewayAddress(options.gatewayAddress);
  const adminTokenFile = resolve(options.adminTokenFile ?? join(dataDir, 'admin-token'));
  const standalone = options.global === undefined;

  const cleanups: Array<() => Promise<void> | void> = [];
  const cleanup = async (): Promise<void> => {
    for (const step of cleanups.reverse()) {
      try {
        await step();
      } catch (err) {
        logger.warn('error while stopping', { err });
      }
    }
    cleanups.length = 0;
  };

  try {
    const store: Store =
      options.store ?? (await createStore(options.storeUrl ?? `file://${join(dataDir, 'store')}`));
    if (options.store === undefined) cleanups.push(() => store.close());
    const tokens = await TokenService.open(store, logger);
    cleanups.push(() => tokens.close());
    await tokens.ensureAdminTokenFile(adminTokenFile);

    const mirror = new StoreMirror(
      store,
      [...POLICY_KINDS, SECRET_KIND, SERVICE_CATALOG_KIND],
      logger.child('store'),
    );
    cleanups.push(() => mirror.close());
    await mirror.start();

    const keeper = new ZoneCaKeeper(store, mirror, {
      zone,
      standalone,
      ...(options.trustDomain === undefined ? {} : { trustDomain: options.trustDomain }),
      logger: logger.child('ca'),
    });
    await keeper.start();
    followGlobalTokenKeys(mirror, tokens, logger);

    const registry = createRegistry('zone-cp');
    // Changes may arrive before the scheduler exists: they only invalidate then.
    const push: { scheduler?: PushScheduler } = {};
    const changed = (): void => {
      compiler.invalidate();
      push.scheduler?.notify();
    };

    const discovery = new DiscoverySet(discoveryOf(options), { zone, store, logger }, changed);
    cleanups.push(() => discovery.close());

    const compiler = new ConfigCompiler({
      zone,
      logger: logger.child('compiler'),
      registry,
      sources: {
        services: () => discovery.services(),
        workloads: () => discovery.workloads(),
        resources: (kind) => mirror.list(kind),
        catalog: () => catalogOf(mirror),
        trust: () => ({
          trustDomain: keeper.bundle?.trustDomain ?? options.trustDomain ?? 'cluster.local',
          roots: keeper.bundle?.roots ?? [],
        }),
        gateway: () => gateway,
      },
    });
    mirror.onChange((changes) => {
      if (changes.some((c) => c.object.kind !== SECRET_KIND || c.object.metadata.name === 'trust-bundle'))
        changed();
    });
    keeper.onChange(changed);

    const reviewer = await tokenReviewerOf(options);
    const issuance = new IssuanceLog();
    // VM enrollment (issue #8, zone-cp/vm/): join tokens, revoked certificates, silent-VM reaper.
    const vm = new VmEnrollment({
      zone,
      store,
      tokens,
      keeper,
      issuance,
      registry,
      logger: logger.child('vm'),
      ...(options.vm === undefined ? {} : { settings: options.vm }),
      ...(options.workloadCertTtlSeconds === undefined
        ? {}
        : { workloadCertTtlSeconds: options.workloadCertTtlSeconds }),
      ...(options.maxWorkloadCertTtlSeconds === undefined
        ? {}
        : { maxWorkloadCertTtlSeconds: options.maxWorkloadCertTtlSeconds }),
    });
    cleanups.push(() => vm.close());
    await vm.start();
    const auth = vm.callerAuthenticator({
      zone,
      tokens,
      keeper,
      ...(reviewer === undefined ? {} : { reviewer }),
      vm: options.vmTokens ?? vm.tokenAuthenticator,
    });
    const mds = new MdsServer({
      compiler,
      auth,
      issuance,
      registry,
      logger: logger.child('mds'),
      ...(options.sessionLimits === undefined ? {} : { limits: options.sessionLimits }),
      ...(options.pushBatchSize === undefined ? {} : { pushBatchSize: options.pushBatchSize }),
      notReady: () =>
        keeper.bundle === undefined
          ? 'waiting for the trust bundle (zone CA not received from global yet)'
          : undefined,
    });
    cleanups.push(() => mds.close());

    // CSR checks and signatures on worker threads; closed after the gRPC server (cleanups run in reverse).
    const caPool = new CaSignPool({
      logger: logger.child('ca'),
      registry,
      ...(options.caWorkers === undefined ? {} : { size: options.caWorkers }),
      ...(options.caMaxPending === undefined ? {} : { maxPending: options.caMaxPending }),
    });
    cleanups.push(() => caPool.close());

    const certificates = new ZoneServerCertificates(
      keeper,
      serverDnsNames(grpcHost, options.grpcServerNames),
      logger,
    );
    cleanups.push(() => certificates.close());
    const grpc: GrpcServerHandle = await startGrpcServer({
      host: grpcHost,
      port: options.grpcPort ?? DEFAULT_ZONE_GRPC_PORT,
      certificates,
      services: [
        { definition: loadService('mds.proto', MDS_SERVICE).service, handlers: mds.handlers() },
        {
          definition: loadService('ca.proto', CA_SERVICE).service,
          handlers: caServiceHandlers({
            keeper,
            auth,
            issuance,
            registry,
            logger: logger.child('ca'),
            pool: caPool,
            ...(options.workloadCertTtlSeconds === undefined
              ? {}
              : { defaultTtlSeconds: options.workloadCertTtlSeconds }),
            ...(options.maxWorkloadCertTtlSeconds === undefined
              ? {}
              : { maxTtlSeconds: options.maxWorkloadCertTtlSeconds }),
          }),
        },
      ],
    });
    cleanups.push(() => {
      // End the streams first (UNAVAILABLE: proxies reconnect), so shutdown need not wait for them.
      mds.close();
      return grpc.close();
    });
    const grpcAddress = `${formatHost(grpcHost)}:${grpc.port}`;

    // Sidecar injection (issue #4): namespace labels come from the kubernetes source's informer.
    const webhook = await startWebhook(options, zone, grpc.port, discovery, logger);
    if (webhook !== undefined) cleanups.push(() => webhook.close());

    let kds: KdsLink | undefined;
    let lastInventory = '';
    const scheduler = new PushScheduler(debounceMs, maxDelayMs, async () => {
      try {
        // Awaited: the scheduler runs one round at a time and folds changes during it into the next.
        await mds.pushAll();
        const inventory = JSON.stringify(compiler.inventory());
        if (inventory !== lastInventory) {
          lastInventory = inventory;
          kds?.notifyInventoryChanged();
        }
      } catch (err) {
        // A bug, not bad input (the compiler skips that): keep serving, say so loudly.
        logger.error('push round failed', { err });
      }
    });
    push.scheduler = scheduler;
    cleanups.push(() => scheduler.close());

    // REST API.
    const router = new Router();
    // Managed by global: what global synced is global's to change.
    const apiStore: Store = standalone ? store : new OriginGuardStore(store, zone);
    let discoveryReady = false;
    router
      .add('GET', '/healthz', 'public', (ctx) => sendJson(ctx.res, 200, { status: 'ok' }))
      .add('GET', '/readyz', 'public', (ctx) => {
        const waiting = [
          ...(keeper.ca === undefined || keeper.bundle === undefined ? ['zone CA'] : []),
          ...(discoveryReady ? [] : ['discovery']),
        ];
        if (waiting.length > 0) sendJson(ctx.res, 503, { status: 'starting', waitingFor: waiting });
        else
          sendJson(ctx.res, 200, {
            status: 'ready',
            zone,
            store: store.backend,
            mode: standalone ? 'standalone' : 'global',
          });
      })
      .add('GET', '/metrics', 'public', async (ctx) => {
        const text = await registry.metrics();
        ctx.res.writeHead(200, { 'content-type': registry.contentType });
        ctx.res.end(text);
      })
      .add('GET', '/', 'public', (ctx) =>
        sendJson(ctx.res, 200, {
          name: 'meshfed zone control plane',
          zone,
          mds: grpcAddress,
          docs: 'docs/zone-cp.md',
        }),
      )
      .add('GET', '/api/v1/trust-bundle', 'read', (ctx) =>
        sendJson(ctx.res, 200, {
          trustDomain: keeper.bundle?.trustDomain,
          roots: keeper.bundle?.roots ?? [],
        }),
      );
    options.extraRoutes?.(router, { store, zone });
    registerInspectRoutes(router, {
      zone,
      mds,
      compileProblems: () => compiler.problems(),
      discoveryProblems: () => discovery.errors(),
      otherProblems: () => [...(keeper.error === undefined ? [] : [keeper.error]), ...(kds?.errors() ?? [])],
      inventory: () => compiler.inventory(),
    });
    registerInspectServiceRoutes(router, { zone, mds, view: () => compiler.view() });
    registerTokenRoutes(router, tokens, [
      proxyTokenKind(zone),
      vm.tokenKind(),
      ...(options.extraTokenKinds ?? []),
    ]);
    vm.registerRoutes(router, { host: grpcHost, port: grpc.port });
    registerUniversalRoutes(router, {
      store,
      zone,
      logger: logger.child('registration'),
      verifyProxyToken: (token) => tokens.verify(token, ['proxy']),
    });
    const resourceRoutes = registerResourceRoutes(router, {
      store: apiStore,
      maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    });
    const handler = createApiHandler({
      router,
      authenticator: tokens,
      logger,
      observer: createApiMetrics(registry, 'meshfed_zone'),
    });
    const rest = await startRestServer(
      {
        host,
        port: options.port ?? DEFAULT_ZONE_REST_PORT,
        ...(options.tlsCertFile === undefined ? {} : { tlsCertFile: options.tlsCertFile }),
        ...(options.tlsKeyFile === undefined ? {} : { tlsKeyFile: options.tlsKeyFile }),
      },
      handler,
    );
    vm.serveTls(rest.server, host);
    cleanups.push(
      () =>
        new Promise<void>((done) => {
          rest.server.close(() => done());
          resourceRoutes.closeWatches();
          rest.server.closeIdleConnections();
          setTimeout(() => rest.server.closeAllConnections(), 2000).unref();
        }),
    );

    new Gauge({
      name: 'meshfed_zone_ca_ready',
      help: '1 once the zone CA and trust bundle are loaded.',
      registers: [registry],
      collect() {
        this.set(keeper.ca !== undefined && keeper.bundle !== undefined ? 1 : 0);
      },
    });

    if (options.global !== undefined) {
      kds = await startKdsLink({
        zone,
        global: options.global,
        store,
        logger: logger.child('kds'),
        inventory: () => compiler.inventory(),
        status: () => ({
          connectedProxies: mds.connectedCount,
          errors: compiler.problems().map((p) => `${p.kind}/${p.namespace}/${p.name}: ${p.reason}`),
        }),
        telemetry: (name) => mds.telemetrySummary(name),
      });
      const link = kds;
      cleanups.push(() => link.close());
    }

    const discoveryStarted = discovery.start().then(() => {
      discoveryReady = true;
      changed();
      logger.info('discovery synced', { sources: discovery.names });
    });
    discoveryStarted.catch((err: unknown) => logger.error('discovery failed to start', { err }));
    const ready = Promise.all([keeper.ready(), discoveryStarted]).then(() => undefined);

    logger.info('zone control plane serving', {
      rest: rest.url,
      grpc: grpcAddress,
      mode: standalone ? 'standalone' : 'global',
      adminTokenFile,
      ...(webhook === undefined ? {} : { webhook: webhook.url }),
    });

    let closing: Promise<void> | undefined;
    return {
      zone,
      restUrl: rest.url,
      grpcAddress,
      get caPem() {
        return keeper.bundlePem;
      },
      adminTokenFile,
      ...(webhook === undefined ? {} : { webhookUrl: webhook.url, webhookPort: webhook.port }),
      ready: () => ready,
      close() {
        closing ??= cleanup().then(() => logger.info('zone control plane stopped'));
        return closing;
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Address injected sidecars dial by default: the zone CP's Service in deploy/zone. */
export const DEFAULT_INJECTED_ZONE_CP_HOST = 'meshfed-zone-cp.meshfed-system.svc';

/** The injection webhook, when configured: certificate files read once here, bad ones refused at start. */
async function startWebhook(
  options: ZoneCpOptions,
  zone: string,
  grpcPort: number,
  discovery: DiscoverySet,
  logger: ReturnType<typeof createLogger>,
): Promise<WebhookServer | undefined> {
  const settings = options.webhook;
  if (settings === undefined) return undefined;
  const read = async (file: string, what: string): Promise<string> => {
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `webhook ${what} ${file} cannot be read: ${(err as Error).message}`,
        {
          field: what === 'certificate' ? 'webhook.certFile' : 'webhook.keyFile',
          cause: err,
        },
      );
    }
  };
  const certPem = await read(settings.certFile, 'certificate');
  const keyPem = await read(settings.keyFile, 'key');
  const kubernetes = discovery.source('kubernetes') as KubernetesDiscovery | undefined;
  return startWebhookServer({
    certPem,
    keyPem,
    ...(settings.host === undefined ? {} : { host: settings.host }),
    port: settings.port ?? 15017,
    webhook: {
      proxyImage: settings.proxyImage,
      ...(settings.initImage === undefined ? {} : { initImage: settings.initImage }),
      zoneCpAddress: settings.zoneCpAddress ?? `${DEFAULT_INJECTED_ZONE_CP_HOST}:${grpcPort}`,
      zone,
      // Without the kubernetes source the namespace is unknown and the webhook configuration's
      // namespaceSelector is trusted.
      ...(kubernetes === undefined
        ? {}
        : { namespaceLabels: (ns: string) => kubernetes.namespaceLabels(ns) }),
      logger: logger.child('webhook'),
    },
  });
}

function checkMs(value: number, name: string): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new MeshError(ErrorCodes.CONFIG, `${name} must be a non-negative number of milliseconds`);
  }
  return value;
}

function parseGatewayAddress(address: string | undefined): { address: string; port: number } | undefined {
  if (address === undefined || address === '') return undefined;
  const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(address);
  const port = Number(match?.[2]);
  if (!match?.[1] || !(port > 0 && port < 65536)) {
    throw new MeshError(ErrorCodes.CONFIG, `gateway address "${address}" must be host:port`);
  }
  return { address: match[1], port };
}

function catalogOf(mirror: StoreMirror): ServiceCatalog | undefined {
  const object = mirror.get(SERVICE_CATALOG_KIND, '', 'catalog');
  const zones = object?.spec.zones;
  return Array.isArray(zones) ? (object?.spec as unknown as ServiceCatalog) : undefined;
}

/** Global's token keys (sent over KDS) verify here too, so one admin token works on every zone. */
function followGlobalTokenKeys(
  mirror: StoreMirror,
  tokens: TokenService,
  logger: ReturnType<typeof createLogger>,
): void {
  const loadKeys = (): void => {
    const secret = mirror.get(SECRET_KIND, '', GLOBAL_TOKEN_KEYS_SECRET);
    const keys = secret?.spec.publicKeysPem;
    if (!Array.isArray(keys)) return;
    for (const pem of keys) {
      if (typeof pem !== 'string') continue;
      try {
        tokens.addVerificationKey(pem);
      } catch (err) {
        logger.warn('ignoring an unusable global token key', { err });
      }
    }
  };
  // Tokens global revoked (its admin, readonly and vm tokens): refused here too.
  const loadRevocations = (): void => {
    const ids = mirror.get(SECRET_KIND, '', GLOBAL_TOKEN_REVOCATIONS_SECRET)?.spec.tokenIds;
    if (!Array.isArray(ids)) return;
    tokens.setRevokedElsewhere(ids.filter((id): id is string => typeof id === 'string'));
  };
  loadKeys();
  loadRevocations();
  mirror.onChange((changes) => {
    for (const { object } of changes) {
      if (object.kind !== SECRET_KIND) continue;
      if (object.metadata.name === GLOBAL_TOKEN_KEYS_SECRET) loadKeys();
      if (object.metadata.name === GLOBAL_TOKEN_REVOCATIONS_SECRET) loadRevocations();
    }
  });
}

/** TokenReview against the zone's cluster, when it runs in Kubernetes. */
async function tokenReviewerOf(options: ZoneCpOptions): Promise<TokenReviewer | undefined> {
  const inKubernetes = (options.discovery ?? []).some((d) => d.name === 'kubernetes');
  const k8s = options.kubernetes ?? (inKubernetes ? {} : undefined);
  if (k8s === undefined) return undefined;
  // Loaded only in Kubernetes mode: client-node takes about a second to import.
  const { loadKubeConfig } = await import('../core/store/store-kubernetes.js');
  const kubeConfig =
    k8s.kubeConfig ??
    loadKubeConfig({
      ...(k8s.kubeconfigPath === undefined ? {} : { kubeconfigPath: k8s.kubeconfigPath }),
      ...(k8s.context === undefined ? {} : { context: k8s.context }),
    });
  const server = kubeConfig.getCurrentCluster()?.server;
  if (server === undefined) throw new MeshError(ErrorCodes.CONFIG, 'the kubeconfig names no API server');
  return new KubernetesTokenReviewer({
    server,
    prepare: (requestOptions) => kubeConfig.applyToHTTPSOptions(requestOptions),
    ...(k8s.audiences === undefined ? {} : { audiences: k8s.audiences }),
  });
}

/** Discovery settings with the zone's cluster handed to the kubernetes source. */
function discoveryOf(options: ZoneCpOptions): DiscoverySetting[] {
  const k8s = options.kubernetes;
  return (options.discovery ?? [{ name: 'universal' }]).map((setting) => {
    if (setting.name !== 'kubernetes' || k8s === undefined) return setting;
    return {
      ...setting,
      options: {
        ...(k8s.kubeConfig === undefined ? {} : { kubeConfig: k8s.kubeConfig }),
        ...(k8s.kubeconfigPath === undefined ? {} : { kubeconfigPath: k8s.kubeconfigPath }),
        ...(k8s.context === undefined ? {} : { context: k8s.context }),
        ...setting.options,
      },
    };
  });
}
