/**
 * The zone's KDS client: dials global (trying each address in turn, with
 * exponential backoff and jitter), says what it already holds so global
 * sends only the difference, applies what arrives to the zone's store —
 * policies, Mesh, trust, the zone's intermediate CA, the cross-zone
 * catalog — and reports inventory and status upward.
 *
 * Everything received is persisted in the zone store, so a zone CP that
 * restarts while global is down serves its last policy and trust at once
 * (`ready()` resolves from the store).
 */

import {
  Metadata,
  status as GrpcStatus,
  type ChannelCredentials,
  type ClientDuplexStream,
  type StatusObject,
} from '@grpc/grpc-js';
import { ErrorCodes, MeshError, isMeshError } from '../../core/errors.js';
import { createLogger, type Logger } from '../../core/log.js';
import type { ServiceCatalog, ZoneInventory } from '../../core/mesh/inventory.js';
import { isDns1123Label } from '../../core/resource/dns-name.js';
import type { Store } from '../../core/store/store.js';
import { deepEqual } from '../../core/store/store-object.js';
import { SERVICE_CATALOG_KIND, INTERNAL_API_VERSION } from '../../core/auth/internal-kinds.js';
import {
  DEFAULT_KEEPALIVE,
  kdsChannelOptions,
  kdsServiceClient,
  meshErrorOfStatus,
  type KeepaliveOptions,
} from '../../core/kds/kds-grpc.js';
import { parseCatalog } from '../../core/kds/kds-inventory.js';
import {
  decodeCatalog,
  decodePayload,
  readRevision,
  type ChangesMessage,
  type GlobalMessage,
  type TrustMessage,
  type WelcomeMessage,
  type ZoneMessage,
} from '../../core/kds/kds-messages.js';
import {
  KDS_CAPABILITIES,
  KDS_MIN_PROTOCOL_VERSION,
  KDS_PROTOCOL_VERSION,
  MAX_KDS_MESSAGE_BYTES,
  type VersionRange,
} from '../../core/kds/kds-protocol.js';
import { meshfedVersion } from '../../core/kds/kds-version.js';
import { encodeTelemetry, type ZoneTelemetrySummary } from '../../core/telemetry/telemetry-report.js';
import { DEFAULT_BACKOFF, backoffDelay, type BackoffOptions } from './kds-backoff.js';
import { kdsChannelCredentials } from './kds-client-tls.js';
import { ZoneApplier } from './kds-zone-apply.js';
import { ZoneTrust } from './kds-zone-trust.js';

export interface KdsClientOptions {
  zone: string;
  /** One or more global KDS addresses host:port; on failure the client moves to the next (HA). */
  globalAddresses: string[];
  /**
   * PEM of global's root CA: the client trusts only servers whose chain ends
   * in it, and checks the server's SPIFFE ID is the global CP's
   * (spiffe://<td>/ns/meshfed-system/sa/global-cp), not the hostname.
   */
  globalCaPem: string;
  /** Zone token from `meshfed token create --kind zone --zone <zone>`. */
  token: string;
  /** The zone's store: synced resources, the zone CA, the trust bundle and the catalog are written here. */
  store: Store;
  /** The zone's current inventory; call notifyInventoryChanged() after it changes. */
  inventory: () => ZoneInventory;
  /** Zone status to report (connected proxies, errors, optionally the zone store revision its config reflects). */
  status: () => { connectedProxies: number; errors: string[]; configRevision?: number };
  logger?: Logger;
  /** Reported to global; default the meshfed package version. */
  softwareVersion?: string;
  backoff?: Partial<BackoffOptions>;
  /** Inventory changes within this window go up as one message. Default 100 ms. */
  inventoryDebounceMs?: number;
  /** How often status() is read and, when changed, reported. Default 5 s. */
  statusIntervalMs?: number;
  /**
   * The zone's telemetry since the previous call (traffic per edge, VMs), for
   * the dashboard; read every `telemetryIntervalMs` while connected. The
   * client sets `zone`. Absent: no telemetry is sent.
   */
  telemetry?: (zone: string) => ZoneTelemetrySummary;
  /** Default 5 s, or MESHFED_ZONE_TELEMETRY_INTERVAL_MS. */
  telemetryIntervalMs?: number;
  keepalive?: KeepaliveOptions;
  /** A stream that hears nothing from global for this long is abandoned for the next address. Default 60 s. */
  welcomeTimeoutMs?: number;
  /** How often the intermediate's age is checked (renewed at half-life). Default 1 h. */
  caRenewCheckIntervalMs?: number;
  /** Protocol versions and capabilities offered (tests impersonate older zones). */
  protocol?: VersionRange;
  capabilities?: readonly string[];
}

