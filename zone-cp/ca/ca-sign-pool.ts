/**
 * A small pool of worker threads that do the CPU-heavy part of a workload
 * certificate: parse the CSR, verify its self-signature (proof that the
 * caller holds the key) and sign. Two ECDSA operations per call; on one
 * event loop they cap the zone CA at one core, so they run here.
 *
 * The caller is authenticated on the main thread (it needs the token
 * service and revocation state); a worker signs exactly the SPIFFE ID it is
 * handed. The CA private key is posted to each worker once per CA (start,
 * rotation): worker threads share this process's address space and trust
 * boundary, so whoever could read a worker's copy could read the main
 * thread's; the key is never written anywhere new and never leaves the
 * process.
 *
 * Failures are clear to the caller: a full queue answers
 * MESHFED_ERR_RESOURCE_EXHAUSTED, a worker that dies fails its in-flight
 * jobs with MESHFED_ERR_UNAVAILABLE (retry) and is replaced, and a closed
 * pool answers MESHFED_ERR_CLOSED.
 */

import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ErrorCodes, MeshError, type ErrorCode } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { Counter, Gauge, type Registry } from '../../core/metrics.js';
import type { CertificateAuthority } from '../../core/pki/ca.js';
import { readCsr } from '../../core/pki/csr.js';
import type { CaMaterialMessage, SignJobMessage, WorkerToPool } from './ca-sign-messages.js';

export interface CaSignPoolOptions {
  /**
   * Worker threads. Default: available parallelism − 1, at least 1. 0 signs
   * on the main thread (no workers).
   */
  size?: number;
  /** Most jobs waiting or in flight across the pool; more are refused. Default 1024. */
  maxPending?: number;
  /** The worker entry (compiled ca-sign-worker.js). Default: found next to this module (see workerScriptUrl). */
  workerScript?: URL;
  logger: Logger;
  registry?: Registry;
}

/** The CA to sign with: the loaded CA (for main-thread signing) and the PEMs workers load it from. */
export interface CaSigningMaterial {
  ca: CertificateAuthority;
  /** The CA certificate followed by its parents. */
  certPem: string;
  /** PKCS#8 PEM of the CA key. */
  keyPem: string;
}

export interface SignRequest {
  /** The CA (by fingerprint) the certificate must chain to; given earlier to `setCa`. */
  caFingerprint: string;
  csrPem: string;
  /** The identity the main thread authenticated; never taken from the CSR. */
  spiffeId: string;
  ttlSeconds: number;
}

export interface SignedLeaf {
  certPem: string;
  /** Upper-case hex. */
  serial: string;
  notAfter: Date;
}

export const DEFAULT_CA_POOL_MAX_PENDING = 1024;
/** CAs kept: the current one and those before it, so jobs queued across a rotation still sign. */
const KEEP_CAS = 3;
/** A worker that keeps dying is restarted no faster than this. */
const RESPAWN_DELAY_MS = { first: 50, max: 5000 };

interface Job {
  resolve(leaf: SignedLeaf): void;
  reject(err: MeshError): void;
}

interface Slot {
  index: number;
  worker: Worker | undefined;
  pending: Map<number, Job>;
  /** Consecutive crashes without a job answered in between: sets the respawn delay. */
  crashes: number;
  respawnTimer: NodeJS.Timeout | undefined;
}

/** Default pool size: one core stays with the event loop (gRPC, TLS, MDS pushes). */
export function defaultCaPoolSize(): number {
  return Math.max(1, availableParallelism() - 1);
}

/**
 * Where the compiled worker is: next to this module when running the build;
 * when running from the TypeScript sources (jest), the build's copy under
 * `dist/` (npm test builds first). Undefined when neither exists.
 */
export function workerScriptUrl(): URL | undefined {
  const sibling = new URL('./ca-sign-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  if (import.meta.url.endsWith('.ts')) {
    const built = new URL('../../dist/zone-cp/ca/ca-sign-worker.js', import.meta.url);
    if (existsSync(fileURLToPath(built))) return built;
  }
  return undefined;
}

/** Most worker threads a pool takes (the `--ca-workers` flag's bound too). */
export const MAX_CA_WORKERS = 64;

export class CaSignPool {
  private readonly slots: Slot[] = [];
  private readonly materials = new Map<string, CaSigningMaterial>();
  private readonly maxPending: number;
  private readonly script: URL | undefined;
  private readonly restarts: Counter | undefined;
  private pendingCount = 0;
  private nextId = 1;
  private closed = false;
  private closing: Promise<void> | undefined;
  private drained: (() => void) | undefined;

