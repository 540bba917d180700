import type { KdsSettings } from './kds/kds-settings.js';

/** Settings of a global control plane. Every one has a CLI flag and an environment variable. */
export interface GlobalCpOptions {
  /** Address the REST API binds to. Default 127.0.0.1. A non-loopback address requires TLS. */
  host?: string;
  /** REST API port. Default 5681; 0 picks a free port. */
  port?: number;
  /**
   * Store location: `memory://` (volatile), `file:///abs/dir` (memory + append-only
   * file, the default under dataDir) or `redis://host:port/db`.
   */
  storeUrl?: string;
  /** Directory for the file store and the admin token file. Default ./.meshfed/global. */
  dataDir: string;
  /** Where the generated admin token is written (mode 0600). Default <dataDir>/admin-token. */
  adminTokenFile?: string;
  /** Operator-provided root CA (PEM files). Both or neither. */
  caCertFile?: string;
  caKeyFile?: string;
  /** Trust domain for a newly created mesh root. Default cluster.local. */
  trustDomain?: string;
  /** Serve the API over TLS with this certificate and key (PEM files). */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** Largest request body accepted, in bytes. Default 4 MiB. */
  maxBodyBytes?: number;
  /**
   * Address the KDS server (zone sync, gRPC over TLS) binds to. Default: the
   * API host. KDS is always TLS with zone tokens, so any address is allowed.
   */
  kdsHost?: string;
  /**
   * KDS port. Default 5685, or a free port when `port` is 0; 0 picks a free
   * port (the handle's kdsAddress tells which).
   */
  kdsPort?: number;
  /**
   * How long a disconnected zone's services stay in other zones' catalogs
   * before they are withdrawn, in ms. Default 60 s.
   */
  zoneGracePeriodMs?: number;
  /** Extra DNS names for the KDS server certificate (zones check its SPIFFE ID, not names). */
  kdsDnsNames?: string[];
  /** Advanced KDS tuning (queue bounds, keepalive, rate limits); see global-cp/kds/kds-settings.ts. */
  kds?: Partial<KdsSettings>;
}

export interface GlobalCpHandle {
  /** Base URL of the REST API, e.g. http://127.0.0.1:5681. */
  readonly url: string;
  readonly port: number;
  readonly adminTokenFile: string;
  /** host:port of the KDS server zones dial. */
  readonly kdsAddress: string;
  readonly kdsPort: number;
  /** PEM of the mesh root CA: what zones pin (also GET /api/v1/trust-bundle). */
  readonly caCertPem: string;
  /** Stop accepting, finish in-flight requests, close watches and the store. Idempotent. */
  close(): Promise<void>;
}
