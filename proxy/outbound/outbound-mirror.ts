/**
 * Traffic mirroring: a copy of the request (Host with `-shadow` appended,
 * as Envoy does) goes to the mirror cluster once the body is complete; the
 * answer is read and thrown away and never delays or changes the primary
 * response. Mirrors in flight are bounded so a slow mirror cannot pile up.
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { ClusterRuntime } from '../cluster/cluster-runtime.js';
import type { EndpointState } from '../cluster/endpoint-state.js';
import type { ProxyContext } from '../proxy-context.js';
import type { Attempt, AttemptOwner } from '../upstream/upstream-attempt.js';

let inFlight = 0;

/** Mirrors in flight in this process (for /stats and tests). */
export function mirrorsInFlight(): number {
  return inFlight;
}

/**
 * How long a mirror may take when its route sets no timeout: Envoy's default
 * route timeout. A mirror that never answers would otherwise hold its slot
 * (and a connection) for good, and after maxMirrorsInFlight of them nothing
 * would be mirrored any more.
 */
export const DEFAULT_MIRROR_TIMEOUT_MS = 15_000;

function onMirrorTimeout(sink: MirrorSink): void {
  sink.timer = undefined;
  sink.attempt?.abort();
  sink.finish();
}

class MirrorSink implements AttemptOwner {
  readonly endpoint: EndpointState;
  done = false;
  attempt: Attempt | undefined;
  timer: NodeJS.Timeout | undefined;

  constructor(endpoint: EndpointState, timeoutMs: number) {
    this.endpoint = endpoint;
    this.timer = setTimeout(onMirrorTimeout, timeoutMs, this).unref();
  }

  finish(): void {
    if (this.done) return;
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    inFlight--;
    this.endpoint.active--;
  }

  onAttemptResponse(_attempt: Attempt, _status: number, _headers: IncomingHttpHeaders, body: Readable): void {
    body.on('end', () => this.finish());
    body.on('error', () => this.finish());
    body.on('close', () => this.finish());
    body.resume();
  }

  onAttemptFailure(): void {
    this.finish();
  }

  onAttemptDrain(): void {}
}

export function startMirror(
  ctx: ProxyContext,
  cluster: ClusterRuntime,
  method: string,
  path: string,
  authority: string,
  headers: OutgoingHttpHeaders,
  body: readonly Buffer[],
  /** The route's timeout; 0 (none) takes DEFAULT_MIRROR_TIMEOUT_MS. */
  timeoutMs: number,
): void {
  if (inFlight >= ctx.limits.maxMirrorsInFlight) return;
  const e = cluster.pick(undefined);
  if (e === undefined) return;
  inFlight++;
  e.active++;
  const sink = new MirrorSink(e, timeoutMs > 0 ? timeoutMs : DEFAULT_MIRROR_TIMEOUT_MS);
  const attempt = e.pool.open(sink, method, path, authority, { ...headers });
  sink.attempt = attempt;
  for (const chunk of body) attempt.write(chunk);
  attempt.end();
}
