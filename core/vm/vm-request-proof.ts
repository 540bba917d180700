/**
 * The signed-request format an enrolled VM uses on the zone REST API
 * (heartbeat, leave) after its join token is spent: its current workload
 * certificate and a signature by that certificate's key over the request,
 * so the REST port needs no client-certificate TLS. The VM agent signs
 * (`signedRequestHeaders`), the zone CP verifies; both build the same text
 * here. The two headers:
 *
 *   x-meshfed-vm-chain: base64(PEM chain, leaf first)
 *   x-meshfed-vm-proof: v1 t=<unix seconds> sig=<base64url ECDSA-SHA256 signature (DER)>
 *
 * over the text `meshfed-vm-proof-v1\n<METHOD>\n<path>\n<t>\n<hex sha256(body)>`.
 */

import { createHash, sign } from 'node:crypto';

export const PROOF_HEADER = 'x-meshfed-vm-proof';
export const CHAIN_HEADER = 'x-meshfed-vm-chain';
export const PROOF_VERSION = 'meshfed-vm-proof-v1';
/** Largest clock difference accepted between the VM and the zone. */
export const PROOF_MAX_SKEW_SECONDS = 300;

/** The text a VM signs for one request (`path` without the query). */
export function proofText(method: string, path: string, time: number, body: Buffer): string {
  const digest = createHash('sha256').update(body).digest('hex');
  return `${PROOF_VERSION}\n${method.toUpperCase()}\n${path}\n${time}\n${digest}`;
}

/** The two headers proving a request comes from the holder of `keyPem`, signed at `time` (unix seconds). */
export function signedRequestHeaders(
  method: string,
  path: string,
  body: Buffer,
  keyPem: string,
  certChainPem: string,
  time = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const signature = sign('sha256', Buffer.from(proofText(method, path, time, body)), keyPem).toString(
    'base64url',
  );
  return {
    [PROOF_HEADER]: `v1 t=${time} sig=${signature}`,
    [CHAIN_HEADER]: Buffer.from(certChainPem).toString('base64'),
  };
}
