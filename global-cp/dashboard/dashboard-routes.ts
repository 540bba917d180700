/**
 * The dashboard on global's API port: the page (`/`, for browsers; other
 * clients still get the JSON index), its script and stylesheet (public:
 * they hold no data), and behind the same token auth as the API (access
 * `read`): `GET /api/v1/dashboard/state` and `GET /api/v1/dashboard/events`,
 * a server-sent-event stream of the whole state every `pushIntervalMs`.
 *
 * The page reads the events with fetch() and an Authorization header, not
 * EventSource, so the token never appears in a URL (or a log). One timer
 * builds the state for every subscriber; a stream lives at most
 * `maxStreamMs` so a revoked token stops receiving within that time (the
 * page reconnects, authenticating again).
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { protoDirectory } from '../../core/grpc/proto.js';
import type { RequestContext, Router } from '../../core/http/router.js';
import { sendJson } from '../../core/http/respond.js';
import { SseStream } from '../../core/http/sse.js';
import type { Logger } from '../../core/log.js';
import { buildDashboardState, type DashboardSources, type DashboardState } from './dashboard-state.js';

export interface DashboardOptions extends DashboardSources {
  logger: Logger;
  /** Period of the SSE `state` events. Default 2 s, or MESHFED_DASHBOARD_PUSH_MS. */
  pushIntervalMs?: number;
  /** A stream is ended after this (the page reconnects and authenticates again). Default 5 min. */
  maxStreamMs?: number;
  /** Concurrent event streams. Default 256. */
  maxStreams?: number;
  /** What `/` answers clients that do not ask for HTML. */
  index: unknown;
}

export interface Dashboard {
  /** Ends every event stream and stops the timer. Idempotent. */
  close(): void;
}

interface Asset {
  type: string;
  body: Buffer;
}

const ASSETS: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

/** global-cp/dashboard/assets under the package root (found as core/grpc/proto.ts finds core/proto). */
export function assetDirectory(): string {
  return join(protoDirectory(), '..', '..', 'global-cp', 'dashboard', 'assets');
}

function loadAssets(logger: Logger): Map<string, Asset> | MeshError {
  const dir = assetDirectory();
  const assets = new Map<string, Asset>();
  try {
    for (const [name, type] of Object.entries(ASSETS))
      assets.set(name, { type, body: readFileSync(join(dir, name)) });
    return assets;
  } catch (err) {
    logger.warn('dashboard assets not found; the page answers 503', { dir, err });
    return new MeshError(ErrorCodes.UNAVAILABLE, `the dashboard page is not installed (${dir} is missing)`);
  }
}

export function registerDashboardRoutes(router: Router, options: DashboardOptions): Dashboard {
  const assets = loadAssets(options.logger);
  const pushMs = intervalOption(options.pushIntervalMs, 'MESHFED_DASHBOARD_PUSH_MS', 2000);
  const maxStreamMs = options.maxStreamMs ?? 5 * 60_000;
  const maxStreams = options.maxStreams ?? 256;
  const streams = new Set<SseStream>();
  let timer: NodeJS.Timeout | undefined;
  let building = false;
  let closed = false;

  const serve = (name: string) => (ctx: RequestContext) => {
    if (assets instanceof MeshError) throw assets;
    const asset = assets.get(name);
    if (asset === undefined) throw new MeshError(ErrorCodes.NOT_FOUND, `no dashboard asset ${name}`);
    ctx.res.writeHead(200, {
      'content-type': asset.type,
      'content-length': asset.body.length,
      'cache-control': 'no-cache',
      // Everything the page needs comes from this origin; nothing inline runs.
      'content-security-policy':
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
      'x-content-type-options': 'nosniff',
    });
    ctx.res.end(asset.body);
  };

  const tick = async (): Promise<void> => {
    if (building || streams.size === 0) return;
    building = true;
    try {
      const state = await buildDashboardState(options);
      for (const stream of streams) stream.send('state', state);
    } catch (err) {
      options.logger.warn('building the dashboard state failed', { err });
    } finally {
      building = false;
    }
  };

  router
    .add('GET', '/', 'public', (ctx) => {
      const accept = ctx.req.headers.accept ?? '';
      if (!accept.includes('text/html')) {
        sendJson(ctx.res, 200, options.index);
        return;
      }
      serve('index.html')(ctx);
    })
    .add('GET', '/dashboard/app.js', 'public', serve('app.js'))
    .add('GET', '/dashboard/style.css', 'public', serve('style.css'))
    .add('GET', '/api/v1/dashboard/state', 'read', async (ctx) => {
      const state: DashboardState = await buildDashboardState(options);
      sendJson(ctx.res, 200, state);
    })
    .add('GET', '/api/v1/dashboard/events', 'read', async (ctx) => {
      if (closed) throw new MeshError(ErrorCodes.UNAVAILABLE, 'the server is shutting down');
      if (streams.size >= maxStreams) {
        throw new MeshError(
          ErrorCodes.UNAVAILABLE,
          `too many dashboard streams (${maxStreams}); retry later`,
        );
      }
      const first = await buildDashboardState(options);
      const stream = new SseStream(ctx.res, {
        heartbeatMs: 15_000,
        onClose: () => {
          streams.delete(stream);
          clearTimeout(lifetime);
        },
      });
      const lifetime = setTimeout(() => stream.close(), maxStreamMs);
      lifetime.unref();
      streams.add(stream);
      // How long the browser waits before reconnecting; part of the first event's frame.
      ctx.res.write(`retry: ${Math.max(1000, pushMs)}\n`);
      stream.send('state', first);
      if (timer === undefined) {
        timer = setInterval(() => void tick(), pushMs);
        timer.unref();
      }
    });

  return {
    close() {
      if (closed) return;
      closed = true;
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      for (const stream of [...streams]) stream.close();
    },
  };
}

function intervalOption(value: number | undefined, env: string, fallback: number): number {
  const fromEnv = Number(process.env[env]);
  const chosen = value ?? (Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : fallback);
  return Math.max(100, Math.floor(chosen));
}
