/** Settings of a zone control plane. Every one has a CLI flag and an environment variable (cli/commands/zone-cp.ts). */

import type { KubeConfig } from '@kubernetes/client-node';
import type { TokenKindSpec } from '../core/api/token-routes.js';
import type { Router } from '../core/http/router.js';
import type { Store } from '../core/store/store.js';
import type { VmTokenAuthenticator } from './ca/caller-auth.js';
import type { SessionLimits } from './mds/proxy-session.js';
import type { VmSettings } from './vm/vm-model.js';

export interface DiscoverySetting {
  /** A registered source: 'universal', 'kubernetes', … */
  name: string;
  /** Source-specific options; the zone adds `zone`, `store` and `logger`. */
  options?: Record<string, unknown>;
}

export interface GlobalConnection {
  /** KDS addresses of the global CP (host:port), tried in order. */
  addresses: string[];
  /** PEM of global's CA (or a file holding it). */
  caPem?: string;
  caFile?: string;
  /** This zone's token (kind zone), or a file holding it. */
  token?: string;
  tokenFile?: string;
}

export interface KubernetesSettings {
  /** A kubeconfig file; default KUBECONFIG, then ~/.kube/config, then the in-cluster ServiceAccount. */
  kubeconfigPath?: string;
  /** A context of that kubeconfig other than its current one. */
  context?: string;
  /** A ready KubeConfig (embedding, tests); wins over kubeconfigPath. */
  kubeConfig?: KubeConfig;
  /** Audiences ServiceAccount tokens must be for (TokenReview); default the API server's. */
  audiences?: string[];
}

/** The sidecar injection webhook (HTTPS, AdmissionReview v1; zone-cp/webhook/). */
export interface WebhookSettings {
  /** Bind address. Default 0.0.0.0 (the API server calls it through a Service). */
  host?: string;
  /** HTTPS port. Default 15017; 0 picks a free one. */
  port?: number;
  /** Serving certificate (PEM, chain allowed) for the webhook Service's DNS name, and its key. */
  certFile: string;
  keyFile: string;
  /** Image of the injected sidecar, which runs `meshfed-proxy` (the lean entry of `meshfed proxy`). */
  proxyImage: string;
  /** Image of the injected init container (`meshfed capture`); default proxyImage. */
  initImage?: string;
  /**
   * MDS + CA address injected sidecars dial (host:port). Default
   * `meshfed-zone-cp.meshfed-system.svc:<gRPC port>`, the Service of deploy/zone.
   */
  zoneCpAddress?: string;
}

export interface ZoneCpOptions {
  /** This zone's name (a DNS-1123 label), as global knows it. */
  zone: string;
  /** Directory for the file store and the admin token. */
  dataDir: string;
  /** memory://, file:///abs/dir (default: file store under dataDir) or redis://host:port/db. */
  storeUrl?: string;
  /** An already open store (tests, the Kubernetes store); overrides storeUrl and is not closed by the zone. */
  store?: Store;
  /** REST API bind address. Default 127.0.0.1; non-loopback needs tlsCertFile/tlsKeyFile. */
  host?: string;
  /** REST port. Default 5682; 0 picks a free one. */
  port?: number;
  /** MDS + CA (gRPC, TLS) bind address. Default 127.0.0.1. */
  grpcHost?: string;
  /** MDS + CA port. Default 5678; 0 picks a free one. */
  grpcPort?: number;
  /** Extra DNS names for the gRPC server certificate (besides meshfed-zone-cp and localhost). */
  grpcServerNames?: string[];
  /** Discovery sources. Default: universal. */
  discovery?: DiscoverySetting[];
  /** Connect to global over KDS; absent: standalone (own root CA, policies applied here). */
  global?: GlobalConnection;
  /** Quiet time before a change is pushed. Default 100 ms. */
  pushDebounceMs?: number;
  /** Longest a change waits for a quiet moment. Default 1 s. */
  pushMaxDelayMs?: number;
  /** Proxies compiled and pushed between two turns of the event loop in a push round. Default 100. */
  pushBatchSize?: number;
  /** This zone's east-west gateway as other zones reach it, host:port (reported in the inventory). */
  gatewayAddress?: string;
  /** Where the zone's admin token is written (mode 0600). Default <dataDir>/admin-token. */
  adminTokenFile?: string;
  /** Trust domain of a standalone zone's root. Default cluster.local. */
  trustDomain?: string;
  /** Lifetime of workload certificates when the caller asks for none. Default 1 h. */
  workloadCertTtlSeconds?: number;
  /** Longest workload certificate lifetime granted. Default 24 h. */
  maxWorkloadCertTtlSeconds?: number;
  /** CA sign worker threads (CSR check + signature). Default: available parallelism − 1, at least 1; 0 signs on the main thread. */
  caWorkers?: number;
  /** Most Sign calls queued in the CA worker pool; more answer RESOURCE_EXHAUSTED. Default 1024. */
  caMaxPending?: number;
  /**
   * The cluster of a zone running in Kubernetes: ServiceAccount tokens are
   * reviewed there (TokenReview) and the `kubernetes` discovery source
   * watches it. Default (when discovery includes kubernetes): KUBECONFIG,
   * then in-cluster.
   */
  kubernetes?: KubernetesSettings;
  /** Serve REST over TLS with this certificate and key (PEM files). */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** Largest REST request body. Default 4 MiB. */
  maxBodyBytes?: number;
  /** MDS stream limits (Hello and ACK timeouts, message rate). */
  sessionLimits?: Partial<SessionLimits>;
  /** Hook for VM join tokens at the CA; default: refused there (they are redeemed at POST /api/v1/vm/join). */
  vmTokens?: VmTokenAuthenticator;
  /** VM enrollment: heartbeat period, unhealthy/removal grace, join-token default lifetime (zone-cp/vm/vm-model.ts). */
  vm?: VmSettings;
  /** More token kinds the zone issues (e.g. vm), besides proxy. */
  extraTokenKinds?: TokenKindSpec[];
  /** Serve the sidecar injection webhook; absent: not served. */
  webhook?: WebhookSettings;
  /** More REST routes (e.g. VM enrollment), added before the zone's own. */
  extraRoutes?: (router: Router, context: { store: Store; zone: string }) => void;
}

export interface ZoneCpHandle {
  readonly zone: string;
  /** Base URL of the REST API, e.g. http://127.0.0.1:5682. */
  readonly restUrl: string;
  /** MDS + CA address, host:port. */
  readonly grpcAddress: string;
  /** The trust bundle a proxy pins for the gRPC port ('' until the zone CA is known, in KDS mode). */
  readonly caPem: string;
  readonly adminTokenFile: string;
  /** Base URL of the injection webhook (https://host:port), when `webhook` is set. */
  readonly webhookUrl?: string;
  /** Port the injection webhook listens on, when `webhook` is set. */
  readonly webhookPort?: number;
  /** Resolves once the zone CA and trust bundle are loaded and discovery has synced. */
  ready(): Promise<void>;
  /** Stops everything; proxies see their streams end with UNAVAILABLE. Idempotent. */
  close(): Promise<void>;
}