/** Name the client sends as TLS SNI; the server's identity is checked by SPIFFE ID, not by this. */
const TLS_SERVER_NAME = 'global-cp.meshfed';
/** Pause reading the stream while this many received messages wait to be applied. */
const PAUSE_AT = 8;
const RESUME_AT = 2;
const HEALTHY_RECONNECT: BackoffOptions = { initialMs: 200, maxMs: 200 };
const ADDRESS = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** The generated stub's one method, typed. */
interface KdsStub {
  Sync(metadata: Metadata): ClientDuplexStream<ZoneMessage, GlobalMessage>;
}

interface StreamOutcome {
  /** The stream reached sync: the next failure starts the backoff from scratch. */
  healthy: boolean;
}

export class KdsClient {
  readonly zone: string;
  private readonly logger: Logger;
  private readonly applier: ZoneApplier;
  private readonly trust: ZoneTrust;
  private readonly backoff: BackoffOptions;
  private readonly credentials: ChannelCredentials;
  private readonly Client = kdsServiceClient();
  private started = false;
  private closed = false;
  private running: Promise<void> | undefined;
  private current: ZoneStream | undefined;
  private sleepTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private inventoryTimer: NodeJS.Timeout | undefined;
  private isReady = false;
  private resolveReady: () => void = () => undefined;
  private readonly readyPromise: Promise<void>;
  private lastErrorValue: MeshError | undefined;
  private appliedRevisionValue = 0;

