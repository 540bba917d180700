/**
 * The proxy side of `meshfed.mds.v1.ProxyDiscovery/Stream`, used by the
 * sidecar and the east-west gateway: dial the zone CP over TLS, say Hello,
 * hand each snapshot to `onSnapshot` and ACK it when that returns (NACK
 * with the error message when it throws, keeping the last good config).
 * Reconnects with exponential backoff and jitter and tells the zone the
 * version it runs, so an unchanged snapshot is not sent again.
 */

import { EventEmitter } from 'node:events';
import { ErrorCodes, MeshError } from '../errors.js';
import type { Logger } from '../log.js';
import { meshErrorFromGrpc, zoneCallMetadata, zoneChannel, type ZoneCredential } from '../ca/zone-channel.js';
import type { GrpcCall, GrpcChannel } from '../grpc/grpc-channel.js';
import { GrpcCode, type GrpcStatusError } from '../grpc/grpc-codes.js';
import {
  MAX_NACK_ERROR_LENGTH,
  MDS_PROTOCOL_VERSION,
  MDS_SERVICE,
  type ControlMessageWire,
  type ProxyKind,
  type ProxyMessageWire,
} from './mds-messages.js';
import { decodeControlMessage, encodeProxyMessage } from './mds-codec.js';

/** The one RPC, called by path with the lean codec (mds-codec.ts). */
const STREAM_METHOD = `/${MDS_SERVICE}/Stream`;

/** One snapshot as received: `json` is the parsed snapshot (core/mesh/snapshot.ts). */
export interface ReceivedSnapshot {
  version: string;
  /** `sidecar/v1` or `gateway/v1`. */
  type: string;
  json: unknown;
}

export interface MdsHello {
  /** Unique per running proxy instance, stable across its reconnects. */
  proxyId: string;
  kind: ProxyKind;
  /** Workload (Pod/WorkloadEntry) name and namespace; empty for gateways. */
  workload?: string;
  namespace?: string;
  softwareVersion?: string;
}

export interface MdsClientOptions {
  /** Zone CP gRPC address, host:port. */
  address: string;
  /** PEM roots the zone CP certificate must chain to; a function is asked at every (re)connect. */
  caPem: string | (() => string);
  /** Asked at every (re)connect, so a renewed certificate or rotated token is picked up. */
  credential: () => ZoneCredential;
  hello: MdsHello;
  /** Apply a snapshot; return (or resolve) to ACK, throw (or reject) to NACK with the message. */
  onSnapshot: (snapshot: ReceivedSnapshot) => void | Promise<void>;
  logger?: Logger;
  /** First reconnect delay. Default 500 ms; doubles up to `maxBackoffMs` (default 30 s), ±20 % jitter. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Events: `connected`, `disconnected(error?)`, `applied(version)`, `rejected(version, error)`. */
export class MdsClient extends EventEmitter {
  #channel: GrpcChannel | undefined;
  #stream: GrpcCall | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #started = false;
  #connected = false;
  #attempt = 0;
  #appliedVersion = '';
  #lastError: MeshError | undefined;
  /** Snapshots are applied one at a time, in order. */
  #queue: Promise<void> = Promise.resolve();
  readonly #options: MdsClientOptions;

