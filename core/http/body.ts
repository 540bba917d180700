/** Reading request bodies with a hard size limit. */

import type { IncomingMessage } from 'node:http';
import { ErrorCodes, MeshError } from '../errors.js';

/**
 * Reads the whole body, refusing it as soon as it passes `limit` bytes: a
 * declared Content-Length over the limit is refused before a byte is read, so
 * a 10 MB upload costs nothing. The caller must close the connection after
 * a refusal because the rest of the body is left unread.
 */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    throw tooLarge(limit);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) throw tooLarge(limit);
    chunks.push(buf);
  }
  return chunks.length === 1 && chunks[0] ? chunks[0] : Buffer.concat(chunks, size);
}

function tooLarge(limit: number): MeshError {
  return new MeshError(ErrorCodes.BODY_TOO_LARGE, `request body exceeds the limit of ${limit} bytes`, {
    details: { limitBytes: limit },
  });
}

/** Parses a JSON body, answering DECODE with the parser's reason instead of a SyntaxError. */
export function parseJsonBody(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new MeshError(ErrorCodes.DECODE, `request body is not valid JSON: ${(err as Error).message}`);
  }
}
