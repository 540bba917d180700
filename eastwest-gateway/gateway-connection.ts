/**
 * One client connection through the gateway:
 *
 *   hello      read chunks until the ClientHello is complete (read timeout)
 *   connecting route on the SNI, connect to a local endpoint or take its spare
 *              connection (retry another on failure: the client has received
 *              nothing yet, so it is safe)
 *   piping     write the buffered hello, then pipe both ways with
 *              backpressure, half-close and an idle timeout
 *   closed
 *
 * The gateway never holds a key for the client's TLS session: the bytes it
 * forwards are exactly the bytes it received.
 */

import type net from 'node:net';
import type { Logger } from '../core/log.js';
import { ejectEndpoint, endpointConnected, type EndpointState } from './endpoint-state.js';
import type { GatewayMetrics, RefusalReason } from './gateway-metrics.js';
import type { ResolvedLimits } from './gateway-options.js';
import { classifyMiss, type GatewayTable, type Route } from './gateway-table.js';
import { pickLeastEjected } from './lb.js';
import type { PreconnectPool } from './preconnect-pool.js';
import type { ReadBufferPool } from './read-buffer-pool.js';
import { ClientHelloReader } from './sni-parse.js';
import { UpstreamLink } from './upstream-link.js';

/** What a connection needs from the gateway that owns it. */
export interface ConnectionHost {
  readonly limits: ResolvedLimits;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  /** Where the upstream sockets' read buffers come from and go back to. */
  readonly readBuffers: ReadBufferPool;
  /** Spare upstream connections, taken instead of connecting and refilled after use. */
  readonly preconnect: PreconnectPool;
  /** The table in force when the hello completes (a snapshot may land meanwhile). */
  currentTable(): GatewayTable | undefined;
  /** Called exactly once, when the client socket has closed. */
  connectionClosed(connection: GatewayConnection): void;
}

type Phase = 'hello' | 'connecting' | 'piping' | 'closed';

export class GatewayConnection {
  readonly client: net.Socket;
  /** The connection's source IP, for the per-source limit. */
  readonly source: string;
  private phase: Phase = 'hello';
  private reader: ClientHelloReader | undefined;
  private route: Route | undefined;
  private endpoint: EndpointState | undefined;
  private link: UpstreamLink | undefined;
  /** The link was a spare: if it fails before the endpoint answers, connect afresh instead of failing. */
  private onSpare = false;
  private readonly tried: EndpointState[] = [];
  private countedIn = 0;
  /**
   * The ClientHello as one buffer, joined once and resent on a retry; kept
   * until the endpoint answers, since a spare can fail after it was written.
   */
  private hello: Buffer | undefined;
  /** Where the ClientHello's records end in the client's byte stream. */
  private helloEnd = 0;
  /** Counted in `forwarded` once, whichever link carries the connection (a counter must not go down). */
  private countedForwarded = false;
  private countedOut = 0;

  constructor(
    private readonly host: ConnectionHost,
    client: net.Socket,
    source: string,
  ) {
    this.client = client;
    this.source = source;
  }

  /** The socket to the endpoint, while there is a link. */
  private get upstream(): net.Socket | undefined {
    return this.link?.socket;
  }

  /** Destination service while connecting or piping, for logs and tests. */
  get service(): string | undefined {
    return this.route?.service;
  }

  get state(): Phase {
    return this.phase;
  }

  start(): void {
    const client = this.client;
    this.reader = new ClientHelloReader({ maxHelloBytes: this.host.limits.maxHelloBytes });
    client.setTimeout(this.host.limits.helloTimeoutMs);
    client.on('data', this.onHelloData);
    client.on('end', this.onHelloEnd);
    client.on('timeout', this.onClientTimeout);
    client.on('error', this.onClientError);
    client.on('close', this.onClientClose);
  }

  /** Cut the connection now (drain deadline, destroy()). */
  destroy(): void {
    this.upstream?.destroy();
    this.client.destroy();
  }

