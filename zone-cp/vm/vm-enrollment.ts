/**
 * VM enrollment on a zone CP (issue #8): a VM redeems a join token once
 * (`POST /api/v1/vm/join`) and gets its certificate, trust bundle and
 * WorkloadEntry; from then on it proves itself with its certificate:
 * renewals at the CA (gRPC, mTLS), config over MDS, heartbeats with its
 * probe state and `leave` on the REST API (signed requests). A VM that goes
 * silent is marked unhealthy, then removed (its certificate revoked).
 *
 * `startZoneCp` creates one of these and wires its pieces in: the `vm`
 * token kind, the routes, the revocation-checking caller authenticator for
 * the CA and MDS, and zone-CA TLS on the REST port.
 */

import { createHash } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import { ErrorCodes, MeshError, isMeshError } from '../../core/errors.js';
import type { TokenKindSpec } from '../../core/api/token-routes.js';
import type { TokenService } from '../../core/auth/token-service.js';
import type { Logger } from '../../core/log.js';
import { Counter, type Registry } from '../../core/metrics.js';
import { readCsr } from '../../core/pki/csr.js';
import { formatSpiffeId } from '../../core/pki/spiffe.js';
import type { StoredResource } from '../../core/resource/resource.js';
import type { Store } from '../../core/store/store.js';
import { hashToken, type TokenClaims } from '../../core/token/token.js';
import type { JoinAnswer } from '../../core/vm/vm-join.js';
import { readVmTokenClaims } from '../../core/vm/vm-token-spec.js';
import type { Router } from '../../core/http/router.js';
import { HEARTBEAT_ANNOTATION } from '../discovery/discovery.js';
import { CallerAuthenticator, type CallerAuthOptions, type VmTokenAuthenticator } from '../ca/caller-auth.js';
import type { IssuanceLog } from '../ca/issuance-log.js';
import type { ZoneCaKeeper } from '../ca/zone-ca-keeper.js';
import { RevocationCheckingAuthenticator, joinTokensNotAtCa } from './vm-caller-auth.js';
import {
  buildEntry,
  duplicatesOf,
  entryKey,
  isHealthy,
  isVmEntry,
  joinedAtOf,
  joinedLater,
  listVmEntries,
  loadGroup,
  modifyEntry,
  probeFor,
  putEntry,
  setHealth,
  type GroupView,
  type VmRegistration,
} from './vm-entries.js';
import { JoinLedger } from './vm-join-ledger.js';
import {
  VM_GROUP_LABEL,
  VM_KEY_ANNOTATION,
  VM_SERIAL_ANNOTATION,
  resolveVmSettings,
  workloadEntryName,
  type ResolvedVmSettings,
  type VmSettings,
} from './vm-model.js';
import { ProofVerifier, type ProvenVm } from './vm-request-proof.js';
import { RevokedCertificates } from './vm-revocations.js';
import { registerVmRoutes, type HeartbeatBody, type JoinBody } from './vm-routes.js';
import { ZoneTlsFront } from './vm-tls-front.js';
import { vmTokenKind } from './vm-token-kind.js';

export interface VmEnrollmentOptions {
  zone: string;
  store: Store;
  tokens: TokenService;
  keeper: ZoneCaKeeper;
  issuance: IssuanceLog;
  registry: Registry;
  logger: Logger;
  settings?: VmSettings;
  /** Certificate lifetime when the VM asks for none. Default 1 h. */
  workloadCertTtlSeconds?: number;
  /** Longest lifetime granted. Default 24 h. */
  maxWorkloadCertTtlSeconds?: number;
}

export type { JoinAnswer };

export interface HeartbeatAnswer {
  workloadEntry: string;
  namespace: string;
  healthy: boolean;
  heartbeatIntervalSeconds: number;
  probe: Record<string, unknown> | null;
  /** The entry was missing (removed while the VM was silent) and was created again. */
  recreated: boolean;
}

const DEFAULT_TTL_SECONDS = 3600;
const DEFAULT_MAX_TTL_SECONDS = 24 * 3600;