  constructor(readonly options: KdsClientOptions) {
    if (typeof options.zone !== 'string' || !isDns1123Label(options.zone)) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `zone name ${JSON.stringify(options.zone)} must be a DNS-1123 label`,
      );
    }
    if (!Array.isArray(options.globalAddresses) || options.globalAddresses.length === 0) {
      throw new MeshError(ErrorCodes.CONFIG, 'give at least one global KDS address (host:port)');
    }
    for (const address of options.globalAddresses) {
      const match = ADDRESS.exec(address);
      if (match === null || Number(match[2]) < 1 || Number(match[2]) > 65535) {
        throw new MeshError(ErrorCodes.CONFIG, `global KDS address "${address}" is not host:port`);
      }
    }
    if (typeof options.token !== 'string' || options.token.trim() === '') {
      throw new MeshError(
        ErrorCodes.CONFIG,
        'a zone token is required (meshfed token create --kind zone --zone <zone>)',
      );
    }
    this.zone = options.zone;
    this.credentials = kdsChannelCredentials(options.globalCaPem);
    this.logger = options.logger ?? createLogger('zone-cp.kds');
    this.applier = new ZoneApplier(options.store, this.logger);
    this.trust = new ZoneTrust(options.store, options.zone, this.logger);
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.readyPromise = new Promise((resolve) => {
      this.resolveReady = resolve;
    });
  }

  /** True while a stream to global is established (Welcome received). */
  get connected(): boolean {
    return !this.closed && this.current?.welcomed === true;
  }

  /** Why the last stream ended or was refused (for status pages and tests). */
  get lastError(): MeshError | undefined {
    return this.lastErrorValue;
  }

  /** Global revision the zone store reflects (0 before the first sync). */
  get appliedRevision(): number {
    return this.appliedRevisionValue;
  }

  /** Connects in the background and reconnects with backoff + jitter until close(). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    void this.checkStoredSync();
    this.running = this.run();
  }

  /** Debounced push of the inventory to global. */
  notifyInventoryChanged(): void {
    if (this.closed || this.inventoryTimer !== undefined) return;
    this.inventoryTimer = setTimeout(() => {
      this.inventoryTimer = undefined;
      this.current?.sendInventory();
    }, this.options.inventoryDebounceMs ?? 100);
    this.inventoryTimer.unref();
  }

  /**
   * Resolves after the first complete sync (policies, trust, CA) — or at
   * once if the store already holds a previous sync (a zone restarted while
   * global is down).
   */
  ready(): Promise<void> {
    if (!this.started) void this.checkStoredSync();
    return this.readyPromise;
  }

  /** Ends the stream and stops reconnecting; resolves when nothing more is written to the store. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.inventoryTimer !== undefined) clearTimeout(this.inventoryTimer);
    if (this.sleepTimer !== undefined) clearTimeout(this.sleepTimer);
    this.wake?.();
    this.current?.cancel();
    await this.running;
  }

  // ---- used by ZoneStream ----------------------------------------------------

  /** @internal */
  get internals(): {
    applier: ZoneApplier;
    trust: ZoneTrust;
    logger: Logger;
    store: Store;
  } {
    return { applier: this.applier, trust: this.trust, logger: this.logger, store: this.options.store };
  }

  /** @internal */
  noteError(err: MeshError): void {
    this.lastErrorValue = err;
  }

  /** @internal */
  noteApplied(revision: number): void {
    if (revision > 0) this.appliedRevisionValue = revision;
  }

  /** @internal */
  async maybeReady(): Promise<void> {
    if (this.isReady) return;
    if (!(await this.trust.hasTrust())) return;
    this.isReady = true;
    this.logger.info('zone synced with global');
    this.resolveReady();
  }

  // ---- connection loop ---------------------------------------------------------

  private async checkStoredSync(): Promise<void> {
    try {
      const state = await this.applier.loadState();
      if (state !== undefined) this.noteApplied(state.revision);
      if (state !== undefined && state.revision > 0 && !this.isReady && (await this.trust.hasTrust())) {
        this.isReady = true;
        this.logger.info('serving the last sync with global from the store', { revision: state.revision });
        this.resolveReady();
      }
    } catch (err) {
      this.logger.warn('could not read the stored KDS state', { err });
    }
  }

  private async run(): Promise<void> {
    const addresses = this.options.globalAddresses;
    let failures = 0;
    let index = 0;
    while (!this.closed) {
      const address = addresses[index % addresses.length] ?? '';
      let outcome: StreamOutcome = { healthy: false };
      try {
        outcome = await this.streamOnce(address);
      } catch (err) {
        const meshErr = isMeshError(err) ? err : new MeshError(ErrorCodes.INTERNAL, (err as Error).message);
        this.noteError(meshErr);
        this.logger.error('KDS stream setup failed', { address, err: meshErr });
      }
      if (this.closed) break;
      index++;
      failures = outcome.healthy ? 0 : failures + 1;
      const delay = outcome.healthy
        ? backoffDelay(1, HEALTHY_RECONNECT)
        : backoffDelay(failures, this.backoff);
      this.logger.debug('reconnecting to global', {
        delayMs: delay,
        next: addresses[index % addresses.length],
      });
      await this.sleep(delay);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => {
        if (this.sleepTimer !== undefined) clearTimeout(this.sleepTimer);
        this.wake = undefined;
        resolve();
      };
      this.sleepTimer = setTimeout(() => this.wake?.(), ms);
    });
  }

  private async streamOnce(address: string): Promise<StreamOutcome> {
    const state = await this.applier.loadState();
    this.applier.resetStream();
    const csr = await this.trust.csrIfNeeded();
    if (this.closed) return { healthy: false };
    const client = new this.Client(address, this.credentials, {
      ...kdsChannelOptions(this.options.keepalive ?? DEFAULT_KEEPALIVE),
      'grpc.ssl_target_name_override': TLS_SERVER_NAME,
      // A fresh connection per attempt: never reuse one that may be half-open.
      'grpc.use_local_subchannel_pool': 1,
      // Inventory and status upward are gzip'ed by gRPC (grpc-js compresses client messages).
      'grpc.default_compression_algorithm': 2,
    });
    try {
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${this.options.token.trim()}`);
      const call = (client as unknown as KdsStub).Sync(metadata);
      const protocol = this.options.protocol ?? { min: KDS_MIN_PROTOCOL_VERSION, max: KDS_PROTOCOL_VERSION };
      const stream = new ZoneStream(this, call, address, protocol, this.options.welcomeTimeoutMs ?? 60_000);
      this.current = stream;
      stream.write({
        hello: {
          protocol_version: protocol.max,
          min_protocol_version: protocol.min,
          capabilities: [...(this.options.capabilities ?? KDS_CAPABILITIES)],
          zone: this.zone,
          software_version: this.options.softwareVersion ?? meshfedVersion(),
          store_id: state?.storeId ?? '',
          applied_revision: String(state?.revision ?? 0),
          csr_pem: csr,
        },
      });
      if (this.closed) stream.cancel();
      return await stream.done;
    } finally {
      this.current = undefined;
      client.close();
    }
  }
}

/** One stream to global: handles what arrives in order, reports upward. */
class ZoneStream {
  welcomed = false;
  readonly done: Promise<StreamOutcome>;
  private heardFromGlobal = false;
  private resolveDone: (outcome: StreamOutcome) => void = () => undefined;
  private chain: Promise<void> = Promise.resolve();
  private queued = 0;
  private ended = false;
  private healthy = false;
  private storeId = '';
  private lastInventoryJson = '';
  private lastStatusJson = '';
  private lastCatalog: ServiceCatalog | undefined;
  private trustReceived = false;
  private syncedOnce = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly logger: Logger;

  constructor(
    private readonly client: KdsClient,
    private readonly call: ClientDuplexStream<ZoneMessage, GlobalMessage>,
    private readonly address: string,
    private readonly protocol: VersionRange,
    welcomeTimeoutMs: number,
  ) {
    this.logger = client.internals.logger;
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    call.on('data', (message: GlobalMessage) => {
      this.heardFromGlobal = true;
      this.enqueue(message);
    });
    call.on('status', (status: StatusObject) => this.onStatus(status));
    // 'error' carries the same status as 'status'; listening keeps it from being an unhandled error.
    call.on('error', () => undefined);
    const welcomeTimer = setTimeout(() => {
      // On a busy zone CP the timer can fire before the poll phase reads a
      // Welcome that already arrived: look again after pending I/O.
      setImmediate(() => {
        if (!this.heardFromGlobal && !this.ended) {
          this.abort(
            new MeshError(ErrorCodes.UNAVAILABLE, `no Welcome from ${address} within ${welcomeTimeoutMs} ms`),
          );
        }
      });
    }, welcomeTimeoutMs);
    welcomeTimer.unref();
    this.timers.push(welcomeTimer);
  }

  write(message: ZoneMessage): void {
    if (this.ended) return;
    try {
      this.call.write(message);
    } catch (err) {
      this.logger.debug('write on an ended KDS stream', { err });
    }
  }

  cancel(): void {
    if (this.ended) return;
    this.call.cancel();
  }

  sendInventory(): void {
    if (!this.welcomed || this.ended) return;
    let inventory: ZoneInventory;
    try {
      inventory = this.client.options.inventory();
    } catch (err) {
      this.logger.error('the inventory callback failed; not reporting it', { err });
      return;
    }
    const json = JSON.stringify({ ...inventory, zone: this.client.zone });
    if (json === this.lastInventoryJson) return;
    this.lastInventoryJson = json;
    this.write({ inventory: { json: Buffer.from(json, 'utf8') } });
  }

  private sendStatus(): void {
    if (!this.welcomed || this.ended) return;
    let status: ReturnType<KdsClientOptions['status']>;
    try {
      status = this.client.options.status();
    } catch (err) {
      this.logger.error('the status callback failed; not reporting it', { err });
      return;
    }
    const message = {
      software_version: this.client.options.softwareVersion ?? meshfedVersion(),
      connected_proxies: Math.max(0, Math.floor(status.connectedProxies)),
      errors: status.errors.slice(0, 20).map((e) => e.slice(0, 1024)),
      config_revision: String(Math.max(0, Math.floor(status.configRevision ?? 0))),
    };
    const json = JSON.stringify(message);
    if (json === this.lastStatusJson) return;
    this.lastStatusJson = json;
    this.write({ status: message });
  }

  private sendTelemetry(): void {
    const telemetry = this.client.options.telemetry;
    if (!this.welcomed || this.ended || telemetry === undefined) return;
    try {
      const summary = telemetry(this.client.zone);
      this.write({ telemetry: { json: encodeTelemetry({ ...summary, zone: this.client.zone }) } });
    } catch (err) {
      this.logger.warn('the telemetry callback failed; not reporting it', { err });
    }
  }

  private enqueue(message: GlobalMessage): void {
    this.queued++;
    // Applying 10,000 objects takes a while: stop reading so HTTP/2 flow
    // control tells global to wait, instead of buffering without bound.
    if (this.queued >= PAUSE_AT) this.call.pause();
    this.chain = this.chain
      .then(() => this.handle(message))
      .catch((err: unknown) => this.abort(err))
      .finally(() => {
        this.queued--;
        if (this.queued <= RESUME_AT && !this.ended) this.call.resume();
      });
  }

  private abort(err: unknown): void {
    const meshErr = isMeshError(err) ? err : new MeshError(ErrorCodes.INTERNAL, (err as Error).message);
    this.client.noteError(meshErr);
    this.logger.error('ending the KDS stream', { address: this.address, err: meshErr });
    this.cancel();
  }

  private onStatus(status: StatusObject): void {
    if (this.ended) return;
    this.ended = true;
    for (const timer of this.timers) clearTimeout(timer);
    if (status.code !== GrpcStatus.OK && status.code !== GrpcStatus.CANCELLED) {
      const err = meshErrorOfStatus(status);
      this.client.noteError(err);
      const operatorAction =
        err.code === ErrorCodes.TOKEN_INVALID ||
        err.code === ErrorCodes.UNAUTHENTICATED ||
        err.code === ErrorCodes.FORBIDDEN ||
        err.code === ErrorCodes.UNSUPPORTED_VERSION;
      const log = operatorAction ? this.logger.error : this.logger.warn;
      log(this.welcomed ? 'KDS stream to global ended' : 'global refused the KDS stream', {
        address: this.address,
        code: err.code,
        reason: err.message,
      });
    } else if (this.welcomed) {
      this.logger.info('KDS stream to global closed', { address: this.address });
    }
    // Let what was received finish applying before the connection loop moves on (or close() returns).
    void this.chain.finally(() => this.resolveDone({ healthy: this.healthy }));
  }

  private async handle(message: GlobalMessage): Promise<void> {
    if (this.ended) return;
    switch (message.message) {
      case 'welcome':
        if (message.welcome) this.onWelcome(message.welcome);
        return;
      case 'trust':
        if (message.trust) await this.onTrust(message.trust);
        return;
      case 'catalog':
        if (message.catalog) await this.onCatalog(message.catalog.json, message.catalog.encoding);
        return;
      case 'changes':
        if (message.changes) await this.onChanges(message.changes);
        return;
      default:
        this.logger.debug('ignoring an unknown KDS message from global');
    }
  }

  private onWelcome(welcome: WelcomeMessage): void {
    const version = welcome.protocol_version;
    if (version < this.protocol.min || version > this.protocol.max) {
      throw new MeshError(
        ErrorCodes.UNSUPPORTED_VERSION,
        `global chose KDS protocol version ${version}; this zone speaks ${this.protocol.min}-${this.protocol.max}`,
      );
    }
    this.welcomed = true;
    this.storeId = welcome.store_id;
    this.logger.info('connected to global', {
      address: this.address,
      replica: welcome.replica,
      protocolVersion: version,
      capabilities: welcome.capabilities,
      globalVersion: welcome.software_version,
    });
    this.sendInventory();
    this.sendStatus();
    const statusTimer = setInterval(() => this.sendStatus(), this.client.options.statusIntervalMs ?? 5000);
    statusTimer.unref();
    this.timers.push(statusTimer);
    if (this.client.options.telemetry !== undefined) {
      const telemetryTimer = setInterval(
        () => this.sendTelemetry(),
        telemetryIntervalMs(this.client.options),
      );
      telemetryTimer.unref();
      this.timers.push(telemetryTimer);
    }
    const renewTimer = setInterval(() => {
      void this.renewCa();
    }, this.client.options.caRenewCheckIntervalMs ?? 3_600_000);
    renewTimer.unref();
    this.timers.push(renewTimer);
  }

  private async renewCa(): Promise<void> {
    try {
      const { trust } = this.client.internals;
      if (this.ended || !(await trust.needsRenewal())) return;
      const csr = await trust.csrIfNeeded(true);
      this.logger.info('asking global to renew the zone intermediate CA');
      this.write({ csr: { csr_pem: csr } });
    } catch (err) {
      this.logger.warn('zone CA renewal check failed', { err });
    }
  }

  private async onTrust(trust: TrustMessage): Promise<void> {
    const { trust: zoneTrust } = this.client.internals;
    const result = await zoneTrust.apply(trust);
    this.trustReceived = true;
    if (result.needsCsr) {
      const csr = await zoneTrust.csrIfNeeded(true);
      this.write({ csr: { csr_pem: csr } });
    }
    if (this.syncedOnce) await this.client.maybeReady();
  }

  private async onCatalog(json: Buffer, encoding: string): Promise<void> {
    const parsed = parseCatalog(await decodeCatalog(json, encoding));
    const catalog: ServiceCatalog = { zones: parsed.zones.filter((z) => z.zone !== this.client.zone) };
    if (this.lastCatalog !== undefined && deepEqual(this.lastCatalog, catalog)) return;
    const { store } = this.client.internals;
    const key = { kind: SERVICE_CATALOG_KIND, namespace: '', name: 'catalog' };
    const resource = {
      apiVersion: INTERNAL_API_VERSION,
      kind: SERVICE_CATALOG_KIND,
      metadata: { name: 'catalog' },
      spec: catalog as unknown as Record<string, unknown>,
    };
    for (let attempt = 1; ; attempt++) {
      const existing = await store.get(key);
      if (existing !== undefined && deepEqual(existing.spec, resource.spec)) break;
      try {
        if (existing === undefined) await store.create(resource);
        else await store.update(resource, { expectedResourceVersion: existing.metadata.resourceVersion });
        break;
      } catch (err) {
        const raced = isMeshError(err, ErrorCodes.CONFLICT) || isMeshError(err, ErrorCodes.ALREADY_EXISTS);
        if (!raced || attempt >= 10) throw err;
      }
    }
    this.lastCatalog = catalog;
  }

  private async onChanges(changes: ChangesMessage): Promise<void> {
    if (!this.welcomed) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'global sent Changes before Welcome');
    }
    const payload = await decodePayload(changes.payload, changes.encoding, MAX_KDS_MESSAGE_BYTES * 8);
    const revision = readRevision(changes.revision, 'Changes.revision');
    const { applier } = this.client.internals;
    const errors = await applier.apply(
      { full: changes.full, synced: changes.synced, revision, storeId: this.storeId },
      payload,
    );
    this.client.noteApplied(revision);
    if (errors.length > 0) {
      this.logger.warn('some resources from global could not be applied', {
        count: errors.length,
        first: errors.slice(0, 3).map((e) => `${e.kind}/${e.namespace}/${e.name}: ${e.error}`),
      });
      this.write({ nack: { nonce: changes.nonce, revision: String(revision), errors } });
    } else {
      this.write({ ack: { nonce: changes.nonce, revision: String(revision) } });
    }
    if (changes.synced) {
      this.healthy = true;
      this.syncedOnce = true;
      if (this.trustReceived) await this.client.maybeReady();
    }
  }
}

/** The telemetry period: the option, else MESHFED_ZONE_TELEMETRY_INTERVAL_MS, else 5 s (at least 100 ms). */
function telemetryIntervalMs(options: KdsClientOptions): number {
  const fromEnv = Number(process.env.MESHFED_ZONE_TELEMETRY_INTERVAL_MS);
  const chosen = options.telemetryIntervalMs ?? (Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : 5000);
  return Math.max(100, Math.floor(chosen));
}
