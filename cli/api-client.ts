/**
 * The CLI's REST client for the global control plane (docs/api.md), on
 * node:http / node:https so a private CA (`--ca-file`) can be pinned without
 * extra dependencies. Error bodies `{code, message, field, details}` come back
 * as MeshErrors; transport failures as MeshErrors that say what to check.
 */

import http from 'node:http';
import https from 'node:https';
import { ErrorCodes, MeshError, type ErrorCode } from '../core/errors.js';
import { isErrorCode } from './exit.js';
import { SseReader, type SseEvent } from './sse-reader.js';

export interface ApiClientOptions {
  /** Base URL: `http://127.0.0.1:5681` (a path prefix is kept). */
  server: string;
  /** Bearer token; omitted for unauthenticated endpoints (/healthz). */
  token?: string;
  /** PEM CA bundle trusted for an https server, in addition to nothing else. */
  ca?: string | Buffer;
  /** Per-request timeout for non-streaming calls. Default 30 s. */
  timeoutMs?: number;
}

/** One event of a watch stream (docs/api.md "Watch"). */
export interface WatchStreamEvent {
  type: string;
  object: Record<string, unknown>;
  /** The SSE `id:` (the store revision), when sent. */
  id?: string;
}

const statusCodes: Record<number, ErrorCode> = {
  400: ErrorCodes.INVALID_ARGUMENT,
  401: ErrorCodes.UNAUTHENTICATED,
  403: ErrorCodes.FORBIDDEN,
  404: ErrorCodes.NOT_FOUND,
  405: ErrorCodes.METHOD_NOT_ALLOWED,
  409: ErrorCodes.CONFLICT,
  410: ErrorCodes.REVISION_TOO_OLD,
  413: ErrorCodes.BODY_TOO_LARGE,
  415: ErrorCodes.UNSUPPORTED_MEDIA_TYPE,
  422: ErrorCodes.VALIDATION,
  503: ErrorCodes.STORE_UNAVAILABLE,
};

const tlsVerifyCodes = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Build the MeshError for an HTTP error answer: the server's own code,
 * message, field and details when the body is the API's error JSON, else a
 * code derived from the status.
 */
export function errorFromResponse(status: number, body: string, url: string): MeshError {
  let parsed: unknown;
  try {
    parsed = body ? JSON.parse(body) : undefined;
  } catch {
    parsed = undefined;
  }
  if (isRecord(parsed) && typeof parsed.message === 'string') {
    const code = isErrorCode(parsed.code) ? parsed.code : (statusCodes[status] ?? ErrorCodes.INTERNAL);
    return new MeshError(code, parsed.message, {
      ...(typeof parsed.field === 'string' ? { field: parsed.field } : {}),
      details: { ...(isRecord(parsed.details) ? parsed.details : {}), httpStatus: status },
    });
  }
  const code = statusCodes[status] ?? ErrorCodes.INTERNAL;
  const text = body.trim().slice(0, 200);
  return new MeshError(code, `${url} answered ${status}${text ? `: ${text}` : ''}`, {
    details: { httpStatus: status },
  });
}

function transportError(err: unknown, server: string): MeshError {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'ECONNREFUSED') {
    return new MeshError(
      ErrorCodes.UNAVAILABLE,
      `cannot reach the meshfed API at ${server}: connection refused — is \`meshfed global-cp\` running?`,
      { cause: err },
    );
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new MeshError(ErrorCodes.UNAVAILABLE, `cannot reach the meshfed API at ${server}: unknown host`, {
      cause: err,
    });
  }
  if (typeof code === 'string' && tlsVerifyCodes.has(code)) {
    return new MeshError(
      ErrorCodes.CONFIG,
      `cannot verify the TLS certificate of ${server}: ${message} — pass --ca-file with the server's CA certificate`,
      { cause: err },
    );
  }
  if (code === 'EPROTO' || /wrong version number|packet length too long/i.test(message)) {
    return new MeshError(
      ErrorCodes.CONFIG,
      `TLS handshake with ${server} failed (is the server plain http?): ${message}`,
      { cause: err },
    );
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') {
    return new MeshError(ErrorCodes.UNAVAILABLE, `the meshfed API at ${server} closed the connection`, {
      cause: err,
    });
  }
  return new MeshError(ErrorCodes.UNAVAILABLE, `cannot reach the meshfed API at ${server}: ${message}`, {
    cause: err,
  });
}

export class ApiClient {
  readonly server: string;
  private readonly base: URL;
  private readonly token: string | undefined;
  private readonly ca: string | Buffer | undefined;
  private readonly timeoutMs: number;

