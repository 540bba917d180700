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
}

export interface GlobalCpHandle {
  /** Base URL of the REST API, e.g. http://127.0.0.1:5681. */
  readonly url: string;
  readonly port: number;
  readonly adminTokenFile: string;
  /** Stop accepting, finish in-flight requests, close watches and the store. Idempotent. */
  close(): Promise<void>;
}
