/**
 * Wire shapes of `meshfed.mds.v1.ProxyDiscovery` (core/proto/mds.proto) as
 * proto-loader decodes them (keepCase, defaults, oneofs): the one place
 * both the zone's MDS server and the MdsClient take them from.
 */

export const MDS_SERVICE = 'meshfed.mds.v1.ProxyDiscovery';
/** The MDS protocol version this build speaks (Hello.protocol_version). */
export const MDS_PROTOCOL_VERSION = 1;
/** Longest NACK error text the zone keeps; longer ones are cut. */
export const MAX_NACK_ERROR_LENGTH = 4096;

export type ProxyKind = 'sidecar' | 'gateway';

export interface HelloWire {
  proxy_id: string;
  kind: string;
  workload: string;
  namespace: string;
  software_version: string;
  protocol_version: number;
  current_version: string;
}

export interface AckWire {
  version: string;
  nonce: string;
}

export interface NackWire extends AckWire {
  error: string;
}

/** Telemetry since the previous report: JSON of core/telemetry ProxyTelemetryReport. */
export interface ReportWire {
  json: Buffer;
}

/** A decoded ProxyMessage: `message` names the oneof member that is set. */
export interface ProxyMessageWire {
  message?: 'hello' | 'ack' | 'nack' | 'report';
  hello?: HelloWire | null;
  ack?: AckWire | null;
  nack?: NackWire | null;
  report?: ReportWire | null;
}

export interface SnapshotWire {
  version: string;
  nonce: string;
  type: string;
  json: Buffer;
}

export interface ControlMessageWire {
  message?: 'snapshot';
  snapshot?: SnapshotWire | null;
}
