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

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export function isIdempotentRequest(method: string | undefined, headers: IncomingHttpHeaders): boolean {
  return (
    IDEMPOTENT_METHODS.has(method ?? 'GET') ||
    headers['idempotency-key'] !== undefined ||
    headers['x-idempotency-key'] !== undefined
  );
}
