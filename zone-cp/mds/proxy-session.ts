/**
 * One MDS stream: authenticate, take Hello, push the proxy's snapshot and
 * follow its ACK/NACK by nonce. At most one push is in flight per stream;
 * newer versions wait (coalesced: only the newest) until the proxy answers
 * or the ACK timeout passes, so a proxy that never answers holds back only
 * itself. A NACKed version is recorded and never resent; the next
 * different version is. Malformed messages, a missing Hello and floods end
 * the stream with a status that says why.
 */

import { randomBytes } from 'node:crypto';
import { Metadata, status, type ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from '../../core/log.js';
import { TokenBucket } from '../../core/token-bucket.js';
import {
  MAX_NACK_ERROR_LENGTH,
  MDS_PROTOCOL_VERSION,
  type ControlMessageWire,
  type HelloWire,
  type ProxyMessageWire,
} from '../../core/mds/mds-messages.js';
import type { CallerIdentity } from '../ca/caller-auth.js';
import type { CompiledSnapshot } from '../compiler/snapshot-version.js';
import { GrpcRefusal, toRefusal } from '../grpc-status.js';
import type { ProxyRecord } from './proxy-record.js';

export type MdsCall = ServerDuplexStream<ProxyMessageWire, ControlMessageWire>;

/** What a session needs from the server around it. */
export interface SessionHost {
  authenticate(call: MdsCall): Promise<CallerIdentity>;
  /** The proxy's snapshot now; undefined with a reason while it cannot have one. */
  compile(session: ProxySession): { snapshot?: CompiledSnapshot; waiting?: string };
  /** Hello accepted: the server indexes the session (and ends an older one of the same proxy). */
  register(session: ProxySession): void;
  unregister(session: ProxySession): void;
  onPush(session: ProxySession, snapshot: CompiledSnapshot): void;
  onAck(session: ProxySession, seconds: number): void;
  onNack(session: ProxySession): void;
  /** A telemetry Report (JSON of core/telemetry ProxyTelemetryReport) from the proxy. */
  onReport(session: ProxySession, json: Buffer): void;
  logger: Logger;
  limits: SessionLimits;
}

export interface SessionLimits {
  helloTimeoutMs: number;
  ackTimeoutMs: number;
  /** Sustained messages per second a proxy may send (burst: 4× this). */
  messagesPerSecond: number;
}

const PROXY_ID = /^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,252}$/;
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

interface InFlight {
  version: string;
  nonce: string;
  sentAt: bigint;
  timer: NodeJS.Timeout;
}

export class ProxySession {
  readonly record: ProxyRecord;
  caller: CallerIdentity | undefined;
  hello: HelloWire | undefined;
  private inflight: InFlight | undefined;
  private queued: CompiledSnapshot | undefined;
  private nackedVersion = '';
  private ackedVersion = '';
  private lastCompiled: CompiledSnapshot | undefined;
  private helloTimer: NodeJS.Timeout | undefined;
  private readonly messages: TokenBucket;
  private chain: Promise<void> = Promise.resolve();
  private ended = false;

  constructor(
    private readonly call: MdsCall,
    private readonly host: SessionHost,
  ) {
    this.messages = new TokenBucket(host.limits.messagesPerSecond, host.limits.messagesPerSecond * 4);
    this.record = {
      id: '',
      kind: 'sidecar',
      workload: '',
      namespace: '',
      credential: '',
      connected: true,
      connectedAt: new Date().toISOString(),
      peer: call.getPeer(),
      softwareVersion: '',
      configVersion: '',
      pushes: 0,
    };
    // Messages wait on this chain, so none is handled before the caller is known.
    this.chain = host.authenticate(call).then(
      (caller) => {
        this.caller = caller;
        this.record.credential = caller.via;
        if (caller.certificateNotAfter !== undefined) {
          this.record.certificateExpiry = caller.certificateNotAfter.toISOString();
        }
      },
      (err: unknown) => this.fail(toRefusal(err)),
    );
    this.helloTimer = setTimeout(
      () =>
        this.fail(
          new GrpcRefusal(status.DEADLINE_EXCEEDED, `no Hello within ${host.limits.helloTimeoutMs} ms`),
        ),
      host.limits.helloTimeoutMs,
    );
    this.helloTimer.unref();
    call.on('data', (message: ProxyMessageWire) => this.receive(message));
    call.on('end', () => this.close(true));
    call.on('error', () => this.close(false));
    call.on('cancelled', () => this.close(false));
  }

  get id(): string {
    return this.record.id;
  }

  get active(): boolean {
    return !this.ended && this.hello !== undefined;
  }

  /** Compile and push if the proxy's snapshot changed. */
  refresh(): void {
    if (!this.active) return;
    let result: ReturnType<SessionHost['compile']>;
    try {
      result = this.host.compile(this);
    } catch (err) {
      this.host.logger.error('compiling a proxy snapshot failed', { proxyId: this.id, err });
      this.record.status = `compile failed: ${(err as Error).message}`;
      return;
    }
    if (result.snapshot === undefined) {
      this.record.status = result.waiting ?? 'no config yet';
      return;
    }
    this.offer(result.snapshot);
  }

