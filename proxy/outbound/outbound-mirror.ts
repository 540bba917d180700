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

class MirrorSink implements AttemptOwner {
  readonly endpoint: EndpointState;
  done = false;

  constructor(endpoint: EndpointState) {
    this.endpoint = endpoint;
  }

  #finish(): void {
    if (this.done) return;
    this.done = true;
    inFlight--;
    this.endpoint.active--;
  }

  onAttemptResponse(_attempt: Attempt, _status: number, _headers: IncomingHttpHeaders, body: Readable): void {
    body.on('end', () => this.#finish());
    body.on('error', () => this.#finish());
    body.on('close', () => this.#finish());
    body.resume();
  }

  onAttemptFailure(): void {
    this.#finish();
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
): void {
  if (inFlight >= ctx.limits.maxMirrorsInFlight) return;
  const e = cluster.pick(undefined);
  if (e === undefined) return;
  inFlight++;
  e.active++;
  const sink = new MirrorSink(e);
  const attempt = e.pool.open(sink, method, path, authority, { ...headers });
  for (const chunk of body) attempt.write(chunk);
  attempt.end();
}
