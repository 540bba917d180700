/**
 * `meshfed.ca.v1.CertificateAuthority/Sign`: authenticate the caller, take
 * only the public key from its CSR, and sign a workload certificate for the
 * identity the caller proved. The CSR's subject and extensions are never
 * read, so a caller cannot ask its way into another identity.
 */

import {
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { SignRequestWire, SignResponseWire } from '../../core/ca/ca-codec.js';
import type { Logger } from '../../core/log.js';
import { Counter, Histogram, type Registry } from '../../core/metrics.js';
import { ErrorCodes, isMeshError } from '../../core/errors.js';
import { formatSpiffeId } from '../../core/pki/spiffe.js';
import { GrpcRefusal, toRefusal } from '../grpc-status.js';
import type { CallerAuthenticator } from './caller-auth.js';
import { CaSignPool, type SignedLeaf } from './ca-sign-pool.js';
import type { IssuanceLog } from './issuance-log.js';
import type { ZoneCaKeeper } from './zone-ca-keeper.js';

export const DEFAULT_WORKLOAD_TTL_SECONDS = 3600;
export const DEFAULT_MAX_WORKLOAD_TTL_SECONDS = 24 * 3600;
const MAX_CSR_LENGTH = 16 * 1024;

export interface CaServiceOptions {
  keeper: ZoneCaKeeper;
  auth: CallerAuthenticator;
  issuance: IssuanceLog;
  registry: Registry;
  logger: Logger;
  /** Lifetime when the caller asks for none. Default 1 h. */
  defaultTtlSeconds?: number;
  /** Longest lifetime granted; longer requests are shortened. Default 24 h. */
  maxTtlSeconds?: number;
  /** Where CSRs are checked and signed (worker threads); default: on the main thread. Not closed here. */
  pool?: CaSignPool;
}

/** What a client sent: untrusted, so either field may be missing. */
type ReceivedSignRequest = Partial<SignRequestWire>;

export function caServiceHandlers(options: CaServiceOptions): UntypedServiceImplementation {
  const defaultTtl = options.defaultTtlSeconds ?? DEFAULT_WORKLOAD_TTL_SECONDS;
  const maxTtl = options.maxTtlSeconds ?? DEFAULT_MAX_WORKLOAD_TTL_SECONDS;
  const pool = options.pool ?? new CaSignPool({ size: 0, logger: options.logger });
  const signatures = new Counter({
    name: 'meshfed_zone_ca_signatures_total',
    help: 'Sign requests answered by the workload CA, by result and credential kind.',
    labelNames: ['result', 'via'],
    registers: [options.registry],
  });
  const latency = new Histogram({
    name: 'meshfed_zone_ca_sign_duration_seconds',
    help: 'Time to authenticate and sign one workload certificate.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [options.registry],
  });

  const sign = async (
    call: ServerUnaryCall<ReceivedSignRequest, SignResponseWire>,
  ): Promise<SignResponseWire> => {
    const caller = await options.auth.authenticate(call.metadata, call.getAuthContext());
    if (caller.namespace === undefined || caller.serviceAccount === undefined) {
      throw new GrpcRefusal(
        status.PERMISSION_DENIED,
        `a ${caller.via} cannot request a workload certificate: use a proxy token`,
      );
    }
    const material = options.keeper.signingMaterial;
    const bundle = options.keeper.bundle;
    if (material === undefined || bundle === undefined) {
      throw new GrpcRefusal(
        status.UNAVAILABLE,
        'the zone CA is not ready yet (waiting for its intermediate from global)',
      );
    }
    const { ca } = material;
    // Read with the CA: the chain must be the one of the CA that signs, even if it rotates meanwhile.
    const issuingChain = options.keeper.issuingChain;
    const csrPem = call.request.csr_pem ?? '';
    if (csrPem.length === 0 || csrPem.length > MAX_CSR_LENGTH) {
      throw new GrpcRefusal(
        status.INVALID_ARGUMENT,
        `csr_pem must be a PEM CSR of at most ${MAX_CSR_LENGTH} bytes`,
      );
    }
    const requested = Number(call.request.ttl_seconds ?? 0);
    const ttlSeconds = requested > 0 ? Math.min(requested, maxTtl) : defaultTtl;
    const spiffeId = formatSpiffeId({
      trustDomain: ca.trustDomain,
      namespace: caller.namespace,
      serviceAccount: caller.serviceAccount,
    });
    if (!pool.has(ca.fingerprint)) pool.setCa(material);
    let issued: SignedLeaf;
    try {
      // CSR parsing, its self-signature check and the signature run on a worker thread.
      issued = await pool.sign({ caFingerprint: ca.fingerprint, csrPem, spiffeId, ttlSeconds });
    } catch (err) {
      throw poolRefusal(err);
    }
    options.issuance.record({
      spiffeId,
      serial: issued.serial,
      // X.509 keeps whole seconds: record what the certificate says.
      notAfter: new Date(Math.floor(issued.notAfter.getTime() / 1000) * 1000),
      issuedAt: new Date(),
      via: caller.via,
      namespace: caller.namespace,
      ...(caller.workload === undefined ? {} : { workload: caller.workload }),
    });
    // The chain stops below the root: the peer has the root from its bundle.
    const chain = [issued.certPem, ...issuingChain];
    signatures.inc({ result: 'issued', via: caller.via });
    return {
      cert_chain_pem: chain,
      trust_bundle_pem: bundle.roots,
      spiffe_id: spiffeId,
      not_after: String(Math.floor(issued.notAfter.getTime() / 1000)),
      serial: issued.serial,
    };
  };

  return {
    Sign(
      call: ServerUnaryCall<ReceivedSignRequest, SignResponseWire>,
      callback: sendUnaryData<SignResponseWire>,
    ) {
      const stop = latency.startTimer();
      sign(call).then(
        (response) => {
          stop();
          callback(null, response);
        },
        (err: unknown) => {
          const refusal = toRefusal(err);
          if (refusal.code === status.INTERNAL) options.logger.error('Sign failed', { err });
          else options.logger.debug('Sign refused', { code: refusal.code, reason: refusal.message });
          signatures.inc({ result: status[refusal.code] ?? 'refused', via: 'unknown' });
          callback(refusal.toStatus());
        },
      );
    },
  };
}

/**
 * A pool failure as the status the caller acts on: fix the CSR, back off, or
 * retry. The shared mapping (grpc-status.ts), with the CSR named when it is
 * what the pool refused.
 */
function poolRefusal(err: unknown): unknown {
  // Anything else (a bug) goes up as it is, so the handler logs it in full.
  if (!isMeshError(err)) return err;
  if (err.code === ErrorCodes.PKI || err.code === ErrorCodes.INVALID_ARGUMENT) {
    return new GrpcRefusal(status.INVALID_ARGUMENT, `CSR invalid: ${err.message}`);
  }
  return toRefusal(err);
}