  constructor(options: MdsClientOptions) {
    super();
    if (!options.hello.proxyId) throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'hello.proxyId is required');
    if (options.hello.kind === 'sidecar' && (!options.hello.workload || !options.hello.namespace)) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'a sidecar must name its workload and namespace');
    }
    this.#options = options;
  }

  /** True while a stream is open and the zone accepted its Hello. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Version of the last snapshot `onSnapshot` accepted ('' before the first). */
  get appliedVersion(): string {
    return this.#appliedVersion;
  }

  /** The reason the last stream ended, if it failed. */
  get lastError(): MeshError | undefined {
    return this.#lastError;
  }

  /**
   * Sends a telemetry Report (JSON of core/telemetry ProxyTelemetryReport)
   * on the open stream. Returns false, sending nothing, while no stream is
   * accepted: the caller keeps the counts for the next report.
   */
  sendReport(json: Buffer): boolean {
    const stream = this.#stream;
    if (!this.#connected || stream === undefined) return false;
    this.#send(stream, { report: { json } });
    return true;
  }

  /** Opens the stream (and keeps it open). Idempotent. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#connect();
  }

  /** Ends the stream and stops reconnecting. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#teardown();
  }

  #connect(): void {
    if (this.#closed) return;
    let credential: ZoneCredential;
    let caPem: string;
    try {
      credential = this.#options.credential();
      caPem = typeof this.#options.caPem === 'function' ? this.#options.caPem() : this.#options.caPem;
    } catch (err) {
      this.#fail(new MeshError(ErrorCodes.UNAUTHENTICATED, `no MDS credential: ${(err as Error).message}`));
      return;
    }
    // A channel per stream: a reconnect picks up a renewed certificate or a rotated token.
    const channel = zoneChannel(this.#options.address, caPem, credential, {
      keepaliveMs: 20_000,
      keepaliveTimeoutMs: 10_000,
      maxReceiveMessageBytes: 64 * 1024 * 1024,
    });
    this.#channel = channel;
    let stream: GrpcCall;
    try {
      stream = channel.stream(STREAM_METHOD, zoneCallMetadata(credential));
    } catch (err) {
      // node:http2 refuses some addresses synchronously; this runs from a timer, so it must not throw.
      this.#fail(
        new MeshError(
          ErrorCodes.UNAVAILABLE,
          `MDS stream to ${this.#options.address}: ${(err as Error).message}`,
        ),
      );
      return;
    }
    this.#stream = stream;
    let ended = false;
    const end = (err: MeshError | undefined): void => {
      if (ended) return;
      ended = true;
      if (this.#stream === stream) this.#fail(err);
    };
    const accepted = (): void => {
      if (this.#connected || this.#stream !== stream) return;
      this.#connected = true;
      this.#attempt = 0;
      this.emit('connected');
    };
    // The zone sends headers once it accepted Hello, before any snapshot.
    stream.on('metadata', accepted);
    stream.on('data', (bytes: Buffer) => {
      accepted();
      let message: ControlMessageWire;
      try {
        message = decodeControlMessage(bytes);
      } catch (err) {
        stream.cancel(GrpcCode.INTERNAL, `undecodable message from the zone: ${(err as Error).message}`);
        return;
      }
      this.#onMessage(stream, message);
    });
    stream.on('error', (err: GrpcStatusError) =>
      end(meshErrorFromGrpc(err, `MDS stream to ${this.#options.address}`)),
    );
    stream.on('end', () => end(new MeshError(ErrorCodes.UNAVAILABLE, 'the zone ended the MDS stream')));
    const hello = this.#options.hello;
    this.#send(stream, {
      hello: {
        proxy_id: hello.proxyId,
        kind: hello.kind,
        workload: hello.workload ?? '',
        namespace: hello.namespace ?? '',
        software_version: hello.softwareVersion ?? '',
        protocol_version: MDS_PROTOCOL_VERSION,
        current_version: this.#appliedVersion,
      },
    });
  }

  #send(stream: GrpcCall, message: ProxyMessageWire): void {
    stream.write(encodeProxyMessage(message));
  }

  #onMessage(stream: GrpcCall, message: ControlMessageWire): void {
    const snapshot = message.snapshot;
    if (message.message !== 'snapshot' || !snapshot) return;
    const { version, nonce, type } = snapshot;
    this.#queue = this.#queue.then(async () => {
      let error: string | undefined;
      try {
        const json: unknown = JSON.parse(snapshot.json.toString('utf8'));
        await this.#options.onSnapshot({ version, type, json });
      } catch (err) {
        error = (err instanceof Error ? err.message : String(err)) || 'snapshot refused';
      }
      if (this.#stream !== stream) return;
      if (error === undefined) {
        this.#appliedVersion = version;
        this.#send(stream, { ack: { version, nonce } });
        this.emit('applied', version);
      } else {
        this.#options.logger?.warn('refused a snapshot; keeping the last good config', { version, error });
        this.#send(stream, { nack: { version, nonce, error: error.slice(0, MAX_NACK_ERROR_LENGTH) } });
        this.emit('rejected', version, error);
      }
    });
  }

  #fail(err: MeshError | undefined): void {
    const wasConnected = this.#connected;
    this.#teardown();
    if (err !== undefined) this.#lastError = err;
    if (wasConnected) this.emit('disconnected', err);
    if (this.#closed) return;
    const base = this.#options.initialBackoffMs ?? 500;
    const delay = Math.min(base * 2 ** Math.min(this.#attempt, 20), this.#options.maxBackoffMs ?? 30_000);
    this.#attempt++;
    const jittered = delay * (0.8 + Math.random() * 0.4);
    this.#options.logger?.warn('MDS stream down; reconnecting', { err, retryInMs: Math.round(jittered) });
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect();
    }, jittered);
  }

  #teardown(): void {
    this.#connected = false;
    const stream = this.#stream;
    this.#stream = undefined;
    if (stream !== undefined) {
      stream.removeAllListeners('data');
      // A late error after cancel must not be unhandled.
      stream.on('error', () => undefined);
      stream.cancel();
    }
    this.#channel?.close();
    this.#channel = undefined;
  }
}
