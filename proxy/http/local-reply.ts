/**
 * Answers the proxy makes itself (no route, overflow, timeout, RBAC …), in
 * Envoy's shape: a short text/plain body. A gRPC caller gets what gRPC
 * expects instead: HTTP 200 with `grpc-status`/`grpc-message` trailers,
 * the status mapped as Envoy maps it.
 */

import type { OutgoingHttpHeaders } from 'node:http';
import { grpcCodeForHttpStatus } from '../../core/grpc/grpc-codes.js';
import type { DownstreamResponse } from './downstream.js';

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
    const code = grpcCode ?? grpcCodeForHttpStatus(status);
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
