/**
 * Messages between the CA sign pool (main thread) and its workers
 * (ca-sign-worker.ts). Plain data only: they cross a structured clone.
 */

/** A CA a worker may sign with, named by its fingerprint. */
export interface CaMaterialMessage {
  type: 'ca';
  fingerprint: string;
  /** The CA certificate followed by its parents (what `loadCa` takes). */
  certPem: string;
  /** PKCS#8 PEM of the CA key. */
  keyPem: string;
}

/** One CSR to check and sign for an identity the main thread already authenticated. */
export interface SignJobMessage {
  type: 'sign';
  id: number;
  /** Fingerprint of the CA to sign with (sent earlier in a `ca` message). */
  ca: string;
  csrPem: string;
  spiffeId: string;
  ttlSeconds: number;
}

export type PoolToWorker = CaMaterialMessage | SignJobMessage;

export interface SignedMessage {
  type: 'signed';
  id: number;
  certPem: string;
  /** Upper-case hex. */
  serial: string;
  notAfterMs: number;
}

export interface SignFailedMessage {
  type: 'failed';
  id: number;
  /** A MESHFED_ERR_* code. */
  code: string;
  message: string;
}

export type WorkerToPool = SignedMessage | SignFailedMessage;
