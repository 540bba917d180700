/**
 * The downstream request and response kinds the proxy serves: Node's
 * HTTP/1.1 objects (for what the lean server hands over), and the lean
 * HTTP/1.1 and HTTP/2 servers' LeanRequest and their responses. The response is described by what the proxy does with it, so
 * that every kind is checked against it.
 */

import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { LeanRequest } from './lean-h1/lean-request.js';

export type DownstreamRequest = IncomingMessage | LeanRequest;

export interface DownstreamResponse {
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  readonly writableFinished: boolean;
  writeHead(status: number, headers?: OutgoingHttpHeaders): unknown;
  /** False: wait for 'drain'. */
  write(chunk: Buffer | string): boolean;
  end(): unknown;
  end(chunk: Buffer | string): unknown;
  addTrailers(trailers: OutgoingHttpHeaders): void;
  destroy(): unknown;
  on(event: 'close' | 'drain', listener: () => void): unknown;
}

/** The body side of every downstream request kind, as the proxy reads it. */
export interface DownstreamBody {
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  removeListener(event: 'data', listener: (chunk: Buffer) => void): unknown;
  removeListener(event: 'end', listener: () => void): unknown;
  pause(): unknown;
  resume(): unknown;
  isPaused(): boolean;
}
