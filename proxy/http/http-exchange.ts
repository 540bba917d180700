/**
 * The downstream half of a proxied HTTP request, shared by the outbound and
 * inbound sides: reading the request body (streamed to the current attempt
 * and, when a retry or mirror may need it, copied up to a limit so it can
 * be replayed), relaying the chosen upstream response with backpressure and
 * trailers, local replies, and noticing a client that goes away. Subclasses
 * decide where requests go and what a failure means.
 *
 * Event handlers are module functions that find the exchange through a
 * symbol on the emitter: no closures per request.
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Attempt, AttemptOwner, UpstreamFailureKind } from '../upstream/upstream-attempt.js';
import { DirectBody, type BodySink } from '../upstream/direct-body.js';
import { endToEndHeaders } from './http-headers.js';
import type { DownstreamBody, DownstreamRequest, DownstreamResponse } from './downstream.js';
import { sendLocalReply } from './local-reply.js';
import { addFlag } from './response-flags.js';

const kExchange = Symbol('meshfed.exchange');

interface Tagged {
  [kExchange]?: HttpExchange;
}

/** Bodies up to this size are kept for retries and mirrors (Envoy's default buffer limit). */
export const DEFAULT_REPLAY_LIMIT = 1 << 20;

export abstract class HttpExchange implements AttemptOwner, BodySink {
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  /** The request as a body stream (the same object). */
  readonly #body: DownstreamBody;
  /** The downstream speaks HTTP/2 (a LeanRequest of the lean HTTP/2 server). */
  readonly h2: boolean;
  readonly grpc: boolean;
  readonly startMs: number;
  readonly startTime: number;
  status = 0;
  flags = '-';
  details = '';
  requestBytes = 0;
  responseBytes = 0;
  grpcStatus = '';
  attempt: Attempt | undefined;
  /** Response headers went downstream: no more retries or local replies. */
  committed = false;
  finished = false;
  // Request body.
  readonly hasBody: boolean;
  bodyComplete: boolean;
  #copy: Buffer[] | undefined;
  #copyBytes = 0;
  #replayLimit = 0;
  /** Part of the body is gone (streamed past the copy limit): the request cannot be replayed. */
  bodyLost = false;
  #listening = false;
  #responseBody: Readable | undefined;
  /** An HTTP/1.1 upstream body delivered straight to us (no pipe). */
  #directBody: DirectBody | undefined;
  #drainListening = false;
  /** gRPC status that came in the response headers (trailers-only): it goes out as trailers. */
  #grpcTrailers: Record<string, string> | undefined;

  constructor(req: DownstreamRequest, res: DownstreamResponse, startMs: number) {
    this.req = req;
    this.#body = req;
    this.res = res;
    this.startMs = startMs;
    this.startTime = Date.now();
    this.h2 = req.httpVersionMajor === 2;
    const ct = req.headers['content-type'];
    this.grpc = typeof ct === 'string' && ct.startsWith('application/grpc');
    this.hasBody = requestHasBody(req);
    this.bodyComplete = !this.hasBody;
    (res as DownstreamResponse & Tagged)[kExchange] = this;
    res.on('close', onResponseClose);
  }