  /** Adds the bytes moved since the last call to the byte counters (at close and at scrape). */
  flushBytes(metrics: GatewayMetrics): void {
    if (this.route === undefined || this.upstream === undefined) return;
    const bytesIn = this.client.bytesRead;
    const bytesOut = this.client.bytesWritten;
    if (bytesIn > this.countedIn) metrics.bytesIn += bytesIn - this.countedIn;
    if (bytesOut > this.countedOut) metrics.bytesOut += bytesOut - this.countedOut;
    this.countedIn = bytesIn;
    this.countedOut = bytesOut;
  }

  private readonly onHelloData = (chunk: Buffer): void => {
    const reader = this.reader;
    if (reader === undefined) return;
    const result = reader.push(chunk);
    if (result.status === 'need-more') return;
    // Hold further bytes in the kernel until the upstream is ready to take them.
    this.client.pause();
    this.client.off('data', this.onHelloData);
    this.client.off('end', this.onHelloEnd);
    if (result.status === 'error') {
      this.refuse(result.reason, result.detail);
      return;
    }
    if (result.serverName === undefined) {
      this.refuse('no-sni', 'the ClientHello has no server_name');
      return;
    }
    this.helloEnd = result.consumed;
    this.routeTo(result.serverName);
  };

  private readonly onHelloEnd = (): void => {
    this.refuse('hello-incomplete', 'the client closed before completing its ClientHello');
  };

  private routeTo(serverName: string): void {
    const table = this.host.currentTable();
    if (table === undefined) {
      this.refuse('not-ready', 'no routing table');
      return;
    }
    const route = table.routes.get(serverName);
    if (route === undefined) {
      this.refuse(classifyMiss(table, serverName), serverName);
      return;
    }
    if (route.endpoints.length === 0) {
      this.refuse('no-healthy-endpoint', serverName);
      return;
    }
    this.route = route;
    this.phase = 'connecting';
    // The hello timer is done; from here the client's socket timer is the idle timeout.
    this.client.setTimeout(this.host.limits.idleTimeoutMs);
    this.connectNext();
  }

