/** What `/inspect/proxies` shows about one proxy: kept after it disconnects, for a while. */

export interface ProxyAckRecord {
  version: string;
  /** ISO time. */
  at: string;
}

export interface ProxyNackRecord extends ProxyAckRecord {
  error: string;
}

export interface ProxyRecord {
  id: string;
  kind: 'sidecar' | 'gateway';
  workload: string;
  namespace: string;
  /** How the stream authenticated: proxy-token, certificate, admin-token, … */
  credential: string;
  connected: boolean;
  connectedAt: string;
  disconnectedAt?: string;
  /** The peer's address as gRPC reports it. */
  peer: string;
  softwareVersion: string;
  /** The version the proxy last ACKed (or said it runs, on reconnect). */
  configVersion: string;
  /** The version compiled for it now, when that differs from what it runs. */
  pendingVersion?: string;
  lastAck?: ProxyAckRecord;
  lastNack?: ProxyNackRecord;
  pushes: number;
  /** Why the proxy has no config yet, or why a push is held back. */
  status?: string;
  /** Expiry of the proxy's workload certificate, when the zone CA issued (or saw) it. */
  certificateExpiry?: string;
  spiffeId?: string;
}