  /**
   * Starts reading the body. `replayLimit` > 0 keeps a copy up to that many
   * bytes so a retry or mirror can send it again.
   */
  readBody(replayLimit: number): void {
    if (!this.hasBody || this.#listening) return;
    this.#replayLimit = replayLimit;
    if (replayLimit > 0) {
      this.#copy = [];
      this.#listen();
    }
    // Without a copy, reading waits for the first attempt: there is nowhere to put the bytes before.
  }

  #listen(): void {
    this.#listening = true;
    if (this.#copy === undefined) this.bodyLost = true;
    (this.req as DownstreamRequest & Tagged)[kExchange] = this;
    this.#body.on('data', onRequestData);
    this.#body.on('end', onRequestEnd);
  }

  /** True while the whole body (so far) can be sent again. */
  get replayable(): boolean {
    return !this.bodyLost;
  }

  /** The copied body, once complete and kept whole (for mirrors). */
  get bodyCopy(): Buffer[] | undefined {
    return this.bodyComplete && !this.bodyLost ? (this.#copy ?? []) : undefined;
  }

  onRequestData(chunk: Buffer): void {
    this.requestBytes += chunk.length;
    if (this.#copy !== undefined) {
      this.#copyBytes += chunk.length;
      if (this.#copyBytes > this.#replayLimit) {
        this.#copy = undefined;
        this.bodyLost = true;
      } else {
        this.#copy.push(chunk);
      }
    }
    const attempt = this.attempt;
    if (attempt === undefined || attempt.broken) {
      // Between tries (a backoff, the pending queue) the chunk is only in the copy: read no
      // further, or the copy could pass its limit with no try to take the rest. The next
      // try's feedAttempt resumes.
      this.#body.pause();
    } else if (!attempt.write(chunk)) this.#body.pause();
  }

  onRequestEnd(): void {
    this.bodyComplete = true;
    const attempt = this.attempt;
    if (attempt !== undefined && !attempt.broken) attempt.end();
    this.onBodyComplete();
  }

  /** Hook: the whole request body has arrived. */
  protected onBodyComplete(): void {}

  /** Sends what is known of the body to a new attempt, and ends it if the body is complete. */
  protected feedAttempt(attempt: Attempt): void {
    this.attempt = attempt;
    if (this.#copy !== undefined) for (const chunk of this.#copy) attempt.write(chunk);
    if (this.bodyComplete) attempt.end();
    else if (!this.#listening) this.#listen();
    else if (this.#body.isPaused()) this.#body.resume();
  }

  onAttemptDrain(attempt: Attempt): void {
    if (attempt === this.attempt && !this.bodyComplete) this.#body.resume();
  }

  abstract onAttemptResponse(
    attempt: Attempt,
    status: number,
    headers: IncomingHttpHeaders,
    body: Readable,
  ): void;
  abstract onAttemptFailure(attempt: Attempt, kind: UpstreamFailureKind, err: Error): void;

  /** Headers for the downstream response (hook for header operations). */
  protected responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
    return endToEndHeaders(headers, false);
  }

  /** Sends the upstream response downstream. The exchange finishes when the body ends. */
  protected relay(status: number, headers: IncomingHttpHeaders, body: Readable): void {
    this.committed = true;
    this.status = status;
    const grpcStatus = headers['grpc-status'];
    const out = this.responseHeaders(headers);
    if (typeof grpcStatus === 'string') {
      this.grpcStatus = grpcStatus;
      // A trailers-only gRPC answer is re-sent as headers + trailers, a form every hop and client accepts.
      const trailers: Record<string, string> = { 'grpc-status': grpcStatus };
      for (const name of ['grpc-message', 'grpc-status-details-bin']) {
        const v = out[name];
        if (typeof v === 'string') trailers[name] = v;
        delete out[name];
      }
      delete out['grpc-status'];
      this.#grpcTrailers = trailers;
    }
    const res = this.res;
    if (res.destroyed) {
      body.destroy();
      this.finish();
      return;
    }
    try {
      res.writeHead(status, out);
    } catch (err) {
      // Headers Node refuses (invalid characters from a broken upstream): a protocol error.
      this.flags = addFlag(this.flags, 'UPE');
      this.details = `invalid upstream headers: ${(err as Error).message}`;
      body.destroy();
      this.committed = false;
      this.localReply(502, 'upstream sent invalid headers', 'UPE');
      return;
    }
    if (body instanceof DirectBody && body.attachSink(this)) {
      // The common case: the lean clients' chunks go to res.write with no stream plumbing in between.
      this.#directBody = body;
      return;
    }
    this.#responseBody = body;
    const tagged = body as Readable & Tagged;
    tagged[kExchange] = this;
    body.on('data', onResponseData);
    body.on('end', onResponseEnd);
    body.on('error', onResponseError);
    body.on('aborted', onResponseAborted);
    // Both listeners see every chunk: ours counts bytes, pipe writes with backpressure. pipe() asks of its
    // destination only events, write() and end(), which the lean server's response has too.
    body.pipe(res as unknown as NodeJS.WritableStream, { end: false });
  }

  onBodyChunk(chunk: Buffer): boolean {
    this.responseBytes += chunk.length;
    if (this.res.write(chunk)) return true;
    if (!this.#drainListening) {
      this.#drainListening = true;
      this.res.on('drain', onResponseDrain);
    }
    return false;
  }

  onBodyEnd(): void {
    this.onResponseEnd();
  }

  onBodyBroken(): void {
    this.onResponseBroken();
  }

  /** The client took what was written: read the upstream again. */
  resumeDirectBody(): void {
    this.#directBody?.resumeSink();
  }

  onResponseEnd(): void {
    if (this.#grpcTrailers !== undefined) {
      try {
        this.res.addTrailers(this.#grpcTrailers);
      } catch {
        // see below
      }
    }
    const trailers = this.attempt?.trailers();
    if (trailers !== undefined) {
      const t = endToEndHeaders(trailers, false);
      const g = trailers['grpc-status'];
      if (typeof g === 'string') this.grpcStatus = g;
      try {
        this.res.addTrailers(t as Record<string, string>);
      } catch {
        // Trailers with characters Node refuses are dropped rather than failing the response.
      }
    }
    this.res.end();
    this.finish();
  }

  /** The upstream failed mid-response: the client sees a reset, the log says UC. */
  onResponseBroken(): void {
    if (this.finished) return;
    this.flags = addFlag(this.flags, 'UC');
    this.details = 'upstream reset after response started';
    this.#responseBody?.unpipe(this.res as unknown as NodeJS.WritableStream);
    this.res.destroy();
    this.finish();
  }

  /** A local answer; `flag` is the response flag to record. */
  localReply(
    status: number,
    text: string,
    flag: string,
    headers?: OutgoingHttpHeaders,
    grpcCode?: number,
  ): void {
    if (this.finished) return;
    if (flag !== '-') this.flags = addFlag(this.flags, flag);
    if (this.details === '') this.details = text;
    this.committed = true;
    this.status = sendLocalReply(this.res, status, text, this.grpc, headers, grpcCode);
    if (this.grpc) this.grpcStatus = String(grpcCode ?? '') || this.grpcStatus;
    this.finish();
  }

  /** The client went away before the response completed. */
  onDownstreamClose(): void {
    if (this.finished) return;
    this.flags = addFlag(this.flags, 'DC');
    if (!this.committed) this.status = 0;
    this.#responseBody?.destroy();
    this.#directBody?.destroy();
    this.onDownstreamGone();
    this.finish();
  }

  /** Hook: abort upstream work when the client is gone. */
  protected onDownstreamGone(): void {
    this.attempt?.abort();
  }

  /** Runs once: metrics, access log, releasing slots. */
  protected finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.#listening && !this.bodyComplete) {
      // The rest of the body has nowhere to go: drop it (and let the socket continue). The copy
      // stays incomplete for good, so no mirror is sent from it when the body ends.
      this.#body.removeListener('data', onRequestData);
      this.#body.removeListener('end', onRequestEnd);
      this.#copy = undefined;
      this.bodyLost = true;
      this.#body.resume();
    }
    this.onFinish();
  }

  protected abstract onFinish(): void;
}

function requestHasBody(req: DownstreamRequest): boolean {
  if (req.httpVersionMajor === 2) {
    // The lean HTTP/2 server makes the request when its HEADERS arrive: complete means END_STREAM came with them.
    return !req.complete;
  }
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined) return true;
  const cl = h['content-length'];
  // Digits only by now (both parsers check); "00" is no body either.
  return cl !== undefined && Number(cl) !== 0;
}

function onRequestData(this: DownstreamRequest & Tagged, chunk: Buffer): void {
  this[kExchange]?.onRequestData(chunk);
}

function onRequestEnd(this: DownstreamRequest & Tagged): void {
  this[kExchange]?.onRequestEnd();
}

function onResponseClose(this: DownstreamResponse & Tagged): void {
  const x = this[kExchange];
  if (x === undefined || x.finished) return;
  if (!this.writableFinished) x.onDownstreamClose();
}

function onResponseDrain(this: DownstreamResponse & Tagged): void {
  this[kExchange]?.resumeDirectBody();
}

function onResponseData(this: Readable & Tagged, chunk: Buffer): void {
  const x = this[kExchange];
  if (x !== undefined) x.responseBytes += chunk.length;
}

function onResponseEnd(this: Readable & Tagged): void {
  this[kExchange]?.onResponseEnd();
}

function onResponseError(this: Readable & Tagged): void {
  this[kExchange]?.onResponseBroken();
}

function onResponseAborted(this: Readable & Tagged): void {
  this[kExchange]?.onResponseBroken();
}
