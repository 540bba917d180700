/**
 * Keeps a workload's certificate current: generates a key locally, obtains
 * a certificate from the zone CA, and renews it at half-life (with jitter,
 * so a fleet started together does not renew together). Renewal
 * authenticates with the current certificate, so a one-shot bootstrap
 * token is needed only once; it is tried again only if the certificate
 * credential is refused (expired, CA rotated). On failure the old
 * certificate stays in use and the renewal is retried with backoff.
 */

import { EventEmitter } from 'node:events';
import { ErrorCodes, MeshError, isMeshError } from '../errors.js';
import type { Logger } from '../log.js';
import { generateP256KeyPair } from '../pki/keygen.js';
import { requestCertificate, type IssuedCertificate } from './ca-client.js';
import type { ZoneCredential } from './zone-channel.js';
import { formatIsoTime } from '../utc-format.js';

export interface CurrentCertificate {
  /** Leaf first, then intermediates. */
  certChainPem: string;
  /** PKCS#8 PEM of the key the certificate is for. */
  keyPem: string;
  /** Roots to trust for peers (and for the zone CP itself). */
  trustBundlePem: string;
  notAfter: Date;
  spiffeId: string;
  serial: string;
}

export interface CertificateManagerOptions {
  /** Zone CP gRPC address, host:port. */
  address: string;
  /** PEM roots pinned for the first request; later requests pin the trust bundle the CA returned. */
  caPem: string;
  /** Credential for the first certificate (and the fallback if the certificate is refused). */
  bootstrap: ZoneCredential | (() => ZoneCredential | undefined);
  /** Requested lifetime; default the CA's (1 h). */
  ttlSeconds?: number;
  /** Renew after this share of the lifetime. Default 0.5. */
  renewFraction?: number;
  /** ± share of the renewal delay randomised. Default 0.1. */
  jitter?: number;
  /** First retry delay after a failed renewal. Default 1 s; doubles up to `maxRetryMs`. */
  retryMs?: number;
  /** Default 30 s. */
  maxRetryMs?: number;
  /** How long `start()` keeps retrying an unreachable CA. Default 30 s. */
  startTimeoutMs?: number;
  logger?: Logger;
}

/** Events: `rotated(certificate)` after each new certificate (the first included), `renewalFailed(error)`. */
export class CertificateManager extends EventEmitter {
  #current: CurrentCertificate | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #renewing: Promise<CurrentCertificate> | undefined;
  #failures = 0;
  readonly #options: CertificateManagerOptions;

