/**
 * TokenReview against a Kubernetes API server over plain node:http(s):
 * POST /apis/authentication.k8s.io/v1/tokenreviews with the zone CP's own
 * credentials. Positive answers are cached briefly (keyed by the token's
 * hash), so a fleet renewing at once does not hammer the API server.
 */

import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { ReviewedAccount, TokenReviewer } from './token-reviewer.js';

export interface KubernetesTokenReviewerOptions {
  /** API server base URL, e.g. https://10.96.0.1:443. */
  server: string;
  /** Bearer token of the zone CP (its own ServiceAccount token); needs `create tokenreviews`. */
  token?: string;
  /** PEM CA of the API server (https). */
  caPem?: string;
  /**
   * Adds credentials and TLS settings to each request (a kubeconfig's
   * `applyToHTTPSOptions`: client certificates, tokens, exec plugins).
   */
  prepare?: (options: https.RequestOptions) => Promise<void>;
  /** Audiences the token must be for; default the API server's. */
  audiences?: string[];
  /** Default 5 s. */
  timeoutMs?: number;
  /** How long a positive review is reused. Default 30 s; 0 disables the cache. */
  cacheMs?: number;
}

const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;
const MAX_CACHE_ENTRIES = 10_000;

export class KubernetesTokenReviewer implements TokenReviewer {
  private readonly url: URL;
  private readonly cache = new Map<string, { account: ReviewedAccount; until: number }>();

  constructor(private readonly options: KubernetesTokenReviewerOptions) {
    try {
      this.url = new URL('/apis/authentication.k8s.io/v1/tokenreviews', options.server);
    } catch {
      throw new MeshError(ErrorCodes.CONFIG, `invalid Kubernetes API server URL "${options.server}"`);
    }
  }

  async review(token: string): Promise<ReviewedAccount> {
    const key = createHash('sha256').update(token).digest('base64url');
    const cached = this.cache.get(key);
    if (cached !== undefined && cached.until > Date.now()) return cached.account;
    const answer = await this.post({
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token, ...(this.options.audiences ? { audiences: this.options.audiences } : {}) },
    });
    const status = isRecord(answer) && isRecord(answer.status) ? answer.status : {};
    if (status.authenticated !== true) {
      const reason =
        typeof status.error === 'string' && status.error ? status.error : 'token not authenticated';
      throw new MeshError(
        ErrorCodes.UNAUTHENTICATED,
        `Kubernetes refused the ServiceAccount token: ${reason}`,
      );
    }
    const user = isRecord(status.user) ? status.user : {};
    const username = typeof user.username === 'string' ? user.username : '';
    const match = SERVICE_ACCOUNT_USER.exec(username);
    if (!match?.[1] || !match[2]) {
      throw new MeshError(
        ErrorCodes.FORBIDDEN,
        `the token belongs to "${username}", not to a ServiceAccount`,
      );
    }
    const extra = isRecord(user.extra) ? user.extra : {};
    const podNames = extra['authentication.kubernetes.io/pod-name'];
    const podName = Array.isArray(podNames) && typeof podNames[0] === 'string' ? podNames[0] : undefined;
    const account: ReviewedAccount = {
      namespace: match[1],
      serviceAccount: match[2],
      ...(podName === undefined ? {} : { podName }),
    };
    const cacheMs = this.options.cacheMs ?? 30_000;
    if (cacheMs > 0) {
      if (this.cache.size >= MAX_CACHE_ENTRIES) this.cache.clear();
      this.cache.set(key, { account, until: Date.now() + cacheMs });
    }
    return account;
  }

  private async post(body: unknown): Promise<unknown> {
    const payload = JSON.stringify(body);
    const isHttps = this.url.protocol === 'https:';
    const request = isHttps ? https.request : http.request;
    const requestOptions: https.RequestOptions = {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        'content-length': Buffer.byteLength(payload),
        ...(this.options.token ? { authorization: `Bearer ${this.options.token}` } : {}),
      },
      ...(isHttps && this.options.caPem ? { ca: this.options.caPem } : {}),
      timeout: this.options.timeoutMs ?? 5000,
    };
    try {
      await this.options.prepare?.(requestOptions);
    } catch (err) {
      throw new MeshError(
        ErrorCodes.UNAVAILABLE,
        `cannot prepare Kubernetes credentials for TokenReview: ${(err as Error).message}`,
      );
    }
    return new Promise((resolve, reject) => {
      const req = request(this.url, requestOptions, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > 1024 * 1024) req.destroy(new Error('TokenReview answer larger than 1 MiB'));
          else chunks.push(chunk);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const statusCode = res.statusCode ?? 0;
          if (statusCode < 200 || statusCode >= 300) {
            reject(
              new MeshError(
                ErrorCodes.UNAVAILABLE,
                `Kubernetes TokenReview answered ${statusCode}: ${text.slice(0, 200)}`,
              ),
            );
            return;
          }
          try {
            resolve(JSON.parse(text));
          } catch {
            reject(
              new MeshError(
                ErrorCodes.UNAVAILABLE,
                'Kubernetes TokenReview answered a body that is not JSON',
              ),
            );
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (err) =>
        reject(
          new MeshError(
            ErrorCodes.UNAVAILABLE,
            `cannot reach the Kubernetes API server for TokenReview: ${err.message}`,
          ),
        ),
      );
      req.end(payload);
    });
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
