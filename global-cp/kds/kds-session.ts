/**
 * One zone's KDS stream on the global side: authenticate, negotiate, send
 * trust and catalog, then keep the zone in sync — a full resync with
 * deletions, or only the changes after the zone's revision — and follow
 * the store live. Incoming messages (acks, inventory, status, CSRs) are
 * handled one at a time in arrival order.
 *
 * Changes waiting for the zone are kept per object (the latest state wins)
 * and bounded in bytes. Past the bound the queue is dropped and the zone
 * gets a full resync instead, produced chunk by chunk at the pace it reads —
 * so a zone that is merely behind catches up with bounded memory (dropping
 * its stream would only make it come back with the same backlog). A zone
 * that reads nothing for the stall timeout is cut off. Nothing here waits
 * on another zone.
 */

import { randomUUID } from 'node:crypto';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { ErrorCodes, MeshError, isMeshError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { TokenService } from '../../core/auth/token-service.js';
import type { TokenClaims } from '../../core/token/token.js';
import type { CertificateAuthority } from '../../core/pki/ca.js';
import { readCsr } from '../../core/pki/csr.js';
import type { StoredResource } from '../../core/resource/resource.js';
import { isDns1123Label } from '../../core/resource/dns-name.js';
import type { Store, Watch, WatchEvent } from '../../core/store/store.js';
import { grpcStatusOf } from '../../core/kds/kds-grpc.js';
import { parseInventory } from '../../core/kds/kds-inventory.js';
import {
  encodePayload,
  readRevision,
  upsertSize,
  type AckMessage,
  type DeletionEntry,
  type GlobalMessage,
  type HelloMessage,
  type NackMessage,
  type PayloadEncoding,
  type TrustMessage,
  type ZoneMessage,
  type ZoneStatusMessage,
} from '../../core/kds/kds-messages.js';
import {
  KdsCapability,
  appliesToZone,
  negotiateCapabilities,
  negotiateVersion,
  syncedKinds,
} from '../../core/kds/kds-protocol.js';
import type { ZoneCatalog } from './kds-catalog.js';
import type { KdsMetrics } from './kds-metrics.js';
import { TokenBucket } from '../../core/token-bucket.js';
import type { Semaphore } from './kds-semaphore.js';
import { StreamSender } from './kds-sender.js';
import type { KdsSettings } from './kds-settings.js';
import type { ZoneRegistry } from './kds-zone-registry.js';
import { parseZoneTelemetry, type ZoneTelemetrySink } from '../../core/telemetry/telemetry-report.js';

/** What every session of one server shares. */
export interface SessionContext {
  store: Store;
  tokens: TokenService;
  trustRoot: CertificateAuthority;
  registry: ZoneRegistry;
  catalog: ZoneCatalog;
  storeId: string;
  replicaId: string;
  softwareVersion: string;
  settings: KdsSettings;
  metrics: KdsMetrics;
  logger: Logger;
  /** Bounds the full resyncs being listed and encoded at once. */
  resyncPermits: Semaphore;
  /** Receives each zone's telemetry summaries (the dashboard); absent: they are dropped. */
  telemetry?: ZoneTelemetrySink;
  /** Makes the session the zone's stream on this replica (ending an older one). */
  attach(session: ZoneSession): void;
  detach(session: ZoneSession): void;
}

interface PendingUpsert {
  type: 'upsert';
  key: string;
  revision: number;
  json: string;
  bytes: number;
}

interface PendingDeletion {
  type: 'delete';
  key: string;
  entry: DeletionEntry;
  bytes: number;
}

type PendingChange = PendingUpsert | PendingDeletion;

interface EncodedChanges {
  payload: Buffer;
  count: number;
  /** kind/namespace/name of every change, to clear NACK errors when acked. */
  keys: string[];
}

interface Unacked {
  count: number;
  sentAt: number;
  keys: string[];
  /** The message that completes the stream's initial sync (its ack is news even when empty). */
  firstSync: boolean;
}

const MAX_ERRORS = 20;
const MAX_ERROR_LENGTH = 1024;
/** A zone's software version as stored on its Zone (MDS keeps as much of a proxy's). */
const MAX_VERSION_LENGTH = 100;
/** setTimeout's limit; a longer token lifetime is re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function keyOf(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

/** The object as a user applied it: what a zone stores (server metadata and status stay at global). */
export function wireJson(object: StoredResource): string {
  const m = object.metadata;
  return JSON.stringify({
    apiVersion: object.apiVersion,
    kind: object.kind,
    metadata: {
      name: m.name,
      ...(m.namespace ? { namespace: m.namespace } : {}),
      ...(m.labels && Object.keys(m.labels).length > 0 ? { labels: m.labels } : {}),
      ...(m.annotations && Object.keys(m.annotations).length > 0 ? { annotations: m.annotations } : {}),
    },
    spec: object.spec,
  });
}

export class ZoneSession {
  readonly id = randomUUID();
  zone = '';
  private claims: TokenClaims | undefined;
  private token = '';
  private state: 'hello' | 'active' | 'closed' = 'hello';
  private revocationPushQueued = false;
  private chain: Promise<void> = Promise.resolve();
  private readonly sender: StreamSender;
  private readonly bucket: TokenBucket;
  private readonly syncedKindSet = new Set(syncedKinds());
  private helloTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private progressTimer: NodeJS.Timeout | undefined;
  private watch: Watch | undefined;
  private capabilities = new Set<string>();
  private encoding: PayloadEncoding = 'identity';

  /** Every store event up to here has been seen. */
  private watchRevision = 0;
  /** Revision carried by the last Changes sent. */
  private sentRevision = 0;
  /** Per kind, the revision its full-resync list reflected: older events of that kind are already in. */
  private readonly listRevisions = new Map<string, number>();
  private pending = new Map<string, PendingChange>();
  private pendingBytes = 0;
  private producing = false;
  private flushScheduled = false;
  /** A resume is caught up once watchRevision reaches this. */
  private catchUpTarget: number | undefined;
  private syncedSent = false;
  private firstSyncSent = false;
  /** The pending queue overflowed and was dropped: the next flush is a full resync. */
  private overflowed = false;
  private gotWatchEvent = false;
  private nonceCounter = 0;
  private readonly unacked = new Map<string, Unacked>();
  private lag = 0;
  private appliedRevision = 0;
  private catalogGeneration = -1;
  private zoneErrors: string[] = [];
  private readonly nackErrors = new Map<string, string>();
  private disconnectWrite: Promise<void> | undefined;

  constructor(
    private readonly call: ServerDuplexStream<ZoneMessage, GlobalMessage>,
    private readonly ctx: SessionContext,
  ) {
    const { settings } = ctx;
    this.sender = new StreamSender(call, {
      lowWaterBytes: Math.max(2 * settings.chunkBytes, 256 * 1024),
      stallTimeoutMs: settings.stallTimeoutMs,
      onStall: (bytes, ms) =>
        this.fail(
          new MeshError(
            ErrorCodes.RESOURCE_EXHAUSTED,
            `zone ${this.zone} read nothing for ${Math.round(ms / 1000)} s while ${bytes} bytes waited for it; dropping the stream (it resyncs on reconnect)`,
          ),
          'stalled',
        ),
    });
    this.bucket = new TokenBucket(settings.maxMessagesPerSecond, settings.messageBurst);
  }

  /** The token id this stream authenticated with (for revocation). */
  get tokenId(): string {
    return this.claims?.jti ?? '';
  }

  start(): void {
    const peer = this.peer();
    this.call.on('data', (message: ZoneMessage) => this.onData(message));
    this.call.on('end', () => this.finish('the zone closed the stream'));
    this.call.on('cancelled', () => this.finish('the zone went away'));
    this.call.on('error', () => this.finish('the stream failed'));
    this.call.on('close', () => this.finish('the stream closed'));
    try {
      this.authenticate();
    } catch (err) {
      this.fail(err);
      return;
    }
    this.helloTimer = setTimeout(
      () =>
        this.fail(
          new MeshError(
            ErrorCodes.INVALID_ARGUMENT,
            `no Hello within ${this.ctx.settings.helloTimeoutMs} ms of opening the stream`,
          ),
        ),
      this.ctx.settings.helloTimeoutMs,
    );
    this.helloTimer.unref();
    this.ctx.logger.debug('KDS stream opened', { peer });
  }

  /** Re-checks the token (after the revocation watch restarted, it may have missed an event). */
  recheckToken(): void {
    if (this.state === 'closed' || this.token === '') return;
    try {
      this.ctx.tokens.verify(this.token, ['zone']);
    } catch (err) {
      this.fail(err, 'token');
    }
  }

  /** Sends the catalog if it changed since the last one this zone got. */
  pushCatalog(): void {
    if (this.state !== 'active' || this.catalogGeneration === this.ctx.catalog.generation) return;
    this.ctx.catalog
      .encoded(this.encoding)
      .then(({ generation, payload }) => {
        // Encoding is async: a newer catalog may have gone out meanwhile.
        if (this.state !== 'active' || generation <= this.catalogGeneration) return;
        this.catalogGeneration = generation;
        this.sender.send({ catalog: { json: payload, encoding: this.encoding } }, payload.length + 16);
        this.ctx.metrics.messagesSent.inc({ type: 'catalog' });
      })
      .catch((err: unknown) => this.fail(err, 'internal'));
  }

  /**
   * Ends the stream with `err` as its status (the zone sees the code and
   * message), stops following the store and records the disconnect.
   */
  fail(err: unknown, reason?: string): void {
    if (this.state === 'closed') return;
    const wasActive = this.state === 'active';
    const status = grpcStatusOf(err);
    const code = isMeshError(err) ? err.code : ErrorCodes.INTERNAL;
    if (!isMeshError(err)) this.ctx.logger.error('KDS session failed unexpectedly', { zone: this.zone, err });
    if (wasActive) {
      this.ctx.metrics.dropped.inc({ reason: reason ?? code });
      this.ctx.logger.warn('ending KDS stream', { zone: this.zone, reason: status.details });
    } else {
      this.ctx.metrics.refusals.inc({ code });
      this.ctx.logger.warn('refused KDS stream', {
        zone: this.zone || undefined,
        peer: this.peer(),
        reason: status.details,
      });
    }
    this.teardown(status.details);
    try {
      this.call.emit('error', status);
    } catch {
      // The call already ended; nothing left to tell.
    }
  }

  /** Resolves once the disconnect is recorded (server shutdown waits for it). */
  async closed(): Promise<void> {
    await this.disconnectWrite;
  }

  private peer(): string {
    try {
      return this.call.getPeer();
    } catch {
      return 'unknown';
    }
  }

  private finish(reason: string): void {
    if (this.state === 'closed') return;
    if (this.state === 'active') this.ctx.logger.info('KDS stream ended', { zone: this.zone, reason });
    this.teardown(reason);
    try {
      this.call.end();
    } catch {
      // Already ended.
    }
  }

  private teardown(reason: string): void {
    const wasActive = this.state === 'active';
    this.state = 'closed';
    for (const timer of [this.helloTimer, this.expiryTimer, this.progressTimer]) {
      if (timer !== undefined) clearTimeout(timer);
    }
    this.watch?.close();
    this.watch = undefined;
    this.sender.close();
    this.pending.clear();
    this.pendingBytes = 0;
    // Refused streams too: the server forgets every session that ends.
    this.ctx.detach(this);
    if (wasActive) {
      this.ctx.metrics.streams.dec();
      this.disconnectWrite = this.ctx.registry
        .disconnected(this.zone, this.id, reason)
        .catch((err: unknown) =>
          this.ctx.logger.warn('could not record the zone disconnect', { zone: this.zone, err }),
        );
    }
  }

  private authenticate(): void {
    const header = this.call.metadata.get('authorization')[0];
    if (typeof header !== 'string' || header === '') {
      throw new MeshError(
        ErrorCodes.UNAUTHENTICATED,
        'missing zone token: send "authorization: Bearer <token>" metadata (meshfed token create --kind zone --zone <zone>)',
      );
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match?.[1])
      throw new MeshError(
        ErrorCodes.UNAUTHENTICATED,
        'malformed authorization metadata: expected "Bearer <token>"',
      );
    this.token = match[1];
    this.claims = this.ctx.tokens.verify(this.token, ['zone']);
    if (this.claims.zone === undefined) {
      throw new MeshError(ErrorCodes.TOKEN_INVALID, 'the zone token carries no zone claim');
    }
  }

  private onData(message: ZoneMessage): void {
    if (this.state === 'closed') return;
    if (!this.bucket.take()) {
      const { maxMessagesPerSecond, messageBurst } = this.ctx.settings;
      this.fail(
        new MeshError(
          ErrorCodes.RESOURCE_EXHAUSTED,
          `zone ${this.zone || '(before Hello)'} sent more than ${maxMessagesPerSecond} messages/s (burst ${messageBurst}); closing the stream`,
        ),
        'flood',
      );
      return;
    }
    this.chain = this.chain
      .then(() => this.handle(message))
      .catch((err: unknown) => this.fail(err, isMeshError(err) ? err.code : 'internal'));
  }

  private async handle(message: ZoneMessage): Promise<void> {
    if (this.state === 'closed') return;
    const type = message.message;
    this.ctx.metrics.messagesReceived.inc({ type: type ?? 'unknown' });
    if (this.state === 'hello') {
      if (type !== 'hello' || !message.hello) {
        throw new MeshError(
          ErrorCodes.INVALID_ARGUMENT,
          `the first message on a KDS stream must be Hello, got ${type ?? 'an empty message'}`,
        );
      }
      await this.onHello(message.hello);
      return;
    }
    switch (type) {
      case 'hello':
        throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'Hello sent twice on one stream');
      case 'ack':
        if (message.ack) this.onAck(message.ack, []);
        return;
      case 'nack':
        if (message.nack) this.onNack(message.nack);
        return;
      case 'inventory':
        if (message.inventory)
          this.ctx.catalog.reportInventory(this.zone, parseInventory(message.inventory.json, this.zone));
        return;
      case 'status':
        if (message.status) this.onStatus(message.status);
        return;
      case 'csr':
        if (message.csr) this.sendTrust(message.csr.csr_pem);
        return;
      case 'telemetry':
        if (message.telemetry) this.onTelemetry(message.telemetry.json);
        return;
      default:
        // A newer zone's message this version does not know: ignore it, as protobuf ignores unknown fields.
        this.ctx.logger.debug('ignoring an unknown KDS message', { zone: this.zone });
    }
  }

  private async onHello(hello: HelloMessage): Promise<void> {
    const { settings, registry } = this.ctx;
    if (this.helloTimer !== undefined) clearTimeout(this.helloTimer);
    const zone = hello.zone;
    if (!isDns1123Label(zone)) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `Hello.zone ${JSON.stringify(zone)} is not a zone name (a DNS-1123 label)`,
        {
          field: 'zone',
        },
      );
    }
    this.zone = zone;
    const claimed = this.claims?.zone;
    if (claimed !== zone) {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `the token is for zone "${claimed ?? ''}" but the stream says it is zone "${zone}"; a zone token works only for its own zone`,
      );
    }
    const max = hello.protocol_version;
    const min = hello.min_protocol_version === 0 ? max : hello.min_protocol_version;
    const version = negotiateVersion({ min, max }, settings.protocol);
    this.capabilities = new Set(negotiateCapabilities(hello.capabilities, settings.capabilities, version));
    this.encoding = this.capabilities.has(KdsCapability.GZIP) ? 'gzip' : 'identity';
    const zoneObject = await registry.ensureZone(zone);
    if (zoneObject.spec.enabled === false) {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `zone "${zone}" is disabled (Zone ${zone} has spec.enabled=false); enable it to let the zone connect`,
      );
    }
    if (this.state === 'closed') return;
    this.state = 'active';
    this.ctx.metrics.streams.inc();
    this.ctx.attach(this);
    this.armExpiry();
    const applied = readRevision(hello.applied_revision, 'Hello.applied_revision');
    const resume =
      this.capabilities.has(KdsCapability.RESUME) && hello.store_id === this.ctx.storeId && applied > 0;
    await registry.connected(zone, this.id, {
      address: this.peer(),
      connectedAt: new Date().toISOString(),
      version: hello.software_version.slice(0, MAX_VERSION_LENGTH),
      protocolVersion: version,
      lag: 0,
      syncMode: resume ? 'delta' : 'full',
      appliedRevision: applied,
    });
    if (this.state !== 'active') return;
    this.ctx.logger.info('zone connected', {
      zone,
      peer: this.peer(),
      protocolVersion: version,
      capabilities: [...this.capabilities],
      appliedRevision: applied,
      storeIdMatches: hello.store_id === this.ctx.storeId,
    });
    this.sender.send(
      {
        welcome: {
          protocol_version: version,
          capabilities: [...this.capabilities],
          software_version: this.ctx.softwareVersion,
          store_id: this.ctx.storeId,
          replica: this.ctx.replicaId,
        },
      },
      256,
    );
    this.ctx.metrics.messagesSent.inc({ type: 'welcome' });
    this.sendTrust(hello.csr_pem);
    this.pushCatalog();
    if (resume) await this.startResume(applied);
    else await this.fullResync();
  }

  private armExpiry(): void {
    const exp = this.claims?.exp;
    if (exp === undefined) return;
    const delay = exp * 1000 - Date.now();
    this.expiryTimer = setTimeout(
      () => {
        if (Date.now() >= exp * 1000) {
          this.fail(
            new MeshError(
              ErrorCodes.TOKEN_INVALID,
              `the zone token expired at ${new Date(exp * 1000).toISOString()}`,
            ),
            'token',
          );
        } else {
          this.armExpiry();
        }
      },
      Math.min(Math.max(0, delay), MAX_TIMER_MS),
    );
    this.expiryTimer.unref();
  }

  /**
   * Resend trust (no CSR answer) so the zone learns a token revoked at
   * global. Revocations arriving together (a relist) send one message.
   */
  pushRevocations(): void {
    if (this.zone === '' || this.revocationPushQueued) return;
    this.revocationPushQueued = true;
    queueMicrotask(() => {
      this.revocationPushQueued = false;
      if (this.state === 'active') this.sendTrust('');
    });
  }

  private sendTrust(csrPem: string): void {
    const { trustRoot, tokens } = this.ctx;
    let chain = '';
    let csrError = '';
    if (csrPem !== '') {
      try {
        chain = this.signIntermediate(csrPem, trustRoot);
      } catch (err) {
        csrError = isMeshError(err) ? `${err.code}: ${err.message}` : String(err);
        this.ctx.logger.warn('refused a zone CSR', { zone: this.zone, reason: csrError });
      }
    }
    const trust: TrustMessage = {
      trust_domain: trustRoot.trustDomain,
      roots_pem: [trustRoot.certPem],
      intermediate_chain_pem: chain,
      token_public_keys_pem: [tokens.publicKeyPem],
      csr_error: csrError,
      revoked_token_ids: tokens.revokedTokenIds(),
    };
    const revokedBytes = trust.revoked_token_ids?.reduce((n, id) => n + id.length + 2, 0) ?? 0;
    this.sender.send({ trust }, 4096 + chain.length + revokedBytes);
    this.ctx.metrics.messagesSent.inc({ type: 'trust' });
  }

  /** The root signs the zone's own key (path length 0); the root key never leaves global. */
  private signIntermediate(csrPem: string, root: CertificateAuthority): string {
    const { publicKey } = readCsr(csrPem);
    const name = `meshfed zone ${this.zone} CA`.slice(0, 64);
    const certPem = root.signIntermediate(publicKey, {
      name,
      ttlSeconds: this.ctx.settings.intermediateTtlSeconds,
    });
    this.ctx.logger.info('signed a zone intermediate CA', { zone: this.zone });
    return certPem + root.chainPem;
  }

  // ---- sync ----------------------------------------------------------------

  private async startResume(applied: number): Promise<void> {
    const target = await this.ctx.store.currentRevision();
    if (this.state !== 'active') return;
    if (applied > target) {
      // The zone holds revisions this store never reached: not the same history.
      await this.fullResync();
      return;
    }
    this.ctx.metrics.resyncs.inc({ mode: 'delta' });
    this.catchUpTarget = target;
    this.watchRevision = applied;
    this.sentRevision = applied;
    this.openWatch(applied, true);
    this.scheduleFlush();
  }

  /**
   * Sends every object for the zone in chunks, then follows the store from
   * the oldest list revision. The last chunk says `synced`: the zone then
   * deletes whatever global objects it holds that were not named. Listing
   * and encoding hold one of a few server-wide permits; sending the encoded
   * chunks happens at the zone's pace without one.
   */
  private async fullResync(): Promise<void> {
    const { store, settings } = this.ctx;
    this.ctx.metrics.resyncs.inc({ mode: 'full' });
    this.ctx.registry.update(this.zone, this.id, { syncMode: 'full' });
    this.watch?.close();
    this.watch = undefined;
    this.pending.clear();
    this.pendingBytes = 0;
    this.catchUpTarget = undefined;
    this.syncedSent = false;
    this.overflowed = false;
    this.listRevisions.clear();
    this.producing = true;
    try {
      const release = await this.ctx.resyncPermits.acquire();
      const encoded: EncodedChanges[] = [];
      let snapshotRevision = 0;
      let objects = 0;
      try {
        if (this.state !== 'active') return;
        const items: StoredResource[] = [];
        for (const kind of this.syncedKindSet) {
          const listed = await store.list({ kind });
          if (this.state !== 'active') return;
          this.listRevisions.set(kind, listed.revision);
          for (const item of listed.items) if (appliesToZone(item, this.zone)) items.push(item);
        }
        snapshotRevision = Math.min(...this.listRevisions.values());
        objects = items.length;
        this.watchRevision = snapshotRevision;
        this.openWatch(snapshotRevision, false);
        let chunk: PendingUpsert[] = [];
        let bytes = 0;
        for (const item of items) {
          const json = wireJson(item);
          const size = upsertSize(json);
          if (bytes + size > settings.chunkBytes && chunk.length > 0) {
            encoded.push(await this.encode(chunk, []));
            chunk = [];
            bytes = 0;
          }
          const m = item.metadata;
          chunk.push({
            type: 'upsert',
            key: keyOf(item.kind, m.namespace ?? '', m.name),
            revision: Number(m.resourceVersion),
            json,
            bytes: size,
          });
          bytes += size;
        }
        encoded.push(await this.encode(chunk, []));
      } finally {
        release();
      }
      for (let i = 0; i < encoded.length; i++) {
        const last = i === encoded.length - 1;
        await this.sender.whenWritable();
        if (this.state !== 'active') return;
        const part = encoded[i];
        if (part !== undefined) {
          this.sendEncoded({ full: true, synced: last, revision: last ? snapshotRevision : 0 }, part);
        }
      }
      this.syncedSent = true;
      this.sentRevision = snapshotRevision;
      this.ctx.logger.info('full resync sent', {
        zone: this.zone,
        objects,
        chunks: encoded.length,
        revision: snapshotRevision,
      });
    } finally {
      this.producing = false;
    }
    this.scheduleFlush();
  }

  private openWatch(fromRevision: number, resuming: boolean): void {
    this.gotWatchEvent = false;
    const watch = this.ctx.store.watch(
      { fromRevision },
      {
        onEvent: (event) => {
          if (this.watch === watch) this.onStoreEvent(event);
        },
        onError: (err) => {
          if (this.state !== 'active' || this.watch !== watch) return;
          if (resuming && !this.gotWatchEvent && isMeshError(err, ErrorCodes.REVISION_TOO_OLD)) {
            this.ctx.logger.info('zone revision is older than global history; full resync', {
              zone: this.zone,
              fromRevision,
            });
            this.chain = this.chain
              .then(() => this.fullResync())
              .catch((e: unknown) => this.fail(e, 'internal'));
            return;
          }
          this.fail(
            new MeshError(
              ErrorCodes.UNAVAILABLE,
              `global's store watch ended (${err.message}); reconnect to resume`,
            ),
            'store',
          );
        },
      },
    );
    this.watch = watch;
  }

  private onStoreEvent(event: WatchEvent): void {
    if (this.state !== 'active') return;
    this.gotWatchEvent = true;
    if (event.revision <= this.watchRevision) return;
    this.watchRevision = event.revision;
    const object = event.object;
    if (this.syncedKindSet.has(object.kind) && !this.overflowed) {
      const listed = this.listRevisions.get(object.kind);
      if (listed === undefined || event.revision > listed) this.addPending(event);
    }
    this.scheduleFlush();
  }

  private addPending(event: WatchEvent): void {
    const object = event.object;
    const namespace = object.metadata.namespace ?? '';
    const key = keyOf(object.kind, namespace, object.metadata.name);
    const previous = this.pending.get(key);
    if (previous !== undefined) this.pendingBytes -= previous.bytes;
    let change: PendingChange;
    if (event.type !== 'DELETED' && appliesToZone(object, this.zone)) {
      const json = wireJson(object);
      change = { type: 'upsert', key, revision: event.revision, json, bytes: upsertSize(json) };
    } else {
      // Deleted, or relabelled for another zone: either way the zone must drop it.
      const entry: DeletionEntry = {
        revision: event.revision,
        kind: object.kind,
        namespace,
        name: object.metadata.name,
      };
      change = { type: 'delete', key, entry, bytes: key.length + 48 };
    }
    this.pending.set(key, change);
    this.pendingBytes += change.bytes;
    const queued = this.pendingBytes + this.sender.inFlightBytes;
    if (queued > this.ctx.settings.sendQueueBytes) {
      // Memory stays bounded: forget the queue, resend everything once the zone reads again.
      this.ctx.logger.warn('changes queued for a zone exceed the bound; it will get a full resync', {
        zone: this.zone,
        queuedBytes: queued,
        limit: this.ctx.settings.sendQueueBytes,
      });
      this.ctx.metrics.overflows.inc();
      this.overflowed = true;
      this.pending.clear();
      this.pendingBytes = 0;
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.state !== 'active') return;
    this.flushScheduled = true;
    // setImmediate: events of one store batch (or one tick) go out as one message.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush().catch((err: unknown) => this.fail(err, 'internal'));
    });
  }

  private catchUpDone(): boolean {
    return !this.syncedSent && this.catchUpTarget !== undefined && this.watchRevision >= this.catchUpTarget;
  }

  private async flush(): Promise<void> {
    if (this.producing || this.state !== 'active') return;
    if (this.overflowed) {
      this.producing = true;
      try {
        await this.sender.whenWritable();
      } finally {
        this.producing = false;
      }
      if (this.state === 'active' && this.overflowed) await this.fullResync();
      return;
    }
    if (this.pending.size === 0 && !this.catchUpDone()) {
      this.armProgress();
      return;
    }
    this.producing = true;
    try {
      await this.sender.whenWritable();
      if (this.state !== 'active') return;
      const changes = [...this.pending.values()];
      this.pending = new Map();
      this.pendingBytes = 0;
      const revision = this.watchRevision;
      const synced = this.syncedSent || this.catchUpDone();
      const chunks: PendingChange[][] = [];
      let chunk: PendingChange[] = [];
      let bytes = 0;
      for (const change of changes) {
        if (bytes + change.bytes > this.ctx.settings.chunkBytes && chunk.length > 0) {
          chunks.push(chunk);
          chunk = [];
          bytes = 0;
        }
        chunk.push(change);
        bytes += change.bytes;
      }
      chunks.push(chunk);
      for (let i = 0; i < chunks.length; i++) {
        const last = i === chunks.length - 1;
        const part = chunks[i] ?? [];
        await this.sender.whenWritable();
        if (this.state !== 'active') return;
        await this.sendChanges({
          full: false,
          synced: last && synced,
          revision: last ? revision : 0,
          upserts: part.filter((c): c is PendingUpsert => c.type === 'upsert'),
          deletions: part.filter((c): c is PendingDeletion => c.type === 'delete').map((c) => c.entry),
        });
      }
      if (synced && !this.syncedSent) {
        this.syncedSent = true;
        this.ctx.logger.info('zone caught up', { zone: this.zone, revision });
      }
      this.sentRevision = revision;
    } finally {
      this.producing = false;
    }
    if (this.pending.size > 0 || this.catchUpDone()) this.scheduleFlush();
    else this.armProgress();
  }

  /** After unrelated writes, tell the zone its revision may move on (so its resume point stays in history). */
  private armProgress(): void {
    if (
      this.progressTimer !== undefined ||
      !this.syncedSent ||
      !this.capabilities.has(KdsCapability.PROGRESS) ||
      this.watchRevision <= this.sentRevision
    ) {
      return;
    }
    this.progressTimer = setTimeout(() => {
      this.progressTimer = undefined;
      if (this.state !== 'active' || this.producing || this.pending.size > 0) return;
      if (this.watchRevision <= this.sentRevision) return;
      const revision = this.watchRevision;
      this.producing = true;
      this.sendChanges({ full: false, synced: true, revision, upserts: [], deletions: [] })
        .then(() => {
          this.sentRevision = Math.max(this.sentRevision, revision);
        })
        .catch((err: unknown) => this.fail(err, 'internal'))
        .finally(() => {
          this.producing = false;
          if (this.pending.size > 0) this.scheduleFlush();
        });
    }, this.ctx.settings.progressIntervalMs);
    this.progressTimer.unref();
  }

  private async sendChanges(batch: {
    full: boolean;
    synced: boolean;
    revision: number;
    upserts: PendingUpsert[];
    deletions: DeletionEntry[];
  }): Promise<void> {
    await this.sender.whenWritable();
    if (this.state !== 'active') return;
    const encoded = await this.encode(batch.upserts, batch.deletions);
    if (this.state !== 'active') return;
    this.sendEncoded(batch, encoded);
  }

  private async encode(upserts: PendingUpsert[], deletions: DeletionEntry[]): Promise<EncodedChanges> {
    return {
      payload: await encodePayload(upserts, deletions, this.encoding),
      count: upserts.length + deletions.length,
      keys: [...upserts.map((u) => u.key), ...deletions.map((d) => keyOf(d.kind, d.namespace, d.name))],
    };
  }

  private sendEncoded(
    header: { full: boolean; synced: boolean; revision: number },
    encoded: EncodedChanges,
  ): void {
    const nonce = String(++this.nonceCounter);
    const firstSync = header.synced && !this.firstSyncSent;
    if (firstSync) this.firstSyncSent = true;
    this.unacked.set(nonce, {
      count: encoded.count,
      firstSync,
      sentAt: performance.now(),
      keys: encoded.keys,
    });
    this.lag += encoded.count;
    this.sender.send(
      {
        changes: {
          nonce,
          full: header.full,
          synced: header.synced,
          revision: String(header.revision),
          encoding: this.encoding,
          payload: encoded.payload,
          count: encoded.count,
        },
      },
      encoded.payload.length + 64,
    );
    const { metrics } = this.ctx;
    metrics.messagesSent.inc({ type: 'changes' });
    metrics.bytesSent.inc(encoded.payload.length);
    metrics.resourcesSent.inc(encoded.count);
  }

  // ---- from the zone ---------------------------------------------------------

  private onAck(ack: AckMessage, failed: string[]): void {
    const entry = this.unacked.get(ack.nonce);
    if (entry === undefined) return;
    this.unacked.delete(ack.nonce);
    this.lag = Math.max(0, this.lag - entry.count);
    const revision = readRevision(ack.revision, 'Ack.revision');
    if (revision > this.appliedRevision) this.appliedRevision = revision;
    const failedSet = new Set(failed);
    let errorsChanged = false;
    for (const key of entry.keys) {
      if (!failedSet.has(key) && this.nackErrors.delete(key)) errorsChanged = true;
    }
    // Progress marks are acknowledged too; recording those would write the
    // Zone on every unrelated write, which itself is a write: only news counts.
    if (entry.count === 0 && !errorsChanged && !entry.firstSync) return;
    if (entry.count > 0) this.ctx.metrics.ackLatency.observe((performance.now() - entry.sentAt) / 1000);
    this.ctx.registry.update(this.zone, this.id, {
      appliedRevision: this.appliedRevision,
      lastSync: new Date().toISOString(),
      lag: this.lag,
      ...(errorsChanged || failed.length > 0 ? { errors: this.currentErrors() } : {}),
    });
  }

  private onNack(nack: NackMessage): void {
    const entry = this.unacked.get(nack.nonce);
    // A NACK of nothing this stream sent (or already answered) names no resource of ours:
    // recording its errors would let a zone grow this session's memory at will.
    if (entry === undefined) return;
    const sent = new Set(entry.keys);
    const failed: string[] = [];
    for (const e of nack.errors.slice(0, 1000)) {
      const key = keyOf(e.kind, e.namespace, e.name);
      if (!sent.has(key)) continue;
      failed.push(key);
      const where = e.namespace === '' ? `${e.kind} ${e.name}` : `${e.kind} ${e.namespace}/${e.name}`;
      this.nackErrors.set(key, `${where}: ${e.error}`.slice(0, MAX_ERROR_LENGTH));
    }
    this.ctx.metrics.nacks.inc(nack.errors.length);
    this.ctx.logger.warn('zone could not apply some resources', {
      zone: this.zone,
      errors: nack.errors.slice(0, 5).map((e) => `${e.kind}/${e.namespace}/${e.name}: ${e.error}`),
      count: nack.errors.length,
    });
    this.onAck({ nonce: nack.nonce, revision: nack.revision }, failed);
  }

  private onTelemetry(json: Buffer): void {
    const sink = this.ctx.telemetry;
    if (sink === undefined) return;
    try {
      sink.report(this.zone, parseZoneTelemetry(json, this.zone));
    } catch (err) {
      // Telemetry is best effort: a bad summary is logged and dropped, the sync goes on.
      this.ctx.logger.warn('dropped a zone telemetry summary', { zone: this.zone, err });
    }
  }

  private onStatus(status: ZoneStatusMessage): void {
    this.zoneErrors = status.errors.slice(0, MAX_ERRORS).map((e) => e.slice(0, MAX_ERROR_LENGTH));
    this.ctx.registry.update(this.zone, this.id, {
      proxies: status.connected_proxies,
      ...(status.software_version === ''
        ? {}
        : { version: status.software_version.slice(0, MAX_VERSION_LENGTH) }),
      errors: this.currentErrors(),
    });
  }

  private currentErrors(): string[] {
    return [...this.zoneErrors, ...[...this.nackErrors.values()].map((e) => `not applied: ${e}`)].slice(
      0,
      MAX_ERRORS,
    );
  }
}