  private helloBytes(): Buffer {
    if (this.hello === undefined) {
      const chunks = this.reader?.chunks ?? [];
      this.hello = chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks);
    }
    return this.hello;
  }

  private connectNext(): void {
    const route = this.route;
    if (route === undefined || this.phase !== 'connecting') return;
    const endpoint =
      route.lb.pick(route.endpoints, Date.now(), this.tried) ?? pickLeastEjected(route.endpoints, this.tried);
    if (endpoint === undefined) {
      this.refuse('upstream-unavailable', `every endpoint of ${route.sni} failed to connect`);
      return;
    }
    this.tried.push(endpoint);
    endpoint.active++;
    this.endpoint = endpoint;
    const spare = this.host.preconnect.take(endpoint);
    if (spare !== undefined) {
      this.useLink(spare, true);
      return;
    }
    this.useLink(new UpstreamLink(endpoint, this.host.readBuffers), false);
  }

  private useLink(link: UpstreamLink, spare: boolean): void {
    this.link = link;
    this.onSpare = spare;
    link.attach(this.client, this.onFirstUpstreamByte);
    const upstream = link.socket;
    // On a connecting socket the hello is queued and written the moment the connect
    // completes, before 'connect' reaches us. Nothing has reached the endpoint if the
    // connect fails, so the next attempt sends it again.
    const hello = this.helloBytes();
    if (hello.length > 0) upstream.write(hello);
    upstream.on('error', this.onUpstreamError);
    upstream.on('close', this.onUpstreamClose);
    if (spare) {
      this.onUpstreamConnect();
      return;
    }
    upstream.setTimeout(this.host.limits.connectTimeoutMs);
    upstream.once('connect', this.onUpstreamConnect);
    upstream.on('timeout', this.onUpstreamTimeout);
  }

  /**
   * The endpoint has answered: the connection stays on this link for good, and
   * the next connection routed here should find a spare waiting. Opening it
   * now, with the endpoint's answer already on its way to the client, keeps
   * that work off this connection's handshake: the client is busy with the
   * answer for a while.
   */
  private readonly onFirstUpstreamByte = (): void => {
    this.hello = undefined;
    if (this.onSpare) this.host.metrics.preconnectsUsed++;
    this.onSpare = false;
    if (this.endpoint !== undefined) this.host.preconnect.refill(this.endpoint);
  };

  private readonly onUpstreamConnect = (): void => {
    const upstream = this.upstream;
    const route = this.route;
    const endpoint = this.endpoint;
    if (
      upstream === undefined ||
      route === undefined ||
      endpoint === undefined ||
      this.phase !== 'connecting'
    ) {
      return;
    }
    endpointConnected(endpoint);
    if (!this.onSpare) upstream.setTimeout(0);
    this.phase = 'piping';
    if (!this.countedForwarded) {
      this.countedForwarded = true;
      route.stats.forwarded++;
    }
    route.stats.active++;
    this.reader = undefined;
    // The client stays paused (since its hello) until the upstream can take more.
    const flowing = !upstream.writableNeedDrain;
    // The relay: backpressure both ways (stop reading a side while the other's
    // send buffer is full), and with allowHalfOpen a FIN from one side
    // half-closes the other. Hand-written rather than pipe(): same semantics,
    // fewer listeners and checks per chunk.
    const client = this.client;
    client.on('data', this.onClientData);
    client.on('end', this.onClientEnd);
    client.on('drain', this.onClientDrain);
    upstream.on('end', this.onUpstreamEnd);
    upstream.on('drain', this.onUpstreamDrain);
    // A client that sent its FIN right behind the hello has ended already (Readable
    // emits 'end' even while paused once its buffer is empty): pass the FIN on.
    if (client.readableEnded) upstream.end();
    else if (flowing) client.resume();
  };

  private readonly onClientData = (chunk: Buffer): void => {
    if (this.upstream?.write(chunk) === false) this.client.pause();
  };

  private readonly onUpstreamDrain = (): void => {
    this.client.resume();
  };

  private readonly onClientDrain = (): void => {
    this.upstream?.resume();
  };

  private readonly onClientEnd = (): void => {
    this.upstream?.end();
  };

  private readonly onUpstreamEnd = (): void => {
    if (this.spareFailed(new Error('the endpoint closed the spare connection'))) return;
    this.client.end();
  };

  private readonly onUpstreamTimeout = (): void => {
    if (this.phase === 'connecting') this.connectFailed(new Error('connect timed out'));
  };

  private readonly onUpstreamError = (err: Error): void => {
    if (this.phase === 'connecting') {
      this.connectFailed(err);
      return;
    }
    if (this.spareFailed(err)) return;
    this.host.logger.debug('upstream error', { err, endpoint: this.endpoint?.key });
    this.client.destroy();
  };

  private readonly onUpstreamClose = (hadError: boolean): void => {
    // A clean close means both directions ended and the client is finishing its
    // writes; cutting it now would drop bytes still buffered for it.
    if (this.phase === 'piping' && hadError) this.client.destroy();
  };

  /**
   * A spare that dies before the endpoint has answered (the endpoint closed it
   * as the hello went out) has cost the client nothing. As long as the client
   * has sent nothing past its ClientHello (early data must not be replayed),
   * connect to the same endpoint afresh: with a single endpoint there is no
   * other, and one that is going away refuses the connect, which ejects it
   * and moves on to the next (connectFailed).
   */
  private spareFailed(err: Error): boolean {
    const link = this.link;
    // onSpare turns false when the endpoint first answers; a closed client needs nothing.
    if (!this.onSpare || this.phase !== 'piping' || link === undefined) return false;
    if (this.client.bytesRead !== this.helloEnd || this.client.readableEnded) return false;
    const endpoint = link.endpoint;
    this.host.logger.debug('spare upstream connection failed before use; connecting afresh', {
      err,
      endpoint: endpoint.key,
    });
    this.host.metrics.preconnectsLost++;
    this.dropLink();
    this.stopRelayingClient();
    if (this.route !== undefined) this.route.stats.active--;
    this.phase = 'connecting';
    this.useLink(new UpstreamLink(endpoint, this.host.readBuffers), false);
    return true;
  }

  /** Undo the client side of the relay: paused, as during the hello. */
  private stopRelayingClient(): void {
    const client = this.client;
    client.pause();
    client.off('data', this.onClientData);
    client.off('end', this.onClientEnd);
    client.off('drain', this.onClientDrain);
  }

  /** Detach from the current link and close it; its buffer goes back once it has closed. */
  private dropLink(): void {
    const link = this.link;
    const upstream = link?.socket;
    this.link = undefined;
    this.onSpare = false;
    if (upstream !== undefined) {
      upstream.off('close', this.onUpstreamClose);
      upstream.off('error', this.onUpstreamError);
      upstream.off('timeout', this.onUpstreamTimeout);
      upstream.off('connect', this.onUpstreamConnect);
      upstream.off('end', this.onUpstreamEnd);
      upstream.off('drain', this.onUpstreamDrain);
      // A late error from the socket being cut is not ours to handle any more.
      upstream.on('error', noop);
      upstream.destroy();
    }
    link?.release();
  }

  private connectFailed(err: Error): void {
    const endpoint = this.endpoint;
    const route = this.route;
    this.dropLink();
    this.endpoint = undefined;
    if (endpoint === undefined || route === undefined) return;
    endpoint.active--;
    route.stats.connectFailures++;
    this.host.metrics.ejections++;
    const ejectedForMs = ejectEndpoint(endpoint, Date.now(), this.host.limits);
    this.host.logger.warn('endpoint refused a connect; ejected', {
      endpoint: endpoint.key,
      workload: endpoint.workload,
      service: route.service,
      ejectedForMs,
      err,
    });
    if (this.tried.length < this.host.limits.connectAttempts && this.tried.length < route.endpoints.length) {
      this.connectNext();
    } else {
      this.refuse('upstream-unavailable', `no endpoint of ${route.sni} accepted a connection`);
    }
  }

  private readonly onClientTimeout = (): void => {
    if (this.phase === 'hello') {
      this.refuse('hello-timeout', `no complete ClientHello within ${this.host.limits.helloTimeoutMs} ms`);
      return;
    }
    this.host.logger.debug('idle timeout', { service: this.route?.service });
    this.destroy();
  };

  private readonly onClientError = (err: Error): void => {
    // A reset from the client: nothing to answer. The close handler cleans up.
    this.host.logger.debug('client error', { err, source: this.source });
    this.upstream?.destroy();
  };

  private readonly onClientClose = (hadError: boolean): void => {
    const wasPiping = this.phase === 'piping';
    const wasConnecting = this.phase === 'connecting';
    this.phase = 'closed';
    const upstream = this.upstream;
    if (upstream !== undefined && (hadError || wasConnecting || !wasPiping)) upstream.destroy();
    if (wasPiping && this.route !== undefined) {
      this.flushBytes(this.host.metrics);
      this.route.stats.active--;
    }
    if (this.endpoint !== undefined) {
      this.endpoint.active--;
      this.endpoint = undefined;
    }
    this.reader = undefined;
    this.hello = undefined;
    this.link?.release();
    this.host.connectionClosed(this);
  };

  private refuse(reason: RefusalReason, detail: string): void {
    if (this.phase === 'closed') return;
    this.host.metrics.refusal(reason);
    this.host.logger.debug('refused a connection', { reason, detail, source: this.source });
    // Nothing was forwarded; the upstream (if any) never saw a byte of this client.
    this.upstream?.destroy();
    this.client.destroy();
  }
}

function noop(): void {}
