/**
 * `meshfed.mds.v1.ProxyDiscovery`: the sessions of every connected proxy,
 * the push round after each (debounced) change, the per-proxy records
 * behind `/inspect/proxies`, and the MDS metrics.
 */

import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { Counter, Gauge, Histogram, type Registry } from '../../core/metrics.js';
import type { CallerAuthenticator } from '../ca/caller-auth.js';
import type { IssuanceLog } from '../ca/issuance-log.js';
import { identityOf } from '../compiler/endpoints.js';
import type { ConfigCompiler } from '../compiler/config-compiler.js';
import type { CompiledSnapshot } from '../compiler/snapshot-version.js';
import { GrpcRefusal } from '../grpc-status.js';
import { parseProxyReport, type ZoneTelemetrySummary } from '../../core/telemetry/telemetry-report.js';
import { ZoneTelemetryCollector, asReportedBy } from '../telemetry/zone-telemetry.js';
import { vmStatuses } from '../telemetry/zone-telemetry-vms.js';
import type { ProxyRecord } from './proxy-record.js';
import { ProxySession, type MdsCall, type SessionHost, type SessionLimits } from './proxy-session.js';

export interface MdsServerOptions {
  compiler: ConfigCompiler;
  auth: CallerAuthenticator;
  issuance: IssuanceLog;
  registry: Registry;
  logger: Logger;
  limits?: Partial<SessionLimits>;
  /** Why no proxy can get a snapshot yet (no trust bundle), or undefined. */
  notReady?: () => string | undefined;
  /** How many disconnected proxies `/inspect/proxies` keeps. Default 10,000. */
  keepDisconnected?: number;
  /** Proxies compiled and pushed between two turns of the event loop in a push round. Default 100. */
  pushBatchSize?: number;
}

/** Large enough to amortise the yield, small enough that the first pushes leave within milliseconds. */
export const DEFAULT_PUSH_BATCH_SIZE = 100;

export const DEFAULT_SESSION_LIMITS: SessionLimits = {
  helloTimeoutMs: 10_000,
  ackTimeoutMs: 30_000,
  messagesPerSecond: 50,
};

export class MdsServer {
  private readonly sessions = new Map<string, ProxySession>();
  /** Records of proxies that disconnected, newest last. */
  private readonly gone = new Map<string, ProxyRecord>();
  private readonly host: SessionHost;
  private readonly pushes: Counter;
  private readonly nacks: Counter;
  private readonly ackLatency: Histogram;
  private readonly roundSeconds: Histogram;
  private gatewaySnapshot: { generation: number; snapshot: CompiledSnapshot } | undefined;
  /** Proxies' telemetry Reports, summed until the KDS client sends them to global. */
  readonly telemetry: ZoneTelemetryCollector;
  private closed = false;

