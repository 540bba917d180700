/**
 * The request pipeline shared by the control planes' REST APIs: route,
 * authenticate, authorize, run the handler, answer errors as JSON, count it.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Router } from '../http/router.js';
import { sendError, toMeshError } from '../http/respond.js';
import type { Logger } from '../log.js';
import { ErrorCodes } from '../errors.js';
import type { Authenticator, Principal } from './auth.js';
import { authorize } from './auth.js';

export interface ApiObserver {
  /** Called once per request when the response finishes. */
  onResponse(route: string, method: string, status: number, seconds: number): void;
}

export interface ApiHandlerOptions {
  router: Router;
  authenticator: Authenticator;
  logger: Logger;
  observer?: ApiObserver;
}

const principalKey = Symbol('meshfed.principal');

/** The authenticated caller of a request, set by the pipeline before the handler runs. */
export function principalOf(req: IncomingMessage): Principal | undefined {
  return (req as IncomingMessage & { [principalKey]?: Principal })[principalKey];
}

export function createApiHandler(
  options: ApiHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const { router, authenticator, logger, observer } = options;
  return (req, res) => {
    const started = process.hrtime.bigint();
    let route = 'unmatched';
    const method = req.method ?? 'GET';
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      observer?.onResponse(route, method, res.statusCode, seconds);
    });
    void (async () => {
      try {
        const url = new URL(req.url ?? '/', 'http://localhost');
        const match = router.match(method, url.pathname);
        route = match.pattern;
        if (match.access !== 'public') {
          const principal = authenticator.authenticate(req);
          authorize(principal, match.access);
          (req as IncomingMessage & { [principalKey]?: Principal })[principalKey] = principal;
        }
        await match.handler({ req, res, params: match.params, query: url.searchParams, route });
      } catch (err) {
        const meshErr = toMeshError(err);
        if (meshErr.code === ErrorCodes.INTERNAL) {
          logger.error('request failed', { method, url: req.url, err: meshErr.cause ?? meshErr });
        }
        sendError(res, meshErr);
      }
    })();
  };
}