  constructor(private readonly options: CaSignPoolOptions) {
    const size = options.size ?? defaultCaPoolSize();
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_CA_WORKERS) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `CA pool size must be a whole number from 0 to ${MAX_CA_WORKERS}, got ${size}`,
        {
          field: 'caWorkers',
        },
      );
    }
    this.maxPending = options.maxPending ?? DEFAULT_CA_POOL_MAX_PENDING;
    if (!Number.isSafeInteger(this.maxPending) || this.maxPending < 1) {
      throw new MeshError(ErrorCodes.CONFIG, `CA pool queue bound must be a positive whole number`, {
        field: 'caMaxPending',
      });
    }
    this.script = size === 0 ? undefined : (options.workerScript ?? workerScriptUrl());
    if (size > 0 && this.script === undefined) {
      options.logger.warn(
        'CA sign worker not found (running from sources without a build): signing on the main thread',
      );
    }
    if (this.script !== undefined) {
      for (let index = 0; index < size; index++) {
        const slot: Slot = {
          index,
          worker: undefined,
          pending: new Map(),
          crashes: 0,
          respawnTimer: undefined,
        };
        this.slots.push(slot);
        this.spawn(slot);
      }
    }
    const registry = options.registry;
    if (registry !== undefined) {
      const slots = this.slots;
      const pending = (): number => this.pendingCount;
      new Gauge({
        name: 'meshfed_zone_ca_pool_workers',
        help: 'CA sign worker threads running (0: signing on the main thread).',
        registers: [registry],
        collect() {
          this.set(slots.filter((s) => s.worker !== undefined).length);
        },
      });
      new Gauge({
        name: 'meshfed_zone_ca_pool_pending',
        help: 'Sign jobs queued or in flight in the CA worker pool.',
        registers: [registry],
        collect() {
          this.set(pending());
        },
      });
      this.restarts = new Counter({
        name: 'meshfed_zone_ca_pool_worker_restarts_total',
        help: 'CA sign workers that stopped unexpectedly and were replaced.',
        registers: [registry],
      });
    }
  }

  /** Worker threads configured (0: main-thread signing). */
  get size(): number {
    return this.slots.length;
  }

  /** Jobs queued or in flight. */
  get pending(): number {
    return this.pendingCount;
  }

  /**
   * Makes `material` available to sign with (at start and on every rotation).
   * Posted to the workers before any job that names it, so no job can
   * overtake its CA.
   */
  setCa(material: CaSigningMaterial): void {
    if (this.closed) return;
    const fingerprint = material.ca.fingerprint;
    this.materials.delete(fingerprint);
    this.materials.set(fingerprint, material);
    while (this.materials.size > KEEP_CAS) {
      const oldest = this.materials.keys().next();
      if (oldest.done) break;
      this.materials.delete(oldest.value);
    }
    const message = caMessage(material);
    for (const slot of this.slots) slot.worker?.postMessage(message);
  }

  /** True when `setCa` gave the CA with this fingerprint. */
  has(fingerprint: string): boolean {
    return this.materials.has(fingerprint);
  }

  /** Checks the CSR's self-signature and signs a leaf for `spiffeId`. Rejects with a MeshError. */
  sign(request: SignRequest): Promise<SignedLeaf> {
    if (this.closed) return Promise.reject(new MeshError(ErrorCodes.CLOSED, 'the zone CA is shutting down'));
    const material = this.materials.get(request.caFingerprint);
    if (material === undefined) {
      return Promise.reject(new MeshError(ErrorCodes.UNAVAILABLE, 'the zone CA is not loaded yet'));
    }
    if (this.slots.length === 0) return signHere(material.ca, request);
    if (this.pendingCount >= this.maxPending) {
      return Promise.reject(
        new MeshError(
          ErrorCodes.RESOURCE_EXHAUSTED,
          `the zone CA has ${this.pendingCount} signatures queued (limit ${this.maxPending}); retry with backoff`,
        ),
      );
    }
    const slot = this.leastLoaded();
    if (slot?.worker === undefined) {
      return Promise.reject(
        new MeshError(ErrorCodes.UNAVAILABLE, 'every CA sign worker is restarting; retry shortly'),
      );
    }
    const id = this.nextId++;
    const job: SignJobMessage = {
      type: 'sign',
      id,
      ca: request.caFingerprint,
      csrPem: request.csrPem,
      spiffeId: request.spiffeId,
      ttlSeconds: request.ttlSeconds,
    };
    return new Promise<SignedLeaf>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      this.pendingCount++;
      slot.worker?.postMessage(job);
    });
  }

  /**
   * Lets in-flight jobs finish (up to `graceMs`), then stops the workers;
   * jobs still open fail with MESHFED_ERR_CLOSED. Idempotent.
   */
  close(graceMs = 2000): Promise<void> {
    this.closing ??= this.shutdown(graceMs);
    return this.closing;
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.closed = true;
    if (this.pendingCount > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        timer.unref();
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.drained = undefined;
    await Promise.all(
      this.slots.map(async (slot) => {
        if (slot.respawnTimer !== undefined) clearTimeout(slot.respawnTimer);
        const worker = slot.worker;
        slot.worker = undefined;
        this.failAll(slot, new MeshError(ErrorCodes.CLOSED, 'the zone CA is shutting down'));
        if (worker !== undefined) await worker.terminate();
      }),
    );
    this.materials.clear();
  }

  private leastLoaded(): Slot | undefined {
    let best: Slot | undefined;
    for (const slot of this.slots) {
      if (slot.worker === undefined) continue;
      if (best === undefined || slot.pending.size < best.pending.size) best = slot;
    }
    return best;
  }

  private spawn(slot: Slot): void {
    const script = this.script;
    if (this.closed || script === undefined) return;
    const worker = new Worker(script, { name: `meshfed-ca-sign-${slot.index}` });
    // The gRPC server keeps the process alive; an idle pool must not.
    worker.unref();
    slot.worker = worker;
    for (const material of this.materials.values()) worker.postMessage(caMessage(material));
    let failure: Error | undefined;
    worker.on('message', (message: WorkerToPool) => this.answer(slot, message));
    worker.on('error', (err) => {
      failure = err;
    });
    worker.on('exit', (code) => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      if (this.closed) return;
      const reason = failure?.message ?? `exit code ${code}`;
      this.options.logger.error('CA sign worker stopped; replacing it', {
        worker: slot.index,
        reason,
        inFlight: slot.pending.size,
      });
      this.restarts?.inc();
      this.failAll(
        slot,
        new MeshError(
          ErrorCodes.UNAVAILABLE,
          `the CA sign worker handling this request stopped (${reason}); retry`,
        ),
      );
      const delay = Math.min(
        RESPAWN_DELAY_MS.max,
        slot.crashes === 0 ? 0 : RESPAWN_DELAY_MS.first * 2 ** slot.crashes,
      );
      slot.crashes++;
      slot.respawnTimer = setTimeout(() => {
        slot.respawnTimer = undefined;
        this.spawn(slot);
      }, delay);
      slot.respawnTimer.unref();
    });
  }

  private answer(slot: Slot, message: WorkerToPool): void {
    const job = slot.pending.get(message.id);
    if (job === undefined) return;
    slot.pending.delete(message.id);
    slot.crashes = 0;
    this.settled();
    if (message.type === 'signed') {
      job.resolve({
        certPem: message.certPem,
        serial: message.serial,
        notAfter: new Date(message.notAfterMs),
      });
    } else {
      job.reject(new MeshError(knownCode(message.code), message.message));
    }
  }

  private failAll(slot: Slot, err: MeshError): void {
    const jobs = [...slot.pending.values()];
    slot.pending.clear();
    for (const job of jobs) {
      this.settled();
      job.reject(err);
    }
  }

  private settled(): void {
    this.pendingCount--;
    if (this.pendingCount === 0) this.drained?.();
  }
}

function caMessage(material: CaSigningMaterial): CaMaterialMessage {
  return {
    type: 'ca',
    fingerprint: material.ca.fingerprint,
    certPem: material.certPem,
    keyPem: material.keyPem,
  };
}

/** The same work as a worker, on this thread (pool size 0). */
function signHere(ca: CertificateAuthority, request: SignRequest): Promise<SignedLeaf> {
  try {
    const { publicKey } = readCsr(request.csrPem);
    const issued = ca.signWorkload(publicKey, { spiffeId: request.spiffeId, ttlSeconds: request.ttlSeconds });
    return Promise.resolve({ certPem: issued.certPem, serial: issued.serial, notAfter: issued.notAfter });
  } catch (err) {
    return Promise.reject(
      err instanceof MeshError
        ? err
        : new MeshError(ErrorCodes.INTERNAL, `signing failed: ${(err as Error).message}`),
    );
  }
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCodes));

function knownCode(code: string): ErrorCode {
  return KNOWN_CODES.has(code) ? (code as ErrorCode) : ErrorCodes.INTERNAL;
}
