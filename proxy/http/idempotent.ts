/**
 * Whether a request may be sent again after a failure that could have
 * happened after the server read it. A keep-alive connection that closes
 * with no response byte is usually one the server had already closed as
 * idle, but it may also have read the request and died handling it: Go's
 * http.Transport re-sends only idempotent requests then (RFC 9110 §9.2.2),
 * and so does the proxy. An Idempotency-Key header is the client saying a
 * repeat is safe.
 */

import type { IncomingHttpHeaders } from 'node:http';
import { UpstreamFailure, type UpstreamFailureKind } from '../upstream/upstream-attempt.js';

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export function isIdempotentRequest(method: string | undefined, headers: IncomingHttpHeaders): boolean {
  return (
    IDEMPOTENT_METHODS.has(method ?? 'GET') ||
    headers['idempotency-key'] !== undefined ||
    headers['x-idempotency-key'] !== undefined
  );
}

/**
 * A try that failed where the request cannot have been processed, so it
 * goes again at once, outside the route's retry policy: an HTTP/2
 * REFUSED_STREAM (the peer says it did nothing with it: a stream past its
 * GOAWAY, or over its concurrency limit; RFC 9113 8.7), or a stale
 * keep-alive connection for a request that is safe to repeat.
 */
export function resendAtOnce(
  kind: UpstreamFailureKind,
  method: string | undefined,
  headers: IncomingHttpHeaders,
): boolean {
  if (kind === UpstreamFailure.REFUSED_STREAM) return true;
  return kind === UpstreamFailure.STALE_CONNECTION && isIdempotentRequest(method, headers);
}
