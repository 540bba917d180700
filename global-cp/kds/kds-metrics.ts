/** Prometheus metrics of the KDS server, registered on the global CP's own registry. */

import { Counter, Gauge, Histogram, type Registry } from '../../core/metrics.js';

export interface KdsMetrics {
  streams: Gauge;
  refusals: Counter;
  dropped: Counter;
  resyncs: Counter;
  messagesSent: Counter;
  bytesSent: Counter;
  resourcesSent: Counter;
  messagesReceived: Counter;
  nacks: Counter;
  overflows: Counter;
  ackLatency: Histogram;
}

export function createKdsMetrics(registry: Registry): KdsMetrics {
  return {
    streams: new Gauge({
      name: 'meshfed_kds_streams',
      help: 'Open KDS streams of authenticated zones on this replica.',
      registers: [registry],
    }),
    refusals: new Counter({
      name: 'meshfed_kds_refusals_total',
      help: 'KDS streams refused, by error code (token invalid, zone disabled, unsupported version, …).',
      labelNames: ['code'],
      registers: [registry],
    }),
    dropped: new Counter({
      name: 'meshfed_kds_streams_dropped_total',
      help: 'KDS streams global ended after they were accepted, by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    resyncs: new Counter({
      name: 'meshfed_kds_syncs_total',
      help: 'Stream starts by kind of sync: full (every object, with deletions) or delta (changes since the zone revision).',
      labelNames: ['mode'],
      registers: [registry],
    }),
    messagesSent: new Counter({
      name: 'meshfed_kds_messages_sent_total',
      help: 'Messages sent to zones, by type.',
      labelNames: ['type'],
      registers: [registry],
    }),
    bytesSent: new Counter({
      name: 'meshfed_kds_payload_bytes_sent_total',
      help: 'Changes payload bytes sent to zones (after compression).',
      registers: [registry],
    }),
    resourcesSent: new Counter({
      name: 'meshfed_kds_resources_sent_total',
      help: 'Upserts and deletions sent to zones.',
      registers: [registry],
    }),
    messagesReceived: new Counter({
      name: 'meshfed_kds_messages_received_total',
      help: 'Messages received from zones, by type.',
      labelNames: ['type'],
      registers: [registry],
    }),
    nacks: new Counter({
      name: 'meshfed_kds_nacked_resources_total',
      help: 'Resources zones reported they could not apply.',
      registers: [registry],
    }),
    overflows: new Counter({
      name: 'meshfed_kds_queue_overflows_total',
      help: 'Times the changes queued for a zone exceeded the bound and were replaced by a full resync.',
      registers: [registry],
    }),
    ackLatency: new Histogram({
      name: 'meshfed_kds_ack_latency_seconds',
      help: 'Time from sending a Changes message to the zone acknowledging it.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  };
}
