/**
 * An AttemptOwner for upstream client tests: records the response, its
 * body and trailers, or the failure, and resolves `done` when the attempt
 * is over.
 */

import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Attempt, AttemptOwner, UpstreamFailureKind } from '../../proxy/upstream/upstream-attempt.js';

export interface Outcome {
  status?: number;
  headers?: IncomingHttpHeaders;
  body?: Buffer;
  trailers?: IncomingHttpHeaders;
  failure?: { kind: UpstreamFailureKind; err: Error };
  aborted?: boolean;
}

/** An owner that records what happened and reads the whole body (unless told not to). */
export class Recorder implements AttemptOwner {
  readonly outcome: Outcome = {};
  readonly done: Promise<Outcome>;
  #resolve: (o: Outcome) => void = () => undefined;
  constructor(private readonly readBody = true) {
    this.done = new Promise((resolve) => (this.#resolve = resolve));
  }
  body: Readable | undefined;
  onAttemptResponse(attempt: Attempt, status: number, headers: IncomingHttpHeaders, body: Readable): void {
    this.outcome.status = status;
    this.outcome.headers = headers;
    this.body = body;
    const chunks: Buffer[] = [];
    body.on('aborted', () => {
      this.outcome.aborted = true;
      this.#resolve(this.outcome);
    });
    body.on('error', () => undefined);
    body.on('end', () => {
      this.outcome.body = Buffer.concat(chunks);
      this.outcome.trailers = attempt.trailers();
      this.#resolve(this.outcome);
    });
    body.on('data', (c: Buffer) => chunks.push(c));
    if (!this.readBody) body.pause();
  }
  onAttemptFailure(_attempt: Attempt, kind: UpstreamFailureKind, err: Error): void {
    this.outcome.failure = { kind, err };
    this.#resolve(this.outcome);
  }
  onAttemptDrain(): void {}
}
