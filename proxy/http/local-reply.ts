/**
 * Answers the proxy makes itself (no route, overflow, timeout, RBAC …), in
 * Envoy's shape: a short text/plain body. A gRPC caller gets what gRPC
 * expects instead: HTTP 200 with `grpc-status`/`grpc-message` trailers,
 * the status mapped as Envoy maps it.
 */

import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';

export type DownstreamResponse = ServerResponse | Http2ServerResponse;

/** HTTP status → gRPC status code (Envoy's grpc::Utility::httpToGrpcStatus). */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/**
 * Sends a complete local answer. Returns the status actually sent (200
 * for gRPC callers). `grpcCode` overrides the mapped gRPC status.
 */
export function sendLocalReply(
  res: DownstreamResponse,
  status: number,
  text: string,
  grpc: boolean,
  extraHeaders?: OutgoingHttpHeaders,
  grpcCode?: number,
): number {
  if (res.headersSent) {
    res.destroy();
    return status;
  }
  if (grpc) {
    const code = grpcCode ?? grpcStatusForHttp(status);
    res.writeHead(200, { 'content-type': 'application/grpc', ...extraHeaders });
    res.addTrailers({ 'grpc-status': String(code), 'grpc-message': encodeURIComponent(text) });
    res.end();
    return 200;
  }
  const body = text + '\n';
  res.writeHead(status, {
    'content-type': 'text/plain',
    'content-length': Buffer.byteLength(body),
    ...extraHeaders,
  });
  res.end(body);
  return status;
}
