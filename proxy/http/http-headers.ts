/**
 * Header plumbing between HTTP/1.1 and HTTP/2 hops: hop-by-hop headers
 * never cross a proxy (RFC 9110 §7.6.1), HTTP/2 pseudo-headers are rebuilt
 * for each hop, and `te: trailers` survives because gRPC needs it.
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { HeaderOps } from '../config/config-types.js';

/** Lower-case names that describe one connection, not the message. */
const HOP_BY_HOP = new Set([
  // Host travels as Host (HTTP/1.1) or :authority (HTTP/2): the upstream pool sets whichever applies.
  'host',
  // 100-continue is negotiated per hop.
  'expect',
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/** Headers the proxies use between themselves; an app never sees them and cannot forge them past a proxy. */
export const MESH_SOURCE_HEADER = 'x-meshfed-source';

/** Extra names a `Connection` header lists as hop-by-hop, beyond the fixed set (rare). */
function connectionTokens(value: string | string[] | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value.join(',') : value;
  let extra: Set<string> | undefined;
  for (const raw of text.split(',')) {
    const token = raw.trim().toLowerCase();
    if (token === '' || token === 'close' || token === 'keep-alive' || token === 'upgrade') continue;
    (extra ??= new Set()).add(token);
  }
  return extra;
}

/**
 * Copies the end-to-end headers of a request or response into a new object:
 * no hop-by-hop headers, no pseudo-headers, no mesh-internal headers.
 * `keepTe`: forward `te: trailers` (HTTP/2 and gRPC require it).
 */
export function endToEndHeaders(src: IncomingHttpHeaders, keepTe: boolean): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const extra = connectionTokens(src.connection);
  for (const name in src) {
    if (name.charCodeAt(0) === 58 /* : */) continue;
    if (HOP_BY_HOP.has(name) || name === MESH_SOURCE_HEADER) {
      if (keepTe && name === 'te' && src.te === 'trailers') out.te = 'trailers';
      continue;
    }
    if (extra?.has(name)) continue;
    const value = src[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** Applies VirtualService header operations (remove, then set, then add — Envoy's order). */
export function applyHeaderOps(headers: OutgoingHttpHeaders, ops: HeaderOps | undefined): void {
  if (ops === undefined) return;
  // delete, not undefined: Node refuses undefined header values. Rare enough not to matter for speed.
  for (const name of ops.remove) delete headers[name];
  for (const [name, value] of ops.set) headers[name] = value;
  for (const [name, value] of ops.add) {
    const current = headers[name];
    if (current === undefined) headers[name] = value;
    else if (Array.isArray(current)) headers[name] = [...current, value];
    else headers[name] = [String(current), value];
  }
}

/** One value of a header that may repeat. */
export function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
