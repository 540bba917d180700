/**
 * Retry decisions with Envoy's x-envoy-retry-on semantics (what Istio's
 * `retries.retryOn` configures) and its backoff: full jitter over
 * (2^n − 1) × 25 ms, capped at 250 ms.
 */

import { RetryOn, type RetryPolicy } from '../config/config-types.js';
import { UpstreamFailure, type UpstreamFailureKind } from '../upstream/upstream-attempt.js';

const BASE_MS = 25;
const MAX_MS = 250;

const GRPC_BITS: Record<string, number> = {
  '1': RetryOn.GRPC_CANCELLED,
  '4': RetryOn.GRPC_DEADLINE_EXCEEDED,
  '8': RetryOn.GRPC_RESOURCE_EXHAUSTED,
  '13': RetryOn.GRPC_INTERNAL,
  '14': RetryOn.GRPC_UNAVAILABLE,
};

/** Whether a response with `status` (and, for gRPC, `grpc-status` in its headers) is retried. */
export function retriableResponse(
  policy: RetryPolicy,
  status: number,
  grpcStatus: string | undefined,
): boolean {
  const on = policy.on;
  if (on === 0) return false;
  if (on & RetryOn.HTTP_5XX && status >= 500) return true;
  if (on & RetryOn.GATEWAY_ERROR && (status === 502 || status === 503 || status === 504)) return true;
  if (on & RetryOn.RETRIABLE_4XX && status === 409) return true;
  if (on & RetryOn.RETRIABLE_STATUS_CODES && policy.statusCodes.includes(status)) return true;
  if (grpcStatus !== undefined) {
    const bit = GRPC_BITS[grpcStatus];
    if (bit !== undefined && on & bit) return true;
  }
  return false;
}

/**
 * Whether a try that got no response is retried. `timedOut`: the per-try
 * timeout fired. 5xx and gateway-error cover every such failure; `reset`
 * covers resets, connect failures and timeouts; the rest are narrower.
 */
export function retriableFailure(
  policy: RetryPolicy,
  kind: UpstreamFailureKind | 0,
  timedOut: boolean,
): boolean {
  const on = policy.on;
  if (on & (RetryOn.HTTP_5XX | RetryOn.GATEWAY_ERROR | RetryOn.RESET)) return true;
  if (timedOut) return false;
  if (kind === UpstreamFailure.CONNECT) return (on & RetryOn.CONNECT_FAILURE) !== 0;
  if (kind === UpstreamFailure.REFUSED_STREAM) return (on & RetryOn.REFUSED_STREAM) !== 0;
  return false;
}

/** Delay before retry number `n` (1-based). */
export function backoffMs(n: number): number {
  const upper = Math.min(MAX_MS, BASE_MS * (2 ** n - 1));
  return Math.random() * upper;
}
