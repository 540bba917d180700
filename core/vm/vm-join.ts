/**
 * The VM join exchange shared by the zone CP (which answers it) and the VM
 * agent (which reads it): the body of `POST /api/v1/vm/join`'s answer.
 */

/** What `POST /api/v1/vm/join` answers. */
export interface JoinAnswer {
  zone: string;
  trustDomain: string;
  workloadGroup: string;
  namespace: string;
  workloadEntry: string;
  serviceAccount: string;
  spiffeId: string;
  certChainPem: string;
  trustBundlePem: string;
  serial: string;
  notAfter: string;
  /** Where the VM dials MDS and the CA. `wildcard`: the zone listens on every address; dial the join URL's host. */
  grpc: { host: string; port: number; wildcard: boolean };
  inboundPort: number;
  ports: Record<string, number>;
  labels: Record<string, string>;
  heartbeatIntervalSeconds: number;
  probe: Record<string, unknown> | null;
  /** The same key had joined with this token: nothing new was counted. */
  alreadyJoined: boolean;
  /** Older entries at the same address, removed by this join. */
  replaced: string[];
  tokenUses: { used: number; limit: number };
}