function keyFingerprintOf(spkiDer: Buffer): string {
  return createHash('sha256').update(spkiDer).digest('hex');
}

export class VmEnrollment {
  readonly revocations: RevokedCertificates;
  /** The CA's hook for VM join tokens: refused there (they are redeemed at join). */
  readonly tokenAuthenticator: VmTokenAuthenticator = joinTokensNotAtCa;
  readonly settings: ResolvedVmSettings;
  private readonly ledger: JoinLedger;
  private readonly proofs: ProofVerifier;
  private readonly logger: Logger;
  private readonly joins: Counter;
  private readonly removals: Counter;
  private tlsFront: ZoneTlsFront | undefined;
  private reapTimer: NodeJS.Timeout | undefined;
  private reaping: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: VmEnrollmentOptions) {
    this.settings = resolveVmSettings(options.settings);
    this.logger = options.logger;
    this.ledger = new JoinLedger(options.store);
    this.revocations = new RevokedCertificates(options.store, options.logger.child('revocations'));
    this.proofs = new ProofVerifier({
      zone: options.zone,
      issuers: () => options.keeper.issuers,
      isRevoked: (serial) => this.revocations.has(serial),
    });
    this.joins = new Counter({
      name: 'meshfed_zone_vm_joins_total',
      help: 'VM join requests, by result (joined, rejoined, refused).',
      labelNames: ['result'],
      registers: [options.registry],
    });
    this.removals = new Counter({
      name: 'meshfed_zone_vm_removals_total',
      help: 'VM WorkloadEntries removed, by reason (left, silent, replaced).',
      labelNames: ['reason'],
      registers: [options.registry],
    });
  }

  /** Loads the revocation list and starts the reaper. */
  async start(): Promise<void> {
    await this.revocations.start();
    this.reapTimer = setInterval(() => {
      void this.reapNow().catch((err: unknown) => this.logger.warn('VM reaper round failed', { err }));
    }, this.settings.reapIntervalMs);
    this.reapTimer.unref();
  }

  /** The `vm` kind for the zone's token routes. */
  tokenKind(): TokenKindSpec {
    return vmTokenKind({
      zone: this.options.zone,
      store: this.options.store,
      bundlePem: () => this.options.keeper.bundlePem,
    });
  }

  /** The gRPC caller authenticator (CA, MDS) with revoked certificates refused. */
  callerAuthenticator(options: CallerAuthOptions): CallerAuthenticator {
    return new RevocationCheckingAuthenticator(options, this.revocations);
  }

  /** Adds the `/api/v1/vm/*` routes; `grpc` is the MDS + CA address as bound. */
  registerRoutes(router: Router, grpc: { host: string; port: number }): void {
    registerVmRoutes(router, {
      bundle: () => ({
        zone: this.options.zone,
        trustDomain: this.options.keeper.bundle?.trustDomain ?? '',
        roots: this.options.keeper.bundle?.roots ?? [],
      }),
      join: (token, body) => this.join(token, body, grpc),
      heartbeat: (proof, body) => this.heartbeat(proof, body),
      leave: (proof, body) => this.leave(proof, body),
      verifyProof: (req, raw) => this.proofs.verify(req, raw),
    });
  }

  /** Serves zone-CA TLS on the REST server's port (see vm-tls-front.ts). */
  serveTls(server: HttpServer, host: string): void {
    this.tlsFront ??= new ZoneTlsFront(this.options.keeper, host, this.logger.child('tls'));
    this.tlsFront.attach(server);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reapTimer !== undefined) clearInterval(this.reapTimer);
    this.revocations.close();
    this.tlsFront?.close();
    await this.reaping?.catch(() => undefined);
  }

  // ---- join ------------------------------------------------------------------------

  private async join(
    token: string,
    body: JoinBody,
    grpc: { host: string; port: number },
  ): Promise<JoinAnswer> {
    let claims: TokenClaims;
    try {
      claims = this.options.tokens.verify(token, ['vm']);
    } catch (err) {
      this.joins.inc({ result: 'refused' });
      if (isMeshError(err, ErrorCodes.TOKEN_INVALID)) {
        throw new MeshError(ErrorCodes.TOKEN_INVALID, `join token refused: ${err.message}`, { cause: err });
      }
      throw err;
    }
    try {
      return await this.redeemAndEnroll(claims, token, body, grpc);
    } catch (err) {
      this.joins.inc({ result: 'refused' });
      throw err;
    }
  }

  private async redeemAndEnroll(
    claims: TokenClaims,
    token: string,
    body: JoinBody,
    grpc: { host: string; port: number },
  ): Promise<JoinAnswer> {
    const { zone, store, keeper } = this.options;
    if (claims.zone !== zone) {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `join token ${claims.jti} is for zone ${claims.zone ?? '(none)'}; this is zone ${zone}: use a token for this zone`,
      );
    }
    // The same claims whether this zone or global signed the token (core/vm/vm-token-spec.ts).
    const { workloadGroup: groupName, namespace, maxUses } = readVmTokenClaims(claims);
    const expiresAt = new Date((claims.exp ?? claims.iat + this.settings.defaultJoinTokenTtlSeconds) * 1000);
    const now = new Date();
    if (now >= expiresAt) {
      throw new MeshError(
        ErrorCodes.TOKEN_INVALID,
        `join token refused: token expired at ${expiresAt.toISOString()}${claims.exp === undefined ? ` (a token created without --ttl is accepted for ${this.settings.defaultJoinTokenTtlSeconds} s)` : ''}: create a new one`,
      );
    }
    const { publicKey } = readCsr(body.csrPem);
    const keyFingerprint = keyFingerprintOf(publicKey.export({ type: 'spki', format: 'der' }));
    const ca = keeper.ca;
    const bundle = keeper.bundle;
    if (ca === undefined || bundle === undefined) {
      throw new MeshError(ErrorCodes.UNAVAILABLE, 'the zone CA is not ready yet (waiting for global): retry');
    }
    const group = await loadGroup(store, namespace, groupName);
    const name = workloadEntryName(group.name, body.address);
    const registration: VmRegistration = {
      address: body.address,
      inboundPort: body.inboundPort,
      labels: body.labels,
      ...(body.servicePort === undefined ? {} : { servicePort: body.servicePort }),
      ...(body.hostname === undefined ? {} : { hostname: body.hostname }),
    };
    // Everything checkable is checked before the token use is counted.
    buildEntry({
      name,
      group,
      registration,
      joinedAt: now.toISOString(),
      keyFingerprint,
      serial: '0',
      healthy: undefined,
      now,
    });
    const redeemed = await this.ledger.redeem({
      tokenHash: hashToken(token),
      tokenId: claims.jti,
      workloadGroup: group.name,
      namespace,
      maxUses,
      expiresAt,
      join: { key: keyFingerprint, workloadEntry: name, address: body.address, at: now.toISOString() },
    });

    const requested = body.certTtlSeconds ?? this.options.workloadCertTtlSeconds ?? DEFAULT_TTL_SECONDS;
    const ttlSeconds = Math.min(requested, this.options.maxWorkloadCertTtlSeconds ?? DEFAULT_MAX_TTL_SECONDS);
    const spiffeId = formatSpiffeId({
      trustDomain: ca.trustDomain,
      namespace: group.namespace,
      serviceAccount: group.serviceAccount,
    });
    const issued = ca.signWorkload(publicKey, { spiffeId, ttlSeconds });
    this.options.issuance.record({
      spiffeId,
      serial: issued.serial,
      notAfter: new Date(Math.floor(issued.notAfter.getTime() / 1000) * 1000),
      issuedAt: now,
      via: 'vm-token',
      namespace: group.namespace,
      workload: name,
    });

    const previous = await store.get(entryKey(group.namespace, name));
    const duplicates = duplicatesOf(await listVmEntries(store), body.address, group.network, {
      namespace: group.namespace,
      name,
    });
    const entry = buildEntry({
      name,
      group,
      registration,
      joinedAt: now.toISOString(),
      keyFingerprint,
      serial: issued.serial,
      healthy: group.probe === undefined ? undefined : false,
      now,
    });
    const { created } = await putEntry(store, entry);
    const replaced: string[] = [];
    for (const duplicate of duplicates) {
      await this.removeEntry(duplicate, 'replaced', `replaced by a newer join of ${group.namespace}/${name}`);
      replaced.push(`${duplicate.metadata.namespace ?? ''}/${duplicate.metadata.name}`);
    }
    if (previous !== undefined && previous.metadata.annotations?.[VM_KEY_ANNOTATION] !== keyFingerprint) {
      // Another machine joined at this address: the one before may no longer use its certificate.
      await this.revokeSerialOf(previous, `replaced by a newer join of ${group.namespace}/${name}`);
    }
    const rejoined = !created || redeemed.repeat;
    this.joins.inc({ result: rejoined ? 'rejoined' : 'joined' });
    this.logger.info(rejoined ? 'VM joined again' : 'VM joined', {
      workloadEntry: `${group.namespace}/${name}`,
      address: body.address,
      spiffeId,
      serial: issued.serial,
      tokenId: claims.jti,
      tokenUses: `${redeemed.uses}/${maxUses === 0 ? 'unlimited' : maxUses}`,
      ...(replaced.length > 0 ? { replaced } : {}),
    });
    return {
      zone,
      trustDomain: bundle.trustDomain,
      workloadGroup: group.name,
      namespace: group.namespace,
      workloadEntry: name,
      serviceAccount: group.serviceAccount,
      spiffeId,
      certChainPem: [issued.certPem, ...keeper.issuingChain].map(withNewline).join(''),
      trustBundlePem: bundle.roots.map(withNewline).join(''),
      serial: issued.serial,
      notAfter: issued.notAfter.toISOString(),
      grpc: this.grpcAddress(grpc),
      inboundPort: body.inboundPort,
      ports: (entry.spec.ports as Record<string, number> | undefined) ?? {},
      labels: entry.metadata.labels ?? {},
      heartbeatIntervalSeconds: this.settings.heartbeatIntervalSeconds,
      probe: probeFor(group, body.servicePort) ?? null,
      alreadyJoined: redeemed.repeat,
      replaced,
      tokenUses: { used: redeemed.uses, limit: maxUses },
    };
  }

  private grpcAddress(bound: { host: string; port: number }): JoinAnswer['grpc'] {
    const advertised = this.settings.grpcAdvertiseAddress;
    if (advertised !== undefined) {
      const colon = advertised.lastIndexOf(':');
      return {
        host: advertised.slice(0, colon).replace(/^\[|\]$/g, ''),
        port: Number(advertised.slice(colon + 1)),
        wildcard: false,
      };
    }
    const wildcard = bound.host === '0.0.0.0' || bound.host === '::' || bound.host === '';
    return { host: bound.host, port: bound.port, wildcard };
  }

  // ---- heartbeat -------------------------------------------------------------------

  private async heartbeat(proof: ProvenVm, body: HeartbeatBody): Promise<HeartbeatAnswer> {
    const { store } = this.options;
    const group = await loadGroup(store, body.namespace, body.workloadGroup);
    this.checkIdentity(proof, group);
    const name = workloadEntryName(group.name, body.registration.address);
    if (name !== body.workloadEntry) {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `WorkloadEntry ${body.workloadEntry} is not the entry of address ${body.registration.address} in group ${group.name} (${name})`,
        { field: 'workloadEntry' },
      );
    }
    const now = new Date();
    const key = entryKey(group.namespace, name);
    const healthy = body.healthy;
    const reason = healthy ? 'ProbeSucceeded' : 'ProbeFailed';
    const updated = await modifyEntry(store, key, (entry) => {
      if (!isVmEntry(entry) || entry.metadata.labels?.[VM_GROUP_LABEL] !== group.name) {
        throw new MeshError(
          ErrorCodes.CONFLICT,
          `WorkloadEntry ${group.namespace}/${name} is no longer this VM's (not in group ${group.name})`,
        );
      }
      entry.metadata.annotations = {
        ...(entry.metadata.annotations ?? {}),
        [HEARTBEAT_ANNOTATION]: now.toISOString(),
      };
      setHealth(entry, healthy, reason, body.message ?? '', now);
      return entry;
    });
    let recreated = false;
    if (updated === undefined) {
      await this.recreate(proof, body, group, name, now);
      recreated = true;
    }
    return {
      workloadEntry: name,
      namespace: group.namespace,
      healthy,
      heartbeatIntervalSeconds: this.settings.heartbeatIntervalSeconds,
      probe: probeFor(group, body.registration.servicePort) ?? null,
      recreated,
    };
  }

  /** The VM's entry is gone (it was silent too long, or deleted): write it again unless a newer join holds its address. */
  private async recreate(
    proof: ProvenVm,
    body: HeartbeatBody,
    group: GroupView,
    name: string,
    now: Date,
  ): Promise<void> {
    const { store } = this.options;
    const self = { joinedAt: body.joinedAt, namespace: group.namespace, name };
    const duplicates = duplicatesOf(
      await listVmEntries(store),
      body.registration.address,
      group.network,
      self,
    );
    const newer = duplicates.find(
      (d) =>
        !joinedLater(self, {
          joinedAt: joinedAtOf(d),
          namespace: d.metadata.namespace ?? '',
          name: d.metadata.name,
        }),
    );
    if (newer !== undefined) {
      throw new MeshError(
        ErrorCodes.CONFLICT,
        `address ${body.registration.address} now belongs to WorkloadEntry ${newer.metadata.namespace ?? ''}/${newer.metadata.name}, joined later: this VM was replaced; join again to take the address back`,
      );
    }
    const entry = buildEntry({
      name,
      group,
      registration: body.registration,
      joinedAt: body.joinedAt,
      keyFingerprint: body.keyFingerprint,
      serial: proof.serial,
      healthy: body.healthy,
      now,
    });
    await putEntry(store, entry);
    for (const duplicate of duplicates) {
      await this.removeEntry(duplicate, 'replaced', `replaced by ${group.namespace}/${name}, joined later`);
    }
    this.logger.info('VM WorkloadEntry created again by its heartbeat', {
      workloadEntry: `${group.namespace}/${name}`,
    });
  }

  private checkIdentity(proof: ProvenVm, group: GroupView): void {
    if (proof.namespace !== group.namespace || proof.serviceAccount !== group.serviceAccount) {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `the certificate is for ${proof.namespace}/${proof.serviceAccount}; WorkloadGroup ${group.namespace}/${group.name} runs as ${group.namespace}/${group.serviceAccount}`,
      );
    }
  }

  // ---- leave -----------------------------------------------------------------------

  private async leave(
    proof: ProvenVm,
    body: { workloadEntry: string; namespace: string },
  ): Promise<{ deleted: boolean; revokedSerials: string[] }> {
    const { store } = this.options;
    const current = await store.get(entryKey(body.namespace, body.workloadEntry));
    const revokedSerials: string[] = [];
    let deleted = false;
    if (current !== undefined) {
      if (!isVmEntry(current)) {
        throw new MeshError(
          ErrorCodes.FORBIDDEN,
          `WorkloadEntry ${body.namespace}/${body.workloadEntry} was not created by a VM join`,
        );
      }
      const spec = current.spec as { serviceAccount?: unknown };
      if (body.namespace !== proof.namespace || spec.serviceAccount !== proof.serviceAccount) {
        throw new MeshError(
          ErrorCodes.FORBIDDEN,
          `the certificate is for ${proof.namespace}/${proof.serviceAccount}; WorkloadEntry ${body.namespace}/${body.workloadEntry} runs as ${String(spec.serviceAccount)}`,
        );
      }
      const serial = current.metadata.annotations?.[VM_SERIAL_ANNOTATION];
      deleted = await this.removeEntry(current, 'left', 'the VM left');
      if (serial !== undefined && serial !== '') revokedSerials.push(serial);
    }
    await this.revocations.revoke({
      serial: proof.serial,
      notAfter: proof.notAfter,
      reason: 'the VM left',
      workloadEntry: `${body.namespace}/${body.workloadEntry}`,
    });
    revokedSerials.push(proof.serial);
    this.logger.info('VM left', {
      workloadEntry: `${body.namespace}/${body.workloadEntry}`,
      deleted,
      revokedSerials,
    });
    return { deleted, revokedSerials: [...new Set(revokedSerials)] };
  }

  // ---- removal and the reaper -----------------------------------------------------

  /** Deletes a VM entry (compare-and-set) and revokes the certificate it was issued. */
  private async removeEntry(
    entry: StoredResource,
    reason: 'left' | 'silent' | 'replaced',
    why: string,
  ): Promise<boolean> {
    const key = entryKey(entry.metadata.namespace ?? '', entry.metadata.name);
    try {
      await this.options.store.delete(key, { expectedResourceVersion: entry.metadata.resourceVersion });
    } catch (err) {
      // Someone else changed or removed it first: their write stands.
      if (isMeshError(err, ErrorCodes.NOT_FOUND) || isMeshError(err, ErrorCodes.CONFLICT)) return false;
      throw err;
    }
    await this.revokeSerialOf(entry, why);
    this.removals.inc({ reason });
    this.logger.info('VM WorkloadEntry removed', {
      workloadEntry: `${key.namespace}/${key.name}`,
      reason: why,
    });
    return true;
  }

  private async revokeSerialOf(entry: StoredResource, why: string): Promise<void> {
    const serial = entry.metadata.annotations?.[VM_SERIAL_ANNOTATION];
    if (serial === undefined || serial === '' || serial === '0') return;
    const maxTtl = this.options.maxWorkloadCertTtlSeconds ?? DEFAULT_MAX_TTL_SECONDS;
    await this.revocations.revoke({
      serial,
      // The exact expiry is not kept on the entry; no certificate lives longer than this.
      notAfter: new Date(Date.now() + maxTtl * 1000),
      reason: why,
      workloadEntry: `${entry.metadata.namespace ?? ''}/${entry.metadata.name}`,
    });
  }

  /** One reaper round: silent VMs marked unhealthy, then removed; expired records pruned. */
  reapNow(now = new Date()): Promise<void> {
    this.reaping ??= this.reap(now).finally(() => {
      this.reaping = undefined;
    });
    return this.reaping;
  }

  private async reap(now: Date): Promise<void> {
    if (this.closed) return;
    const { store } = this.options;
    for (const entry of await listVmEntries(store)) {
      const beat = Date.parse(entry.metadata.annotations?.[HEARTBEAT_ANNOTATION] ?? '');
      if (Number.isNaN(beat)) continue;
      const silentMs = now.getTime() - beat;
      if (silentMs > this.settings.removeAfterMs) {
        await this.removeEntry(entry, 'silent', `no heartbeat for ${Math.round(silentMs / 1000)} s`);
      } else if (silentMs > this.settings.unhealthyAfterMs && isHealthy(entry)) {
        await modifyEntry(store, entryKey(entry.metadata.namespace ?? '', entry.metadata.name), (current) => {
          const currentBeat = Date.parse(current.metadata.annotations?.[HEARTBEAT_ANNOTATION] ?? '');
          // A heartbeat arrived since the list: leave it be.
          if (currentBeat !== beat) return undefined;
          setHealth(
            current,
            false,
            'HeartbeatTimeout',
            `no heartbeat for ${Math.round(silentMs / 1000)} s`,
            now,
          );
          return current;
        });
        this.logger.info('VM missed its heartbeats: marked unhealthy', {
          workloadEntry: `${entry.metadata.namespace ?? ''}/${entry.metadata.name}`,
        });
      }
    }
    await this.revocations.prune(now);
    await this.ledger.prune(now);
  }
}

function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : pem + '\n';
}
