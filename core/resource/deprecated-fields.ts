/**
 * Deprecated Istio fields that meshfed still accepts. Each is rewritten to
 * its successor (or dropped when the successor is also set) and reported as
 * a warning, so that old manifests apply and their authors hear about it.
 */

import { key } from './validate-common.js';
import type { Ctx, Obj } from './validate-common.js';

interface Replacement {
  /** Whether the successor is already set, in which case the old value is dropped. */
  successorSet: boolean;
  /** The successor as the warning names it when the old value is dropped. */
  successor: string;
  /** What the old value became, as the warning names it. */
  mappedTo: string;
  /** Writes the old value into its successor. */
  map: (old: unknown) => void;
}

/** Remove `parent[from]` and map it to its successor, with a warning either way. */
function replaceDeprecated(ctx: Ctx, parent: Obj, path: string, from: string, r: Replacement): void {
  const old = parent[from];
  if (old === undefined) return;
  delete parent[from];
  if (r.successorSet) {
    ctx.warnings.push(`${key(path, from)} is deprecated and ignored because ${r.successor} is set`);
    return;
  }
  r.map(old);
  ctx.warnings.push(`${key(path, from)} is deprecated; mapped to ${r.mappedTo}`);
}

/** A bare number percentage (`percent`, `mirror_percent`, `mirrorPercent`) to Istio's `Percent` message. */
export function mapDeprecatedPercent(ctx: Ctx, parent: Obj, path: string, from: string, to: string): void {
  replaceDeprecated(ctx, parent, path, from, {
    successorSet: parent[to] !== undefined,
    successor: key(path, to),
    mappedTo: `${key(path, to)}.value`,
    map: (old) => {
      parent[to] = { value: old };
    },
  });
}

/** CORS `allowOrigin` (exact origins) to `allowOrigins` StringMatches. */
export function mapDeprecatedAllowOrigin(ctx: Ctx, cors: Obj, path: string): void {
  const old = cors.allowOrigin;
  if (!Array.isArray(old)) return;
  replaceDeprecated(ctx, cors, path, 'allowOrigin', {
    successorSet: cors.allowOrigins !== undefined,
    successor: 'allowOrigins',
    mappedTo: `${key(path, 'allowOrigins')} exact matches`,
    map: () => {
      cors.allowOrigins = old.map((origin) => ({ exact: origin }));
    },
  });
}

/** The LEAST_CONN load-balancing algorithm, an alias of LEAST_REQUEST. */
export function mapDeprecatedLeastConn(ctx: Ctx, lb: Obj, path: string): void {
  if (lb.simple !== 'LEAST_CONN') return;
  lb.simple = 'LEAST_REQUEST';
  ctx.warnings.push(`${key(path, 'simple')}: LEAST_CONN is deprecated; mapped to LEAST_REQUEST`);
}

/** consistentHash `minimumRingSize` to `ringHash.minimumRingSize`. */
export function mapDeprecatedMinimumRingSize(ctx: Ctx, consistentHash: Obj, path: string): void {
  replaceDeprecated(ctx, consistentHash, path, 'minimumRingSize', {
    successorSet: consistentHash.ringHash !== undefined || consistentHash.maglev !== undefined,
    successor: 'ringHash or maglev',
    mappedTo: 'ringHash.minimumRingSize',
    map: (old) => {
      consistentHash.ringHash = { minimumRingSize: old };
    },
  });
}

/** outlierDetection `consecutiveErrors` to `consecutive5xxErrors`. */
export function mapDeprecatedConsecutiveErrors(ctx: Ctx, outlierDetection: Obj, path: string): void {
  replaceDeprecated(ctx, outlierDetection, path, 'consecutiveErrors', {
    successorSet: outlierDetection.consecutive5xxErrors !== undefined,
    successor: 'consecutive5xxErrors',
    mappedTo: 'consecutive5xxErrors',
    map: (old) => {
      outlierDetection.consecutive5xxErrors = old;
    },
  });
}