  constructor(options: ApiClientOptions) {
    let base: URL;
    try {
      base = new URL(options.server);
    } catch {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `invalid server URL "${options.server}": expected http(s)://host:port`,
      );
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `invalid server URL "${options.server}": only http and https are supported`,
      );
    }
    this.base = base;
    this.server = options.server.replace(/\/+$/, '');
    this.token = options.token;
    this.ca = options.ca;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /**
   * Send one request and return the parsed JSON answer (undefined for an
   * empty body). `body` is sent as is when a string, else as JSON.
   * Rejects with the server's MeshError on a non-2xx answer.
   */
  async request(
    method: string,
    path: string,
    body?: string | object,
    contentType?: string,
  ): Promise<unknown> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const type = contentType ?? (typeof body === 'string' ? 'application/yaml' : 'application/json');
    const response = await this.send(
      method,
      path,
      { accept: 'application/json' },
      payload,
      type,
      this.timeoutMs,
    );
    const text = await readBody(response).catch((err: unknown) => {
      throw transportError(err, this.server);
    });
    const status = response.statusCode ?? 0;
    if (status < 200 || status >= 300) throw errorFromResponse(status, text, this.urlOf(path).toString());
    if (text.trim() === '') return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new MeshError(ErrorCodes.DECODE, `${this.server} answered ${path} with a body that is not JSON`, {
        cause: err,
      });
    }
  }

  /**
   * Follow a watch stream (`?watch=true`) until the server ends it. Resolves
   * when the stream closes normally; rejects on an `ERROR` event (with the
   * server's code, e.g. MESHFED_ERR_REVISION_TOO_OLD) or a broken connection.
   */
  async watch(path: string, onEvent: (event: WatchStreamEvent) => void): Promise<void> {
    const response = await this.send('GET', path, { accept: 'text/event-stream' }, undefined, undefined, 0);
    const status = response.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      throw errorFromResponse(status, await readBody(response), this.urlOf(path).toString());
    }
    await new Promise<void>((resolve, reject) => {
      let failed = false;
      const fail = (err: MeshError): void => {
        if (failed) return;
        failed = true;
        response.destroy();
        reject(err);
      };
      const reader = new SseReader((event: SseEvent) => {
        if (failed) return;
        let data: unknown;
        try {
          data = JSON.parse(event.data);
        } catch (err) {
          fail(
            new MeshError(ErrorCodes.DECODE, `watch event is not JSON: ${event.data.slice(0, 100)}`, {
              cause: err,
            }),
          );
          return;
        }
        if (event.event === 'ERROR') {
          fail(errorFromResponse(410, JSON.stringify(data), this.urlOf(path).toString()));
          return;
        }
        if (!isRecord(data) || !isRecord(data.object)) return;
        const type = typeof data.type === 'string' ? data.type : event.event;
        onEvent({ type, object: data.object, ...(event.id === undefined ? {} : { id: event.id }) });
      });
      response.on('data', (chunk: Buffer) => reader.push(chunk));
      response.on('end', () => {
        reader.end();
        if (!failed) resolve();
      });
      response.on('error', (err) => fail(transportError(err, this.server)));
      response.on('aborted', () =>
        fail(new MeshError(ErrorCodes.CONFIG, `${this.server} ended the watch stream`)),
      );
    });
  }

  private urlOf(path: string): URL {
    const url = new URL(this.base.toString());
    url.pathname = url.pathname.replace(/\/+$/, '') + path.replace(/\?.*$/, '');
    const query = path.indexOf('?');
    url.search = query === -1 ? '' : path.slice(query);
    return url;
  }

  private send(
    method: string,
    path: string,
    headers: Record<string, string>,
    payload: string | undefined,
    contentType: string | undefined,
    timeoutMs: number,
  ): Promise<http.IncomingMessage> {
    const url = this.urlOf(path);
    const allHeaders: Record<string, string | number> = { ...headers, 'user-agent': 'meshfed-cli' };
    if (this.token) allHeaders.authorization = `Bearer ${this.token}`;
    if (payload !== undefined) {
      allHeaders['content-type'] = contentType ?? 'application/json';
      allHeaders['content-length'] = Buffer.byteLength(payload);
    }
    const options: https.RequestOptions = { method, headers: allHeaders };
    if (url.protocol === 'https:' && this.ca !== undefined) options.ca = this.ca;
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = transport.request(url, options, resolve);
      req.on('error', (err) => reject(transportError(err, this.server)));
      if (timeoutMs > 0) {
        req.setTimeout(timeoutMs, () => {
          req.destroy(
            Object.assign(new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`), {
              code: 'ETIMEDOUT',
            }),
          );
        });
      }
      req.end(payload);
    });
  }
}

function readBody(response: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    response.on('data', (chunk: Buffer) => chunks.push(chunk));
    response.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    response.on('error', reject);
  });
}
