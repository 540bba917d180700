/**
 * What the inbound side knows about one downstream connection, decided
 * once at the handshake: mTLS or plaintext, the peer's SPIFFE identity,
 * the SNI and the inbound port it names. Requests read it from the socket
 * (HTTP/1.1) or the session (HTTP/2). Also the source labels a calling
 * proxy sends in `x-meshfed-source` for metrics (trusted only over mTLS).
 */

import type { InboundPortConfig } from '../config/config-types.js';
import { UNKNOWN_PEER, type BaseSeries, type PeerLabels } from '../telemetry/istio-metrics.js';

export const kConn = Symbol('meshfed.inboundConnection');

export interface InboundConn {
  secure: boolean;
  /** From the SNI for mTLS; undefined for plaintext (decided per request from the Host port). */
  port: InboundPortConfig | undefined;
  spiffeId: string;
  /** Istio principal form (`td/ns/x/sa/y`), '' for plaintext. */
  principal: string;
  namespace: string;
  sni: string;
  remoteAddress: string;
  localAddress: string;
  /** Metrics base cache: valid while the source header value, port and self labels are the same. */
  cacheSource: string | undefined;
  cachePort: number;
  cacheSelf: PeerLabels | undefined;
  cacheBase: BaseSeries | undefined;
}

export interface ConnHolder {
  [kConn]?: InboundConn;
}

export function newConn(secure: boolean, remoteAddress: string, localAddress: string): InboundConn {
  return {
    secure,
    port: undefined,
    spiffeId: '',
    principal: '',
    namespace: '',
    sni: '',
    remoteAddress,
    localAddress,
    cacheSource: undefined,
    cachePort: 0,
    cacheSelf: undefined,
    cacheBase: undefined,
  };
}

/** Fields of `x-meshfed-source`, in order. */
const SOURCE_FIELDS = [
  'workload',
  'workload_namespace',
  'app',
  'version',
  'canonical_service',
  'canonical_revision',
  'cluster',
] as const;

/** The header value this proxy sends, built once per config. */
export function formatSourceHeader(self: PeerLabels): string {
  return SOURCE_FIELDS.map((f) => encodeURIComponent(self[f])).join(';');
}

/** The caller's labels from its header (mTLS only) and its verified principal. */
export function parseSourceHeader(
  value: string | undefined,
  spiffeId: string,
  namespace: string,
): PeerLabels {
  const peer: PeerLabels = { ...UNKNOWN_PEER };
  if (spiffeId !== '') {
    peer.principal = spiffeId;
    peer.workload_namespace = namespace;
  }
  if (value === undefined || spiffeId === '') return peer;
  const parts = value.split(';');
  if (parts.length !== SOURCE_FIELDS.length) return peer;
  SOURCE_FIELDS.forEach((f, i) => {
    let v = parts[i] ?? '';
    try {
      v = decodeURIComponent(v);
    } catch {
      v = 'unknown';
    }
    // The namespace is the one the certificate proves, not what the header claims.
    if (f !== 'workload_namespace' && v !== '') peer[f] = v.slice(0, 253);
  });
  return peer;
}
