/** Small HTTP helpers the demo uses to talk to its own control planes. */

import http from 'node:http';
import { ErrorCodes, MeshError } from '../../core/errors.js';

/** GET url until it answers 200 or the deadline passes. */
export async function waitForHttpOk(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = http.get(url, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.setTimeout(2000, () => req.destroy());
      req.on('error', (err) => {
        last = err.message;
        resolve(0);
      });
    });
    if (status === 200) return;
    if (status !== 0) last = `HTTP ${status}`;
    if (Date.now() > deadline) {
      throw new MeshError(
        ErrorCodes.INTERNAL,
        `${url} did not become ready within ${timeoutMs / 1000} s (${last})`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface JsonAnswer {
  status: number;
  json: Record<string, unknown>;
}

/** One JSON request with a bearer token; the body of any status is returned, parsed. */
export async function requestJson(
  method: string,
  url: string,
  token: string,
  body?: unknown,
): Promise<JsonAnswer> {
  const answer = await fetch(url, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await answer.text();
  let json: Record<string, unknown> = {};
  try {
    const parsed: unknown = text === '' ? {} : JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed))
      json = parsed as Record<string, unknown>;
  } catch {
    json = { message: text };
  }
  return { status: answer.status, json };
}

/** A request that must succeed (2xx); otherwise a MeshError saying what `what` was. */
export async function requestOk(
  what: string,
  method: string,
  url: string,
  token: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const answer = await requestJson(method, url, token, body);
  if (answer.status < 200 || answer.status > 299) {
    throw new MeshError(
      ErrorCodes.INTERNAL,
      `${what}: ${method} ${url} answered ${answer.status}: ${String(answer.json.message ?? '')}`,
    );
  }
  return answer.json;
}

/** Poll `probe` until it returns a value (not undefined) or the deadline passes. */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 15_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) {
      throw new MeshError(
        ErrorCodes.UNAVAILABLE,
        `${what} did not happen within ${timeoutMs / 1000} s${last ? ` (${last})` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