  constructor(options: CertificateManagerOptions) {
    super();
    const fraction = options.renewFraction ?? 0.5;
    if (!(fraction > 0 && fraction < 1)) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'renewFraction must be between 0 and 1');
    }
    this.#options = options;
  }

  /**
   * Obtains the first certificate. Retries while the CA is unreachable (up
   * to `startTimeoutMs`); a refused credential rejects at once with the
   * zone's reason.
   */
  async start(): Promise<CurrentCertificate> {
    const deadline = Date.now() + (this.#options.startTimeoutMs ?? 30_000);
    let delay = this.#options.retryMs ?? 1000;
    for (;;) {
      try {
        return await this.renewNow();
      } catch (err) {
        if (!isRetryable(err) || Date.now() + delay > deadline || this.#closed) throw err;
        this.#options.logger?.warn('zone CA not reachable yet; retrying', { err, retryInMs: delay });
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, this.#options.maxRetryMs ?? 30_000);
      }
    }
  }

  /** The certificate in use. Throws CLOSED/UNAVAILABLE before the first one arrived. */
  current(): CurrentCertificate {
    if (this.#current === undefined) {
      throw new MeshError(
        ErrorCodes.UNAVAILABLE,
        'no workload certificate yet: the zone CA has not answered',
      );
    }
    return this.#current;
  }

  /** Renews at once (concurrent calls share one request). */
  renewNow(): Promise<CurrentCertificate> {
    if (this.#closed)
      return Promise.reject(new MeshError(ErrorCodes.CLOSED, 'certificate manager is closed'));
    this.#renewing ??= this.#renew().finally(() => {
      this.#renewing = undefined;
    });
    return this.#renewing;
  }

  /** Stops renewing. Idempotent; the last certificate stays readable. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #renew(): Promise<CurrentCertificate> {
    const { privateKey, publicKey } = generateP256KeyPair();
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    let issued: IssuedCertificate;
    try {
      issued = await this.#request(privateKey, publicKey);
    } catch (err) {
      this.#failures++;
      this.emit('renewalFailed', err);
      if (this.#current !== undefined) this.#schedule(this.#retryDelay());
      throw err;
    }
    this.#failures = 0;
    const next: CurrentCertificate = {
      certChainPem: issued.certChainPem,
      keyPem,
      trustBundlePem: issued.trustBundlePem,
      notAfter: issued.notAfter,
      spiffeId: issued.spiffeId,
      serial: issued.serial,
    };
    this.#current = next;
    const lifetime = Math.max(0, next.notAfter.getTime() - Date.now());
    const jitter = this.#options.jitter ?? 0.1;
    const fraction = (this.#options.renewFraction ?? 0.5) * (1 + jitter * (Math.random() * 2 - 1));
    this.#schedule(lifetime * fraction);
    this.#options.logger?.info('workload certificate issued', {
      spiffeId: next.spiffeId,
      serial: next.serial,
      notAfter: formatIsoTime(next.notAfter.getTime()),
    });
    this.emit('rotated', next);
    return next;
  }

  /** The current certificate as credential first; the bootstrap credential if that is refused or absent. */
  async #request(
    privateKey: Parameters<typeof requestCertificate>[0]['privateKey'],
    publicKey: Parameters<typeof requestCertificate>[0]['publicKey'],
  ): Promise<IssuedCertificate> {
    const current = this.#current;
    const base = {
      address: this.#options.address,
      privateKey,
      publicKey,
      ...(this.#options.ttlSeconds === undefined ? {} : { ttlSeconds: this.#options.ttlSeconds }),
    };
    if (current !== undefined && current.notAfter.getTime() > Date.now()) {
      try {
        return await requestCertificate({
          ...base,
          caPem: current.trustBundlePem,
          credential: { certPem: current.certChainPem, keyPem: current.keyPem },
        });
      } catch (err) {
        if (isRetryable(err)) throw err;
        this.#options.logger?.warn(
          'renewal with the current certificate refused; trying the bootstrap credential',
          {
            err,
          },
        );
      }
    }
    const bootstrap =
      typeof this.#options.bootstrap === 'function' ? this.#options.bootstrap() : this.#options.bootstrap;
    if (bootstrap === undefined) {
      throw new MeshError(
        ErrorCodes.UNAUTHENTICATED,
        'no credential left to obtain a workload certificate with',
      );
    }
    return requestCertificate({
      ...base,
      caPem: current?.trustBundlePem ?? this.#options.caPem,
      credential: bootstrap,
    });
  }

  #retryDelay(): number {
    const base = Math.min(
      (this.#options.retryMs ?? 1000) * 2 ** Math.min(this.#failures - 1, 20),
      this.#options.maxRetryMs ?? 30_000,
    );
    return base * (0.8 + Math.random() * 0.4);
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    // setTimeout overflows above 2^31-1 ms (~24.8 days).
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.renewNow().catch((err: unknown) => {
          this.#options.logger?.warn('certificate renewal failed; keeping the current certificate', { err });
        });
      },
      Math.min(Math.max(0, delayMs), 2 ** 31 - 1),
    );
    this.#timer.unref();
  }
}

/** Transport trouble is worth retrying; a refused credential or CSR is not. */
function isRetryable(err: unknown): boolean {
  return isMeshError(err) && (err.code === ErrorCodes.UNAVAILABLE || err.code === ErrorCodes.CLOSED);
}
