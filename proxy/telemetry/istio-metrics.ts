/**
 * Istio's standard metrics with Istio's label set, so existing Istio
 * dashboards work against a meshfed proxy unchanged: istio_requests_total,
 * istio_request_duration_milliseconds, istio_request_bytes,
 * istio_response_bytes, istio_tcp_connections_opened_total/closed_total,
 * istio_tcp_sent_bytes_total/received_bytes_total.
 *
 * A request finds its series in two steps: the (reporter, source,
 * destination) "base" it cached on its endpoint or connection, then a
 * number key (status × protocol) in that base. Cardinality is bounded: past
 * `maxSeries` new combinations fold into one overflow series.
 */

import type { Registry } from 'prom-client';
import { ExportedCounter, ExportedHistogram, HistogramData, type Labels } from './metric-series.js';

export const PEER_LABELS = [
  'workload',
  'workload_namespace',
  'principal',
  'app',
  'version',
  'canonical_service',
  'canonical_revision',
  'cluster',
] as const;

const BASE_LABELS = [
  'reporter',
  ...PEER_LABELS.map((l) => `source_${l}`),
  ...PEER_LABELS.map((l) => `destination_${l}`),
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'connection_security_policy',
];

export const HTTP_LABELS = [
  ...BASE_LABELS,
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
];
export const TCP_LABELS = [...BASE_LABELS, 'request_protocol', 'response_flags'];

/** Istio's default buckets for request duration (milliseconds). */
export const DURATION_BUCKETS_MS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
];
/** Istio's default buckets for request and response sizes (bytes). */
export const SIZE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000];

/** One workload as metric labels (the part after `source_`/`destination_`). */
export type PeerLabels = Record<(typeof PEER_LABELS)[number], string>;

export const UNKNOWN_PEER: PeerLabels = {
  workload: 'unknown',
  workload_namespace: 'unknown',
  principal: 'unknown',
  app: 'unknown',
  version: 'unknown',
  canonical_service: 'unknown',
  canonical_revision: 'latest',
  cluster: 'unknown',
};

export class HttpSeries {
  readonly labels: Labels;
  requests = 0;
  readonly duration = new HistogramData(DURATION_BUCKETS_MS.length);
  readonly requestBytes = new HistogramData(SIZE_BUCKETS.length);
  readonly responseBytes = new HistogramData(SIZE_BUCKETS.length);

  constructor(labels: Labels) {
    this.labels = labels;
  }
}

export class TcpSeries {
  readonly labels: Labels;
  opened = 0;
  closed = 0;
  sent = 0;
  received = 0;

  constructor(labels: Labels) {
    this.labels = labels;
  }
}

export type RequestProtocol = 'http' | 'grpc';

function* project<T, R>(items: Iterable<T>, f: (item: T) => R): Generator<R> {
  for (const item of items) yield f(item);
}

/** Series sharing reporter, source, destination and security policy. */
export class BaseSeries {
  readonly labels: Labels;
  /** Common case (no flags, no gRPC status): keyed by status × 2 + protocol. */
  readonly fast = new Map<number, HttpSeries>();
  readonly slow = new Map<string, HttpSeries>();
  readonly tcp = new Map<string, TcpSeries>();

  constructor(labels: Labels) {
    this.labels = labels;
  }
}

export interface BaseDescription {
  reporter: 'source' | 'destination';
  source: PeerLabels;
  destination: PeerLabels;
  service: string;
  serviceName: string;
  serviceNamespace: string;
  /** `mutual_tls` or `none` on the destination side; `unknown` on the source side, as Istio reports. */
  security: string;
}

export class IstioMetrics {
  readonly #bases: BaseSeries[] = [];
  readonly #maxSeries: number;
  #series = 0;
  #overflowHttp: HttpSeries | undefined;
  #overflowTcp: TcpSeries | undefined;
  overflowed = 0;