  constructor(private readonly options: MdsServerOptions) {
    const { registry } = options;
    this.pushes = new Counter({
      name: 'meshfed_zone_mds_pushes_total',
      help: 'Snapshots pushed to proxies, by proxy kind.',
      labelNames: ['kind'],
      registers: [registry],
    });
    this.nacks = new Counter({
      name: 'meshfed_zone_mds_nacks_total',
      help: 'Snapshots proxies refused (NACK).',
      labelNames: ['kind'],
      registers: [registry],
    });
    this.ackLatency = new Histogram({
      name: 'meshfed_zone_mds_push_ack_seconds',
      help: 'Time from pushing a snapshot to the proxy ACKing it.',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.roundSeconds = new Histogram({
      name: 'meshfed_zone_mds_push_round_seconds',
      help: 'Time to recompile every connected proxy after a change and send what changed.',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    });
    const sessions = this.sessions;
    new Gauge({
      name: 'meshfed_zone_connected_proxies',
      help: 'Proxies with an open MDS stream whose Hello was accepted, by kind.',
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        let sidecars = 0;
        let gateways = 0;
        for (const s of sessions.values()) {
          if (s.record.kind === 'gateway') gateways++;
          else sidecars++;
        }
        this.set({ kind: 'sidecar' }, sidecars);
        this.set({ kind: 'gateway' }, gateways);
      },
    });
    this.telemetry = new ZoneTelemetryCollector({ registry, logger: options.logger });
    const telemetry = this.telemetry;
    const batch = options.pushBatchSize;
    if (batch !== undefined && (!Number.isSafeInteger(batch) || batch < 1)) {
      throw new MeshError(ErrorCodes.CONFIG, `pushBatchSize must be a positive whole number, got ${batch}`, {
        field: 'pushBatchSize',
      });
    }
    const limits = { ...DEFAULT_SESSION_LIMITS, ...options.limits };
    this.host = {
      logger: options.logger,
      limits,
      authenticate: (call) => options.auth.authenticate(call.metadata, call.getAuthContext()),
      compile: (session) => this.compile(session),
      register: (session) => this.register(session),
      unregister: (session) => this.unregister(session),
      onPush: (session) => this.pushes.inc({ kind: session.record.kind }),
      onAck: (_session, seconds) => this.ackLatency.observe(seconds),
      onNack: (session) => this.nacks.inc({ kind: session.record.kind }),
      onReport: (session, json) => {
        try {
          telemetry.receive(asReportedBy(parseProxyReport(json), session.record));
        } catch (err) {
          // Best effort: a bad report is counted and dropped, the config stream stays up.
          telemetry.rejected();
          options.logger.debug('dropped a telemetry report', { proxyId: session.id, err });
        }
      },
    };
  }

  /** The gRPC service implementation (`meshfed.mds.v1.ProxyDiscovery`). */
  handlers(): UntypedServiceImplementation {
    return {
      Stream: (call: MdsCall) => {
        if (this.closed) {
          call.emit(
            'error',
            new GrpcRefusal(status.UNAVAILABLE, 'the zone control plane is shutting down').toStatus(),
          );
          return;
        }
        new ProxySession(call, this.host);
      },
    };
  }

  /**
   * Recompiles every connected proxy and pushes those whose snapshot
   * changed, `pushBatchSize` proxies at a time with a turn of the event
   * loop in between: the first batches' bytes reach the wire (and their
   * ACKs come back) while later ones compile, and a round of thousands
   * never holds the loop for its whole length.
   */
  async pushAll(): Promise<void> {
    const stop = this.roundSeconds.startTimer();
    const batch = this.options.pushBatchSize ?? DEFAULT_PUSH_BATCH_SIZE;
    // A copy: sessions come and go while the round yields (a new one compiles on its Hello).
    const sessions = [...this.sessions.values()];
    for (let i = 0; i < sessions.length && !this.closed; i++) {
      sessions[i]?.refresh();
      if ((i + 1) % batch === 0 && i + 1 < sessions.length)
        await new Promise((resolve) => setImmediate(resolve));
    }
    stop();
  }

  /** Connected proxies first, then recently disconnected ones. */
  records(): ProxyRecord[] {
    const live = [...this.sessions.values()].map((s) => this.withCertificate(s.record));
    const connectedIds = new Set(live.map((r) => r.id));
    const gone = [...this.gone.values()].filter((r) => !connectedIds.has(r.id)).reverse();
    return [...live, ...gone.map((r) => this.withCertificate(r))];
  }

  record(id: string): ProxyRecord | undefined {
    const session = this.sessions.get(id);
    if (session !== undefined) return this.withCertificate(session.record);
    const gone = this.gone.get(id);
    return gone === undefined ? undefined : this.withCertificate(gone);
  }

  /** The snapshot compiled for a connected proxy (or compiled now for a known, disconnected one). */
  snapshotOf(id: string): CompiledSnapshot | undefined {
    const session = this.sessions.get(id);
    if (session !== undefined) return session.snapshot ?? this.compile(session).snapshot;
    const gone = this.gone.get(id);
    if (gone === undefined) return undefined;
    return gone.kind === 'gateway'
      ? this.options.compiler.compileGateway()
      : this.options.compiler.compileSidecar(gone.id, gone.namespace, gone.workload);
  }

  /** The zone's telemetry summary since the previous call (edges, sidecars, VMs) for global. */
  telemetrySummary(zone: string): ZoneTelemetrySummary {
    let sidecars = 0;
    const live: ProxyRecord[] = [];
    for (const s of this.sessions.values()) {
      if (s.record.kind !== 'sidecar') continue;
      sidecars++;
      live.push(this.withCertificate(s.record));
    }
    return this.telemetry.cut(zone, sidecars, vmStatuses(this.options.compiler.view(), live));
  }

  get connectedCount(): number {
    return this.sessions.size;
  }

  /** Ends every stream (UNAVAILABLE, so proxies reconnect to another replica). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const session of [...this.sessions.values()]) {
      session.fail(new GrpcRefusal(status.UNAVAILABLE, 'the zone control plane is shutting down'));
    }
  }

  private compile(session: ProxySession): { snapshot?: CompiledSnapshot; waiting?: string } {
    const hello = session.hello;
    if (hello === undefined) return { waiting: 'no Hello yet' };
    const notReady = this.options.notReady?.();
    if (notReady !== undefined) return { waiting: notReady };
    const compiler = this.options.compiler;
    if (hello.kind === 'gateway') {
      compiler.view();
      const generation = compiler.viewGeneration;
      if (this.gatewaySnapshot?.generation !== generation) {
        this.gatewaySnapshot = { generation, snapshot: compiler.compileGateway() };
      }
      return { snapshot: this.gatewaySnapshot.snapshot };
    }
    const workload = compiler.view().workload(hello.namespace, hello.workload);
    if (workload === undefined) {
      return { waiting: `waiting for workload ${hello.namespace}/${hello.workload} to be discovered` };
    }
    const caller = session.caller;
    if (
      caller !== undefined &&
      caller.via !== 'admin-token' &&
      caller.via !== 'proxy-token' &&
      caller.serviceAccount !== (workload.serviceAccount || 'default')
    ) {
      // Known only now: a certificate or ServiceAccount token of another account cannot read this workload's config.
      session.fail(
        new GrpcRefusal(
          status.PERMISSION_DENIED,
          `workload ${hello.namespace}/${hello.workload} runs as service account ${workload.serviceAccount}, the credential is for ${caller.serviceAccount ?? ''}`,
        ),
      );
      return { waiting: 'credential does not match the workload' };
    }
    session.record.spiffeId = identityOf(workload, compiler.view().trust.trustDomain);
    const snapshot = compiler.compileSidecar(hello.proxy_id, hello.namespace, hello.workload);
    return snapshot === undefined ? { waiting: 'workload disappeared' } : { snapshot };
  }

  private register(session: ProxySession): void {
    const previous = this.sessions.get(session.id);
    if (previous !== undefined && previous !== session && !sameProxy(previous.record, session.record)) {
      // A proxy id names one workload's proxy. Letting another workload's stream take it over
      // would let any credential cut any proxy off its config, and the two would evict each other.
      throw new GrpcRefusal(
        status.ALREADY_EXISTS,
        `proxy id ${session.id} is in use by ${describeProxy(previous.record)}, not ${describeProxy(session.record)}`,
      );
    }
    this.sessions.set(session.id, session);
    this.gone.delete(session.id);
    if (previous !== undefined && previous !== session) {
      previous.fail(new GrpcRefusal(status.ALREADY_EXISTS, 'replaced by a newer stream of the same proxy'));
    }
  }

  private unregister(session: ProxySession): void {
    if (session.id === '' || this.sessions.get(session.id) !== session) return;
    this.sessions.delete(session.id);
    this.gone.set(session.id, session.record);
    const keep = this.options.keepDisconnected ?? 10_000;
    while (this.gone.size > keep) {
      const oldest = this.gone.keys().next();
      if (oldest.done) break;
      this.gone.delete(oldest.value);
    }
  }

  private withCertificate(record: ProxyRecord): ProxyRecord {
    if (record.kind !== 'sidecar') return { ...record };
    const issued = this.options.issuance.latest(record.namespace, record.workload, record.spiffeId ?? '');
    const fromCa = issued?.notAfter.toISOString();
    // The later of what the CA issued and what the stream presented is the certificate in use.
    const expiry = [fromCa, record.certificateExpiry]
      .filter((v): v is string => v !== undefined)
      .sort()
      .pop();
    return expiry === undefined ? { ...record } : { ...record, certificateExpiry: expiry };
  }
}

/** The same proxy reconnecting (a restart, a new stream after a drop): same kind and workload. */
function sameProxy(a: ProxyRecord, b: ProxyRecord): boolean {
  return a.kind === b.kind && a.namespace === b.namespace && a.workload === b.workload;
}

function describeProxy(record: ProxyRecord): string {
  return record.kind === 'sidecar' ? `sidecar ${record.namespace}/${record.workload}` : `a ${record.kind}`;
}
