/**
 * The VM agent's HTTPS client for the zone REST API. Trust comes from a
 * pinned fingerprint, not from a CA file: the agent dials with SNI
 * `meshfed-zone-cp`, and before a byte of the request (and its token) is
 * sent it checks that the server's certificate names `meshfed-zone-cp`,
 * that every certificate of the chain it sent is signed by the next, and
 * that one of them is the pinned CA (the mesh root or the zone CA). Trust on
 * first use happens only with `insecure` (`--insecure-skip-verify`).
 *
 * Once enrolled, requests are signed with the VM's current certificate
 * (headers of core/vm/vm-request-proof.ts). Failures come back as one
 * MeshError line that says what to check.
 */

import { X509Certificate } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import { connect, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { ZONE_CP_SERVER_NAME } from '../core/ca/zone-channel.js';
import { ErrorCodes, MeshError, isMeshError, type ErrorCode } from '../core/errors.js';
import { signedRequestHeaders } from '../core/vm/vm-request-proof.js';

export interface ZoneTarget {
  /** https://host[:port] of the zone REST API. */
  url: URL;
  /** Lower-case hex SHA-256 of a CA certificate the server's chain must contain. */
  pin?: string;
  /** Accept any chain (trust on first use). */
  insecure?: boolean;
}

export interface ZoneAnswer {
  status: number;
  body: unknown;
  /** SHA-256 (lower-case hex) of the top certificate of the server's chain: what to pin. */
  rootFingerprint: string;
}

export interface Proof {
  certChainPem: string;
  keyPem: string;
}

export interface RequestOptions {
  /** Sent as JSON. */
  json?: unknown;
  headers?: Record<string, string>;
  /** Sign the request with the VM's certificate. */
  proof?: Proof;
  /** Default 10 s. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_ANSWER_BYTES = 1024 * 1024;

/** `--zone-cp`: an https URL with a host; the port defaults to the zone REST port 5682. */
export function parseZoneCpUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `--zone-cp "${text}" is not a URL: give the zone CP's REST API as https://host:5682`,
    );
  }
  if (url.protocol !== 'https:') {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `--zone-cp must be an https:// URL (got ${url.protocol}//…): a VM joins over TLS, e.g. https://${url.hostname || 'zone-cp'}:5682`,
    );
  }
  if (url.hostname === '') throw new MeshError(ErrorCodes.INVALID_ARGUMENT, '--zone-cp names no host');
  if (url.port === '') url.port = '5682';
  return url;
}

/** `sha256:<hex>`, bare hex, or openssl's `AB:CD:…` (optionally after `SHA256 Fingerprint=`) → lower-case hex. */
export function normalizeFingerprint(text: string, what = '--ca-fingerprint'): string {
  const hex = text
    .trim()
    .replace(/^sha256\s*fingerprint\s*=\s*/i, '')
    .replace(/^sha256:/i, '')
    .replace(/:/g, '')
    .toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `${what} "${text}" is not a SHA-256 fingerprint: give sha256:<64 hex digits>`,
    );
  }
  return hex;
}

export function formatFingerprint(hex: string): string {
  return `sha256:${hex}`;
}

function fingerprintOf(cert: X509Certificate): string {
  return cert.fingerprint256.replace(/:/g, '').toLowerCase();
}

/** The chain the server sent, leaf first, as Node links it. */
function chainOf(peer: DetailedPeerCertificate): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<DetailedPeerCertificate>();
  let current: DetailedPeerCertificate | undefined = peer;
  while (current !== undefined && current.raw !== undefined && !seen.has(current)) {
    seen.add(current);
    chain.push(new X509Certificate(current.raw));
    const next: DetailedPeerCertificate | undefined = current.issuerCertificate;
    current = next === current ? undefined : next;
  }
  return chain;
}

/**
 * Checks a server chain against the pin; returns the fingerprint of its top
 * certificate. Throws PKI naming what does not fit.
 */
export function verifyServerChain(
  peer: DetailedPeerCertificate,
  target: Pick<ZoneTarget, 'pin' | 'insecure' | 'url'>,
  now = new Date(),
): string {
  const where = target.url.host;
  const chain = chainOf(peer);
  const [leaf] = chain;
  const top = chain.at(-1);
  if (leaf === undefined || top === undefined) {
    throw new MeshError(ErrorCodes.PKI, `the server at ${where} sent no certificate`);
  }
  const rootFingerprint = fingerprintOf(top);
  if (target.insecure === true && target.pin === undefined) return rootFingerprint;
  const names = (leaf.subjectAltName ?? '').split(',').map((s) => s.trim());
  if (!names.includes(`DNS:${ZONE_CP_SERVER_NAME}`)) {
    throw new MeshError(
      ErrorCodes.PKI,
      `the server at ${where} is not a meshfed zone control plane (its certificate does not name ${ZONE_CP_SERVER_NAME}): check --zone-cp (the zone REST port, 5682)`,
    );
  }
  for (const [i, cert] of chain.entries()) {
    if (new Date(cert.validFrom) > now || new Date(cert.validTo) < now) {
      throw new MeshError(
        ErrorCodes.PKI,
        `a certificate of the chain from ${where} is not valid now (${cert.validFrom} to ${cert.validTo}): check the clocks`,
      );
    }
    const issuer = chain[i + 1];
    if (issuer === undefined) break;
    if (!cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) {
      throw new MeshError(
        ErrorCodes.PKI,
        `the certificate chain from ${where} is broken: certificate ${i + 1} is not signed by the next one`,
      );
    }
  }
  if (target.pin !== undefined && !chain.some((cert) => fingerprintOf(cert) === target.pin)) {
    throw new MeshError(
      ErrorCodes.PKI,
      `the zone CP at ${where} is not the one pinned: its chain ends in sha256:${rootFingerprint}, not sha256:${target.pin}: check --ca-fingerprint (or the token) and --zone-cp`,
    );
  }
  return rootFingerprint;
}

