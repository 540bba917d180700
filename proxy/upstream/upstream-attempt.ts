/**
 * One try of a request against one upstream: an HTTP/1.1 request on the
 * lean client (upstream-h1-conn), or an HTTP/2 stream on a shared session
 * (upstream-h2-pool). Both report to their owner (the exchange that decides
 * on retries) through the same three calls, and classify failures the way
 * retry policies need them: connect failure, reset, refused stream.
 */

import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';

export const UpstreamFailure = {
  /** TCP or TLS connection could not be established (includes a peer identity mismatch). */
  CONNECT: 1,
  /** The connection or stream was reset before a complete response. */
  RESET: 2,
  /** HTTP/2 REFUSED_STREAM: the request was not processed, always safe to retry. */
  REFUSED_STREAM: 3,
  /** A keep-alive connection the server had closed: the request never reached it. */
  STALE_CONNECTION: 4,
} as const;

export type UpstreamFailureKind = (typeof UpstreamFailure)[keyof typeof UpstreamFailure];

export interface AttemptOwner {
  /** Response headers arrived; `body` streams the response (a DirectBody the exchange may attach to). */
  onAttemptResponse(attempt: Attempt, status: number, headers: IncomingHttpHeaders, body: Readable): void;
  /** The attempt failed before response headers. Called at most once, never after onAttemptResponse. */
  onAttemptFailure(attempt: Attempt, kind: UpstreamFailureKind, err: Error): void;
  /** The request body can take more data after write() returned false. */
  onAttemptDrain(attempt: Attempt): void;
}

export interface Attempt {
  readonly owner: AttemptOwner;
  write(chunk: Buffer): boolean;
  end(): void;
  /** Abandons the attempt (timeout, retry, downstream gone): the connection is not reused. */
  abort(): void;
  /** Response trailers, once the body has ended. */
  trailers(): IncomingHttpHeaders | undefined;
  /** The upstream peer's verified SPIFFE ID ('' for plaintext). */
  peer(): string;
  /** A response arrived or the attempt failed. */
  readonly settled: boolean;
  /** Failed or aborted: the request body has nowhere to go. */
  readonly broken: boolean;
}

/** A TLS alert from the peer (bad certificate, wrong identity): a connect failure, not a reset. */
export function isTlsAlert(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === 'string' && code.startsWith('ERR_SSL_');
}
