/**
 * A CA sign pool worker thread: parses each CSR, checks its self-signature
 * and signs the workload certificate — the CPU-heavy part of a Sign call —
 * so that zone CPs scale with cores. The caller was authenticated on the
 * main thread; this only ever signs the SPIFFE ID it is handed.
 */

import { parentPort } from 'node:worker_threads';
import { ErrorCodes, isMeshError } from '../../core/errors.js';
import { loadCa, type CertificateAuthority } from '../../core/pki/ca.js';
import { readCsr } from '../../core/pki/csr.js';
import type { PoolToWorker, SignJobMessage, WorkerToPool } from './ca-sign-messages.js';

/** The current CA and the ones before it; a job names the one it wants, so rotation never mixes chains. */
const KEEP_CAS = 3;
const cas = new Map<string, CertificateAuthority>();

function handle(message: PoolToWorker): WorkerToPool | undefined {
  if (message.type === 'ca') {
    cas.delete(message.fingerprint);
    try {
      cas.set(message.fingerprint, loadCa(message.certPem, message.keyPem));
    } catch {
      // The main thread loaded the same material before sending it; if this
      // copy fails anyway, jobs for it answer UNAVAILABLE rather than crash here.
      return undefined;
    }
    while (cas.size > KEEP_CAS) {
      const oldest = cas.keys().next();
      if (oldest.done) break;
      cas.delete(oldest.value);
    }
    return undefined;
  }
  return sign(message);
}

function sign(job: SignJobMessage): WorkerToPool {
  const ca = cas.get(job.ca);
  if (ca === undefined) {
    return {
      type: 'failed',
      id: job.id,
      code: ErrorCodes.UNAVAILABLE,
      message: 'the signing CA is not loaded',
    };
  }
  try {
    const { publicKey } = readCsr(job.csrPem);
    const issued = ca.signWorkload(publicKey, { spiffeId: job.spiffeId, ttlSeconds: job.ttlSeconds });
    return {
      type: 'signed',
      id: job.id,
      certPem: issued.certPem,
      serial: issued.serial,
      notAfterMs: issued.notAfter.getTime(),
    };
  } catch (err) {
    return {
      type: 'failed',
      id: job.id,
      code: isMeshError(err) ? err.code : ErrorCodes.INTERNAL,
      message: isMeshError(err) ? err.message : `signing failed: ${(err as Error).message}`,
    };
  }
}

const port = parentPort;
if (port === null) throw new Error('ca-sign-worker runs only as a worker thread');
port.on('message', (message: PoolToWorker) => {
  const answer = handle(message);
  if (answer !== undefined) port.postMessage(answer);
});