function transportError(err: NodeJS.ErrnoException, url: URL): MeshError {
  const where = url.origin;
  const code = err.code ?? '';
  const unavailable = (message: string): MeshError =>
    new MeshError(ErrorCodes.UNAVAILABLE, message, { cause: err, details: { errno: code } });
  if (code === 'ECONNREFUSED') {
    return unavailable(
      `cannot reach the zone CP at ${where}: connection refused: check --zone-cp and that the zone CP is running`,
    );
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return unavailable(`cannot resolve ${url.hostname}: check the host in --zone-cp and the VM's DNS`);
  }
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ETIMEDOUT' || code === 'ECONNRESET') {
    return unavailable(
      `cannot reach the zone CP at ${where} (${code}): check --zone-cp, routes and firewalls between the VM and the zone`,
    );
  }
  if (
    code.startsWith('ERR_SSL') ||
    /wrong version number|packet length|unknown protocol/i.test(err.message)
  ) {
    return new MeshError(
      ErrorCodes.CONFIG,
      `${where} does not answer TLS (${err.message}): --zone-cp must be the zone CP's REST port (5682)`,
      { cause: err },
    );
  }
  return unavailable(`request to the zone CP at ${where} failed: ${err.message}`);
}

/** One request to the zone REST API; a non-2xx answer throws the server's MeshError. */
export async function zoneRequest(
  target: ZoneTarget,
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<ZoneAnswer> {
  const body = options.json === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(options.json));
  const headers: Record<string, string> = {
    accept: 'application/json',
    ...(options.json === undefined ? {} : { 'content-type': 'application/json' }),
    'content-length': String(body.length),
    ...(options.proof === undefined
      ? {}
      : signedRequestHeaders(method, path, body, options.proof.keyPem, options.proof.certChainPem)),
    ...options.headers,
  };
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const url = target.url;
  let rootFingerprint = '';
  const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    let settled = false;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      reject(isMeshError(err) ? err : transportError(err as NodeJS.ErrnoException, url));
    };
    const req = http.request({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port),
      method,
      path,
      headers,
      // The request (and its token) goes out only on a socket whose chain was checked.
      createConnection: (_opts: unknown, done: (err: Error | null, socket: Duplex) => void) => {
        const socket: TLSSocket = connect({
          host: url.hostname.replace(/^\[|\]$/g, ''),
          port: Number(url.port),
          servername: ZONE_CP_SERVER_NAME,
          rejectUnauthorized: false,
          ALPNProtocols: ['http/1.1'],
        });
        socket.once('secureConnect', () => {
          try {
            rootFingerprint = verifyServerChain(socket.getPeerCertificate(true), target);
            done(null, socket);
          } catch (err) {
            socket.destroy();
            fail(err);
          }
        });
        socket.once('error', (err) => fail(err));
        return undefined;
      },
    } as http.RequestOptions);
    req.setTimeout(timeoutMs, () => {
      req.destroy();
      fail(
        new MeshError(
          ErrorCodes.UNAVAILABLE,
          `the zone CP at ${url.origin} did not answer within ${Math.round(timeoutMs / 1000)} s: check --zone-cp and the network`,
        ),
      );
    });
    req.on('error', (err) => fail(err));
    req.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) {
          req.destroy();
          fail(new MeshError(ErrorCodes.DECODE, `the answer from ${url.origin} is larger than 1 MiB`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (err) => fail(err));
    });
    req.end(body);
  });
  let parsed: unknown;
  try {
    parsed = answer.text === '' ? undefined : JSON.parse(answer.text);
  } catch {
    parsed = undefined;
  }
  if (answer.status >= 200 && answer.status < 300)
    return { status: answer.status, body: parsed, rootFingerprint };
  throw errorOf(answer.status, parsed, answer.text, url, path);
}

function errorOf(status: number, body: unknown, text: string, url: URL, path: string): MeshError {
  const shaped = body as { code?: unknown; message?: unknown; field?: unknown } | undefined;
  if (typeof shaped?.code === 'string' && typeof shaped.message === 'string') {
    if (
      status === 404 &&
      shaped.code === ErrorCodes.NOT_FOUND &&
      shaped.message.startsWith('no such endpoint')
    ) {
      return new MeshError(
        ErrorCodes.NOT_FOUND,
        `${url.origin} has no VM enrollment API (${path}): --zone-cp must be a zone CP's REST API, not global's or another service`,
      );
    }
    return new MeshError(shaped.code as ErrorCode, shaped.message, {
      ...(typeof shaped.field === 'string' ? { field: shaped.field } : {}),
      details: { httpStatus: status },
    });
  }
  return new MeshError(
    status >= 500 ? ErrorCodes.UNAVAILABLE : ErrorCodes.DECODE,
    `${url.origin}${path} answered HTTP ${status} that is not a meshfed error (${text.slice(0, 120)}): is --zone-cp a zone CP?`,
    { details: { httpStatus: status } },
  );
}