  constructor(registry: Registry, maxSeries = 5000) {
    this.#maxSeries = maxSeries;
    new ExportedCounter(
      registry,
      'istio_requests_total',
      'Requests by Istio standard labels.',
      HTTP_LABELS,
      () => project(this.#httpSeries(), (s) => ({ labels: s.labels, value: s.requests })),
    );
    new ExportedHistogram(
      registry,
      'istio_request_duration_milliseconds',
      'Request duration in milliseconds.',
      HTTP_LABELS,
      DURATION_BUCKETS_MS,
      () => project(this.#httpSeries(), (s) => ({ labels: s.labels, data: s.duration })),
    );
    new ExportedHistogram(
      registry,
      'istio_request_bytes',
      'Request body sizes in bytes.',
      HTTP_LABELS,
      SIZE_BUCKETS,
      () => project(this.#httpSeries(), (s) => ({ labels: s.labels, data: s.requestBytes })),
    );
    new ExportedHistogram(
      registry,
      'istio_response_bytes',
      'Response body sizes in bytes.',
      HTTP_LABELS,
      SIZE_BUCKETS,
      () => project(this.#httpSeries(), (s) => ({ labels: s.labels, data: s.responseBytes })),
    );
    const tcpCounter = (name: string, help: string, pick: (s: TcpSeries) => number): void => {
      new ExportedCounter(registry, name, help, TCP_LABELS, () =>
        project(this.#tcpSeries(), (s) => ({ labels: s.labels, value: pick(s) })),
      );
    };
    tcpCounter('istio_tcp_connections_opened_total', 'TCP connections opened.', (s) => s.opened);
    tcpCounter('istio_tcp_connections_closed_total', 'TCP connections closed.', (s) => s.closed);
    tcpCounter(
      'istio_tcp_sent_bytes_total',
      'Bytes sent to the downstream on TCP connections.',
      (s) => s.sent,
    );
    tcpCounter(
      'istio_tcp_received_bytes_total',
      'Bytes received from the downstream on TCP connections.',
      (s) => s.received,
    );
  }

  /** Every HTTP series, overflow included (for the telemetry report, read off the data path). */
  httpSeries(): Iterable<HttpSeries> {
    return this.#httpSeries();
  }

  *#httpSeries(): Generator<HttpSeries> {
    for (const b of this.#bases) {
      yield* b.fast.values();
      yield* b.slow.values();
    }
    if (this.#overflowHttp !== undefined) yield this.#overflowHttp;
  }

  *#tcpSeries(): Generator<TcpSeries> {
    for (const b of this.#bases) yield* b.tcp.values();
    if (this.#overflowTcp !== undefined) yield this.#overflowTcp;
  }

  /** A base for this combination; cache it (on an endpoint or connection) and reuse it. */
  base(d: BaseDescription): BaseSeries {
    const labels: Labels = { reporter: d.reporter };
    for (const l of PEER_LABELS) labels[`source_${l}`] = d.source[l];
    for (const l of PEER_LABELS) labels[`destination_${l}`] = d.destination[l];
    labels.destination_service = d.service;
    labels.destination_service_name = d.serviceName;
    labels.destination_service_namespace = d.serviceNamespace;
    labels.connection_security_policy = d.security;
    const key = JSON.stringify(labels);
    const existing = this.#byKey.get(key);
    if (existing !== undefined) return existing;
    const base = new BaseSeries(labels);
    this.#byKey.set(key, base);
    this.#bases.push(base);
    return base;
  }

  readonly #byKey = new Map<string, BaseSeries>();

  #overflow(): HttpSeries {
    this.overflowed++;
    this.#overflowHttp ??= new HttpSeries(overflowLabels(HTTP_LABELS));
    return this.#overflowHttp;
  }

  /** One finished HTTP request. */
  recordHttp(
    base: BaseSeries,
    status: number,
    flags: string,
    grpcStatus: string,
    protocol: RequestProtocol,
    durationMs: number,
    requestBytes: number,
    responseBytes: number,
  ): void {
    let series: HttpSeries | undefined;
    if (flags === '-' && grpcStatus === '') {
      const key = status * 2 + (protocol === 'grpc' ? 1 : 0);
      series = base.fast.get(key);
      if (series === undefined) {
        series =
          this.#series >= this.#maxSeries
            ? this.#overflow()
            : this.#newHttp(base, status, flags, grpcStatus, protocol);
        if (series.labels.response_code !== 'overflow') base.fast.set(key, series);
      }
    } else {
      const key = `${status}|${flags}|${grpcStatus}|${protocol}`;
      series = base.slow.get(key);
      if (series === undefined) {
        series =
          this.#series >= this.#maxSeries
            ? this.#overflow()
            : this.#newHttp(base, status, flags, grpcStatus, protocol);
        if (series.labels.response_code !== 'overflow') base.slow.set(key, series);
      }
    }
    series.requests++;
    series.duration.observe(DURATION_BUCKETS_MS, durationMs);
    series.requestBytes.observe(SIZE_BUCKETS, requestBytes);
    series.responseBytes.observe(SIZE_BUCKETS, responseBytes);
  }

  #newHttp(
    base: BaseSeries,
    status: number,
    flags: string,
    grpcStatus: string,
    protocol: RequestProtocol,
  ): HttpSeries {
    this.#series++;
    return new HttpSeries({
      ...base.labels,
      request_protocol: protocol,
      response_code: String(status),
      grpc_response_status: grpcStatus,
      response_flags: flags,
    });
  }

  /** The TCP series of a base (flags are known when the connection ends; opened is counted under '-'). */
  tcp(base: BaseSeries, flags = '-'): TcpSeries {
    let series = base.tcp.get(flags);
    if (series === undefined) {
      if (this.#series >= this.#maxSeries) {
        this.overflowed++;
        this.#overflowTcp ??= new TcpSeries(overflowLabels(TCP_LABELS));
        return this.#overflowTcp;
      }
      this.#series++;
      series = new TcpSeries({ ...base.labels, request_protocol: 'tcp', response_flags: flags });
      base.tcp.set(flags, series);
    }
    return series;
  }

  get seriesCount(): number {
    return this.#series;
  }
}

function overflowLabels(names: readonly string[]): Labels {
  const labels: Labels = {};
  for (const n of names) labels[n] = 'overflow';
  return labels;
}
