/** Answers for the control-plane REST APIs: JSON bodies and MeshError-shaped errors. */

import type { ServerResponse } from 'node:http';
import { ErrorCodes, MeshError } from '../errors.js';

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/**
 * Turns any thrown value into the stable JSON error body. Anything that is
 * not a MeshError is a bug: it answers 500 without leaking internals.
 */
export function toMeshError(err: unknown): MeshError {
  if (err instanceof MeshError) return err;
  return new MeshError(ErrorCodes.INTERNAL, 'internal error', { cause: err });
}

export function sendError(res: ServerResponse, err: MeshError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // The rest of a refused body is unread: close rather than parse garbage as the next request.
  if (err.code === ErrorCodes.BODY_TOO_LARGE) res.setHeader('connection', 'close');
  sendJson(res, err.httpStatus, err.toJSON());
}
