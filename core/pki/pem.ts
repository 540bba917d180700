/**
 * PEM armour for DER blobs: the certificate chains and bundles meshfed
 * passes around as text.
 */

import { ErrorCodes, MeshError } from '../errors.js';

/** Wraps DER in PEM with 64-column base64 lines, as OpenSSL writes it. */
export function derToPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const base64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let body = '';
  for (let i = 0; i < base64.length; i += 64) body += base64.slice(i, i + 64) + '\n';
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]*?)-----END \1-----/g;

/**
 * Every PEM block with `label` in `text`, decoded, in order. Throws
 * MeshError(PKI) when there is none: a bundle without a certificate is
 * always a configuration mistake.
 */
export function pemToDerList(text: string, label = 'CERTIFICATE'): Buffer[] {
  const blocks: Buffer[] = [];
  for (const match of text.matchAll(BLOCK)) {
    if (match[1] === label) blocks.push(Buffer.from((match[2] ?? '').replace(/\s+/g, ''), 'base64'));
  }
  if (!blocks.length) throw new MeshError(ErrorCodes.PKI, `no PEM ${label} block found`);
  return blocks;
}
