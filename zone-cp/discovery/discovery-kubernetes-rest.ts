/**
 * Raw list calls against the Kubernetes API for the informers. The typed
 * clients of @kubernetes/client-node deserialize into model classes, which
 * costs time on large lists and throws on a malformed object (one bad
 * EndpointSlice would stop the whole informer); here objects stay plain
 * JSON, the same shape watch events have, and the source checks each one.
 */

import http from 'node:http';
import https from 'node:https';

import type { KubeConfig } from '@kubernetes/client-node';

import { ErrorCodes, MeshError } from '../../core/errors.js';

export interface RawList {
  metadata: { resourceVersion?: string; continue?: string };
  items: unknown[];
}

/** An API error that client-node's informer understands (`statusCode` 410 → relist). */
export class KubeHttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

const PAGE_SIZE = 500;
const LIST_TIMEOUT_MS = 60_000;

async function getJson(kc: KubeConfig, url: URL): Promise<unknown> {
  const options: https.RequestOptions = { method: 'GET', headers: { accept: 'application/json' } };
  await kc.applyToHTTPSOptions(options);
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(url, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) {
          let message = text.slice(0, 300);
          try {
            const body = JSON.parse(text) as { message?: unknown };
            if (typeof body.message === 'string') message = body.message;
          } catch {
            // not a Status object: keep the raw text
          }
          reject(new KubeHttpError(status, `GET ${url.pathname} answered ${status}: ${message}`));
          return;
        }
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(
            new KubeHttpError(status, `GET ${url.pathname} answered invalid JSON: ${(err as Error).message}`),
          );
        }
      });
    });
    req.setTimeout(LIST_TIMEOUT_MS, () => req.destroy(new Error(`GET ${url.pathname} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Lists every object under `path` (paged), returning plain JSON and the list's resourceVersion. */
export async function listRaw(kc: KubeConfig, path: string): Promise<RawList> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new MeshError(ErrorCodes.CONFIG, 'the kubeconfig has no current cluster');
  const items: unknown[] = [];
  let resourceVersion: string | undefined;
  let cont: string | undefined;
  do {
    const url = new URL(cluster.server.replace(/\/+$/, '') + path);
    url.searchParams.set('limit', String(PAGE_SIZE));
    if (cont !== undefined) url.searchParams.set('continue', cont);
    const page = (await getJson(kc, url)) as Partial<RawList> | null;
    if (page === null || typeof page !== 'object' || !Array.isArray(page.items)) {
      throw new KubeHttpError(500, `GET ${path} did not answer a list`);
    }
    items.push(...page.items);
    resourceVersion ??= page.metadata?.resourceVersion;
    cont = page.metadata?.continue || undefined;
  } while (cont !== undefined);
  return { metadata: { resourceVersion }, items };
}