  /** Ends the stream with a status (idempotent). */
  fail(refusal: GrpcRefusal): void {
    if (this.ended) return;
    this.host.logger.info('MDS stream refused', {
      proxyId: this.id || undefined,
      peer: this.record.peer,
      reason: refusal.message,
    });
    this.call.emit('error', refusal.toStatus());
    this.close(false);
  }

  private receive(message: ProxyMessageWire): void {
    if (this.ended) return;
    if (!this.messages.take()) {
      this.fail(
        new GrpcRefusal(
          status.RESOURCE_EXHAUSTED,
          `more than ${this.host.limits.messagesPerSecond} messages per second`,
        ),
      );
      return;
    }
    this.chain = this.chain.then(() => {
      if (this.ended) return;
      try {
        this.handle(message);
      } catch (err) {
        this.fail(toRefusal(err));
      }
    });
  }

  private handle(message: ProxyMessageWire): void {
    switch (message.message) {
      case 'hello':
        if (this.hello !== undefined)
          throw new GrpcRefusal(status.INVALID_ARGUMENT, 'Hello sent twice on one stream');
        this.onHello(message.hello ?? undefined);
        return;
      case 'ack':
      case 'nack': {
        if (this.hello === undefined)
          throw new GrpcRefusal(status.INVALID_ARGUMENT, 'the first message must be Hello');
        const reply = message.message === 'ack' ? message.ack : message.nack;
        this.onReply(message.message, reply?.version ?? '', reply?.nonce ?? '', message.nack?.error ?? '');
        return;
      }
      case 'report':
        if (this.hello === undefined)
          throw new GrpcRefusal(status.INVALID_ARGUMENT, 'the first message must be Hello');
        this.host.onReport(this, message.report?.json ?? Buffer.alloc(0));
        return;
      default:
        throw new GrpcRefusal(
          status.INVALID_ARGUMENT,
          'ProxyMessage carries none of hello, ack, nack, report',
        );
    }
  }

  private onHello(hello: HelloWire | undefined): void {
    const caller = this.caller;
    if (hello === undefined || caller === undefined)
      throw new GrpcRefusal(status.INVALID_ARGUMENT, 'empty Hello');
    if (hello.protocol_version !== MDS_PROTOCOL_VERSION) {
      throw new GrpcRefusal(
        status.FAILED_PRECONDITION,
        `MDS protocol version ${hello.protocol_version} is not supported; this zone speaks ${MDS_PROTOCOL_VERSION}`,
      );
    }
    if (!PROXY_ID.test(hello.proxy_id)) {
      throw new GrpcRefusal(
        status.INVALID_ARGUMENT,
        'hello.proxy_id must be 1-253 characters of [A-Za-z0-9._:@/-]',
      );
    }
    if (hello.kind !== 'sidecar' && hello.kind !== 'gateway') {
      throw new GrpcRefusal(
        status.INVALID_ARGUMENT,
        `hello.kind must be "sidecar" or "gateway", got ${JSON.stringify(hello.kind)}`,
      );
    }
    if (hello.kind === 'sidecar') {
      if (!NAME.test(hello.workload) || !NAME.test(hello.namespace)) {
        throw new GrpcRefusal(
          status.INVALID_ARGUMENT,
          'a sidecar Hello needs a valid workload and namespace',
        );
      }
      checkSidecarCredential(caller, hello);
    } else if (caller.via !== 'admin-token' && !caller.gateway) {
      throw new GrpcRefusal(
        status.PERMISSION_DENIED,
        'a gateway stream needs an admin token or a gateway token (a proxy token issued with role "gateway")',
      );
    }
    if (this.helloTimer !== undefined) clearTimeout(this.helloTimer);
    this.hello = hello;
    Object.assign(this.record, {
      id: hello.proxy_id,
      kind: hello.kind,
      workload: hello.kind === 'sidecar' ? hello.workload : '',
      namespace: hello.kind === 'sidecar' ? hello.namespace : '',
      softwareVersion: hello.software_version.slice(0, 100),
      configVersion: hello.current_version.slice(0, 64),
    });
    this.ackedVersion = this.record.configVersion;
    this.host.register(this);
    // Headers tell the proxy its Hello was accepted, even before a snapshot exists.
    this.call.sendMetadata(new Metadata());
    this.refresh();
  }

