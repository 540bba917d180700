/**
 * The mutating admission webhook (`admission.k8s.io/v1` AdmissionReview):
 * `POST /inject` with a review of a Pod CREATE, answered with the
 * injection patch (`patchType: JSONPatch`, base64) or with a plain
 * `allowed: true`.
 *
 * meshfed never blocks a pod: every answer that can carry the request's
 * uid is `allowed: true`; an internal failure is logged and answered
 * without a patch (the pod starts unmeshed and the log says why). Only a
 * body that is not an AdmissionReview at all gets a 400, which the API
 * server treats as a webhook failure; the MutatingWebhookConfiguration
 * sets `failurePolicy: Ignore` so that, too, admits the pod.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';

import { ErrorCodes, MeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import type { Logger } from '../../core/log.js';
import { buildInjectionPatch, decideInjection } from './webhook-inject.js';
import type { InjectionOptions } from './webhook-inject.js';

export interface InjectionWebhookOptions extends InjectionOptions {
  /**
   * Labels of a namespace as the Namespaces informer last saw them
   * (`KubernetesSource.namespaceLabels`); undefined when unknown, and then
   * the webhook configuration's namespaceSelector is trusted.
   */
  namespaceLabels?: (namespace: string) => Record<string, string> | undefined;
  logger?: Logger;
  /** Largest AdmissionReview accepted. Default 3 MiB (the API server's own request limit). */
  maxBodyBytes?: number;
}

export interface AdmissionResponse {
  uid: string;
  allowed: true;
  patchType?: 'JSONPatch';
  /** base64 of the JSON patch. */
  patch?: string;
}

export interface AdmissionReviewAnswer {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

type Obj = Record<string, unknown>;

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A body that cannot be answered as an AdmissionReview (no request uid). */
export class AdmissionRequestError extends Error {}

/**
 * Reviews one AdmissionReview (parsed JSON). Throws AdmissionRequestError
 * only when the body has no `request.uid` to answer to.
 */
export function reviewAdmission(
  review: unknown,
  options: InjectionWebhookOptions,
  logger: Logger,
): AdmissionReviewAnswer {
  if (
    !isObj(review) ||
    !isObj(review.request) ||
    typeof review.request.uid !== 'string' ||
    review.request.uid === ''
  ) {
    throw new AdmissionRequestError('the body is not an AdmissionReview with request.uid');
  }
  if (review.apiVersion !== undefined && review.apiVersion !== 'admission.k8s.io/v1') {
    throw new AdmissionRequestError(
      `AdmissionReview apiVersion "${String(review.apiVersion)}" is not admission.k8s.io/v1`,
    );
  }
  const request = review.request;
  const uid = review.request.uid;
  const answer = (response: Omit<AdmissionResponse, 'uid' | 'allowed'> = {}): AdmissionReviewAnswer => ({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    response: { uid, allowed: true, ...response },
  });
  const kind = isObj(request.kind) ? request.kind : {};
  if (
    kind.kind !== 'Pod' ||
    (kind.group !== undefined && kind.group !== '') ||
    request.operation !== 'CREATE'
  ) {
    return answer();
  }
  const pod = request.object;
  const namespace =
    typeof request.namespace === 'string'
      ? request.namespace
      : isObj(pod) && isObj(pod.metadata) && typeof pod.metadata.namespace === 'string'
        ? pod.metadata.namespace
        : 'default';
  const podName =
    isObj(pod) && isObj(pod.metadata)
      ? String(pod.metadata.name ?? pod.metadata.generateName ?? request.name ?? '')
      : String(request.name ?? '');
  try {
    const decision = decideInjection(pod, options.namespaceLabels?.(namespace));
    if (!decision.inject) {
      logger.debug('pod not injected', { namespace, pod: podName, reason: decision.reason });
      return answer();
    }
    const patch = buildInjectionPatch(pod as Obj, options);
    logger.info('injected sidecar', { namespace, pod: podName, uid, dryRun: request.dryRun === true });
    return answer({ patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') });
  } catch (err) {
    // Never fail a pod because of meshfed: admit it unmeshed and say so.
    logger.error('sidecar injection failed; admitting the pod without a sidecar', {
      namespace,
      pod: podName,
      uid,
      err,
    });
    return answer();
  }
}

async function readLimited(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) return undefined;
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * The request handler of `POST /inject`. Mount it on an HTTPS server (the
 * API server only calls webhooks over TLS), e.g. `startWebhookServer`.
 */
export function createInjectionWebhook(
  options: InjectionWebhookOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  if (typeof options.proxyImage !== 'string' || options.proxyImage === '') {
    throw new MeshError(ErrorCodes.CONFIG, 'injection webhook: proxyImage is required');
  }
  if (
    typeof options.zoneCpAddress !== 'string' ||
    !/^[^\s:]+:\d+$|^\[[0-9a-fA-F:]+\]:\d+$/.test(options.zoneCpAddress)
  ) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `injection webhook: zoneCpAddress must be host:port, got "${String(options.zoneCpAddress)}"`,
    );
  }
  const logger = options.logger ?? createLogger('zone-cp.webhook');
  const limit = options.maxBodyBytes ?? 3 * 1024 * 1024;
  return (req, res) => {
    void (async () => {
      try {
        if (req.method !== 'POST') {
          // Read and drop whatever body came along, so the answer is not cut off by an unread request.
          await readLimited(req, limit);
          send(res, 405, { error: `method ${req.method ?? ''} not allowed; POST an AdmissionReview` });
          return;
        }
        const body = await readLimited(req, limit);
        if (body === undefined) {
          res.setHeader('connection', 'close');
          send(res, 413, { error: `AdmissionReview larger than ${limit} bytes` });
          return;
        }
        let parsed: unknown;
        try {
          parsed = JSON.parse(body.toString('utf8'));
        } catch (err) {
          send(res, 400, { error: `the body is not JSON: ${(err as Error).message}` });
          return;
        }
        send(res, 200, reviewAdmission(parsed, options, logger));
      } catch (err) {
        if (err instanceof AdmissionRequestError) {
          send(res, 400, { error: err.message });
          return;
        }
        logger.error('webhook request failed', { err });
        if (!res.headersSent) send(res, 500, { error: 'internal error' });
        else res.destroy();
      }
    })();
  };
}
