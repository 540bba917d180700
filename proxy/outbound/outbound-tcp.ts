/**
 * Opaque TCP from the app to a mesh service: a per-service local listener
 * (`tcpListeners` option) or an HTTP CONNECT tunnel through the outbound
 * port. The TCP route picks the subset, the cluster's balancer an
 * endpoint; the connection goes over mTLS with the mesh SNI (whose port
 * tells the peer which app port to use). A refused connect is tried on
 * another endpoint before giving up, since no byte has been sent yet.
 */

import type { Socket } from 'node:net';
import { monotonicMs } from '../../core/clock.js';
import { formatIsoTime } from '../../core/utc-format.js';
import type { ClusterRuntime } from '../cluster/cluster-runtime.js';
import type { EndpointState } from '../cluster/endpoint-state.js';
import type { CompiledService } from '../config/config-types.js';
import type { ActiveConfig, ProxyContext } from '../proxy-context.js';
import { UNKNOWN_PEER, type BaseSeries } from '../telemetry/istio-metrics.js';
import { splice } from '../tcp/tcp-splice.js';
import { connectUpstream, kPeerId, type TaggedSocket } from '../upstream/upstream-connect.js';
import { pickDestination, selectTcpRoute } from './outbound-route.js';

const MAX_CONNECT_ATTEMPTS = 3;

export interface TcpOutcome {
  /** Called once the upstream is connected (CONNECT answers 200 then) or with the reason it is not. */
  onReady?(error: string | undefined, flag: string): void;
}

/** Proxies `client` to `service:port`. `head` is data already read from the client. */
export function proxyTcp(
  ctx: ProxyContext,
  active: ActiveConfig,
  service: CompiledService,
  port: number,
  client: Socket,
  head: Buffer | undefined,
  outcome: TcpOutcome = {},
): void {
  const route = selectTcpRoute(service, port);
  const dest = pickDestination(route);
  const name = dest?.clusterByPort.get(port);
  const cluster = name === undefined ? undefined : active.clusters.get(name);
  const start = monotonicMs();
  const fail = (reason: string, flag: string, cl: ClusterRuntime | undefined): void => {
    outcome.onReady?.(reason, flag);
    record(ctx, active, service, cl, undefined, flag, 0, 0, true);
    client.destroy();
  };
  if (cluster === undefined) {
    fail(`no cluster for ${service.host}:${port}`, 'NC', undefined);
    return;
  }
  // TCP connections count against maxConnections; nothing to queue them behind.
  if (!cluster.breaker.tryAcquire()) {
    ctx.stats.overflows.inc({ cluster: cluster.name });
    fail('circuit breaker overflow', 'UO', cluster);
    return;
  }
  let released = false;
  const release = (): void => {
    if (!released) {
      released = true;
      cluster.breaker.release();
    }
  };
  client.on('error', () => client.destroy());
  let attempts = 0;
  let last: EndpointState | undefined;
  const tryConnect = (): void => {
    const e = cluster.pick(last);
    if (e === undefined) {
      release();
      fail('no healthy upstream', 'UH', cluster);
      return;
    }
    attempts++;
    last = e;
    const tls = e.config.via !== 'plaintext' && !cluster.spec.policy.plaintext;
    const upstream: TaggedSocket = connectUpstream(
      {
        address: e.config.address,
        port: e.config.port,
        tls,
        sni: cluster.spec.sni,
        alpn: [],
        identities: e.config.identities,
        connectTimeoutMs: cluster.spec.policy.connectTimeoutMs,
      },
      ctx.tlsProvider,
    );
    const onConnectError = (): void => {
      cluster.recordResult(e, 0);
      upstream.destroy();
      if (attempts < MAX_CONNECT_ATTEMPTS && !client.destroyed) {
        tryConnect();
        return;
      }
      release();
      fail('upstream connect failure', 'UF', cluster);
    };
    upstream.once('error', onConnectError);
    const ready = tls ? 'secureConnect' : 'connect';
    upstream.once(ready, () => {
      upstream.removeListener('error', onConnectError);
      if (client.destroyed) {
        upstream.destroy();
        release();
        return;
      }
      cluster.recordResult(e, 200);
      e.active++;
      const series = ctx.metrics.tcp(baseFor(ctx, active, service, cluster, e));
      series.opened++;
      outcome.onReady?.(undefined, '-');
      if (head !== undefined && head.length > 0) upstream.write(head);
      splice(client, upstream, ctx.tunnels, (result) => {
        e.active--;
        release();
        const closed = ctx.metrics.tcp(
          baseFor(ctx, active, service, cluster, e),
          result.error === undefined ? '-' : 'UC',
        );
        closed.closed++;
        closed.sent += result.sent;
        closed.received += result.received + (head?.length ?? 0);
        if (ctx.accessLog.enabled) {
          const elapsedMs = monotonicMs() - start;
          ctx.accessLog.write({
            start_time: formatIsoTime(Date.now() - elapsedMs),
            direction: 'outbound',
            method: '',
            path: '',
            protocol: 'tcp',
            authority: `${service.host}:${port}`,
            response_code: 0,
            response_flags: result.error === undefined ? '-' : 'UC',
            response_code_details: result.error?.message ?? '',
            bytes_received: result.received,
            bytes_sent: result.sent,
            duration: Math.round(elapsedMs * 1000) / 1000,
            upstream_cluster: cluster.name,
            upstream_host: e.key,
            upstream_peer: upstream[kPeerId] ?? '',
            downstream_remote_address: `${client.remoteAddress ?? ''}:${client.remotePort ?? ''}`,
            downstream_peer: '',
            requested_server_name: cluster.spec.sni,
            route_name: '',
            request_id: '',
            traceparent: '',
            user_agent: '',
            x_forwarded_for: '',
            attempts,
          });
        }
      });
    });
  };
  tryConnect();
}

function baseFor(
  ctx: ProxyContext,
  active: ActiveConfig,
  service: CompiledService,
  cluster: ClusterRuntime | undefined,
  e: EndpointState | undefined,
): BaseSeries {
  return ctx.metrics.base({
    reporter: 'source',
    source: active.self,
    destination:
      e === undefined
        ? UNKNOWN_PEER
        : {
            ...UNKNOWN_PEER,
            workload: e.config.workload ?? 'unknown',
            workload_namespace: service.namespace,
            principal: e.config.identities[0] ?? 'unknown',
            app: e.config.labels.app ?? service.name,
            version: e.config.labels.version ?? 'unknown',
            canonical_service: e.config.labels.app ?? service.name,
            cluster: e.config.zone || 'unknown',
          },
    service: cluster?.spec.host ?? service.host,
    serviceName: service.name,
    serviceNamespace: service.namespace,
    security: 'unknown',
  });
}

function record(
  ctx: ProxyContext,
  active: ActiveConfig,
  service: CompiledService,
  cluster: ClusterRuntime | undefined,
  e: EndpointState | undefined,
  flag: string,
  sent: number,
  received: number,
  opened: boolean,
): void {
  const series = ctx.metrics.tcp(baseFor(ctx, active, service, cluster, e), flag);
  if (opened) series.opened++;
  series.closed++;
  series.sent += sent;
  series.received += received;
}