  private onReply(type: 'ack' | 'nack', version: string, nonce: string, error: string): void {
    const inflight = this.inflight;
    // A reply to an older push (its nonce is not the current one) is stale: ignore it.
    if (inflight === undefined || nonce !== inflight.nonce || version !== inflight.version) return;
    clearTimeout(inflight.timer);
    this.inflight = undefined;
    const at = new Date().toISOString();
    if (type === 'ack') {
      this.ackedVersion = version;
      this.record.configVersion = version;
      this.record.lastAck = { version, at };
      this.host.onAck(this, Number(process.hrtime.bigint() - inflight.sentAt) / 1e9);
    } else {
      this.nackedVersion = version;
      this.record.lastNack = {
        version,
        at,
        error: error.slice(0, MAX_NACK_ERROR_LENGTH) || 'no reason given',
      };
      this.record.status = `holding back version ${version}: the proxy refused it`;
      this.host.onNack(this);
      this.host.logger.warn('proxy refused its config', {
        proxyId: this.id,
        version,
        error: this.record.lastNack.error,
      });
    }
    this.updatePending();
    const next = this.queued;
    this.queued = undefined;
    if (next !== undefined) this.offer(next);
  }

  private offer(snapshot: CompiledSnapshot): void {
    this.lastCompiled = snapshot;
    this.updatePending();
    if (snapshot.version === this.ackedVersion) {
      this.queued = undefined;
      this.record.status = undefined;
      return;
    }
    if (snapshot.version === this.nackedVersion) {
      this.queued = undefined;
      this.record.status = `holding back version ${snapshot.version}: the proxy refused it`;
      return;
    }
    if (this.inflight !== undefined) {
      if (this.inflight.version !== snapshot.version) this.queued = snapshot;
      return;
    }
    this.send(snapshot);
  }

  private send(snapshot: CompiledSnapshot): void {
    const nonce = randomBytes(12).toString('base64url');
    const timer = setTimeout(() => this.ackTimedOut(nonce), this.host.limits.ackTimeoutMs);
    timer.unref();
    this.inflight = { version: snapshot.version, nonce, sentAt: process.hrtime.bigint(), timer };
    this.record.pushes++;
    this.record.status = undefined;
    this.call.write({
      snapshot: { version: snapshot.version, nonce, type: snapshot.type, json: Buffer.from(snapshot.json) },
    });
    this.host.onPush(this, snapshot);
  }

  private ackTimedOut(nonce: string): void {
    if (this.inflight?.nonce !== nonce || this.ended) return;
    this.inflight = undefined;
    this.record.status = `no ACK within ${this.host.limits.ackTimeoutMs} ms`;
    this.host.logger.warn('proxy did not answer a push', { proxyId: this.id });
    const next = this.queued;
    this.queued = undefined;
    if (next !== undefined) this.offer(next);
  }

  private updatePending(): void {
    const compiledVersion = this.lastCompiled?.version;
    if (compiledVersion !== undefined && compiledVersion !== this.ackedVersion)
      this.record.pendingVersion = compiledVersion;
    else delete this.record.pendingVersion;
  }

  /** The snapshot last compiled for this proxy (for /inspect/proxies/{id}/config). */
  get snapshot(): CompiledSnapshot | undefined {
    return this.lastCompiled;
  }

  private close(graceful: boolean): void {
    if (this.ended) return;
    this.ended = true;
    if (this.helloTimer !== undefined) clearTimeout(this.helloTimer);
    if (this.inflight !== undefined) clearTimeout(this.inflight.timer);
    this.inflight = undefined;
    this.queued = undefined;
    this.record.connected = false;
    this.record.disconnectedAt = new Date().toISOString();
    if (graceful) {
      try {
        this.call.end();
      } catch {
        // already closed
      }
    }
    this.host.unregister(this);
  }
}

/** A sidecar may speak only for a workload its credential covers. */
function checkSidecarCredential(caller: CallerIdentity, hello: HelloWire): void {
  const named = `${hello.namespace}/${hello.workload}`;
  switch (caller.via) {
    case 'admin-token':
      return;
    case 'proxy-token':
      if (caller.gateway) {
        throw new GrpcRefusal(status.PERMISSION_DENIED, 'a gateway token cannot open a sidecar stream');
      }
      if (caller.namespace !== hello.namespace || caller.workload !== hello.workload) {
        throw new GrpcRefusal(
          status.PERMISSION_DENIED,
          `the proxy token is for workload ${caller.namespace ?? ''}/${caller.workload ?? ''}, not ${named}`,
        );
      }
      return;
    default:
      // Certificates, Kubernetes and VM tokens prove a namespace and service
      // account; the workload's account is checked once discovery knows it.
      if (caller.namespace !== hello.namespace) {
        throw new GrpcRefusal(
          status.PERMISSION_DENIED,
          `the credential is for namespace ${caller.namespace ?? ''}, not ${hello.namespace}`,
        );
      }
      if (
        caller.workload !== undefined &&
        caller.via !== 'certificate' &&
        caller.workload !== hello.workload
      ) {
        throw new GrpcRefusal(
          status.PERMISSION_DENIED,
          `the credential is bound to ${caller.workload}, not ${hello.workload}`,
        );
      }
  }
}
