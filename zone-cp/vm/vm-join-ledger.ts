/**
 * How often each VM join token was used. One record per redeemed token,
 * named by the token's SHA-256 (`hashToken`): the token itself is never
 * stored, and a replica sharing the store sees the same counter. A use is
 * counted with the store's compare-and-set, so two VMs racing on a
 * single-use token cannot both win. The same key joining again (a re-run of
 * `join`, or a retry after a failure half-way) is not a new use.
 *
 * Tokens global issued are counted here too: a vm token is bound to one
 * zone (core/vm/vm-token-spec.ts), so the zone that redeems it is the only
 * place it can be spent, and joins need no round trip to global.
 */

import { ErrorCodes, MeshError, isMeshError } from '../../core/errors.js';
import { INTERNAL_API_VERSION } from '../../core/auth/internal-kinds.js';
import type { StoredResource } from '../../core/resource/resource.js';
import type { Store } from '../../core/store/store.js';
import { JOIN_TOKEN_KIND } from './vm-model.js';

const MAX_CAS_RETRIES = 10;
/** Joins remembered per token (an unlimited token may enroll a whole fleet; the count stays exact). */
const MAX_JOINS_KEPT = 100;

export interface JoinRecord {
  /** sha256 of the joining key's SPKI. */
  key: string;
  workloadEntry: string;
  address: string;
  at: string;
}

export interface RedeemRequest {
  tokenHash: string;
  tokenId: string;
  workloadGroup: string;
  namespace: string;
  /** 0 = unlimited. */
  maxUses: number;
  expiresAt: Date;
  join: JoinRecord;
}

export interface RedeemResult {
  /** The same key joined with this token before: no use was counted. */
  repeat: boolean;
  uses: number;
  maxUses: number;
}

interface LedgerSpec {
  tokenId: string;
  workloadGroup: string;
  namespace: string;
  maxUses: number;
  uses: number;
  expiresAt: string;
  joins: JoinRecord[];
}

function specOf(record: StoredResource): LedgerSpec {
  const spec = record.spec as Partial<LedgerSpec>;
  return {
    tokenId: String(spec.tokenId ?? ''),
    workloadGroup: String(spec.workloadGroup ?? ''),
    namespace: String(spec.namespace ?? ''),
    maxUses: Number(spec.maxUses ?? 0),
    uses: Number(spec.uses ?? 0),
    expiresAt: String(spec.expiresAt ?? ''),
    joins: Array.isArray(spec.joins) ? spec.joins : [],
  };
}

export class JoinLedger {
  constructor(private readonly store: Store) {}

  /**
   * Counts one use of the token for `join`, or recognises a repeat of the
   * same key. Throws TOKEN_INVALID when the token is used up.
   */
  async redeem(request: RedeemRequest): Promise<RedeemResult> {
    const key = { kind: JOIN_TOKEN_KIND, namespace: '', name: request.tokenHash };
    for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt++) {
      const current = await this.store.get(key);
      try {
        if (current === undefined) {
          const spec: LedgerSpec = {
            tokenId: request.tokenId,
            workloadGroup: request.workloadGroup,
            namespace: request.namespace,
            maxUses: request.maxUses,
            uses: 1,
            expiresAt: request.expiresAt.toISOString(),
            joins: [request.join],
          };
          await this.store.create({
            apiVersion: INTERNAL_API_VERSION,
            kind: JOIN_TOKEN_KIND,
            metadata: { name: request.tokenHash },
            spec: spec as unknown as Record<string, unknown>,
          });
          return { repeat: false, uses: 1, maxUses: request.maxUses };
        }
        const spec = specOf(current);
        const previous = spec.joins.find((j) => j.key === request.join.key);
        if (previous !== undefined) return { repeat: true, uses: spec.uses, maxUses: spec.maxUses };
        if (spec.maxUses > 0 && spec.uses >= spec.maxUses) {
          throw new MeshError(
            ErrorCodes.TOKEN_INVALID,
            `join token ${request.tokenId} is used up (${spec.uses} of ${spec.maxUses} use${spec.maxUses === 1 ? '' : 's'}; last by WorkloadEntry ${spec.joins.at(-1)?.workloadEntry ?? '?'}): create a new token`,
          );
        }
        const next: LedgerSpec = {
          ...spec,
          uses: spec.uses + 1,
          joins: [...spec.joins, request.join].slice(-MAX_JOINS_KEPT),
        };
        await this.store.update(
          { ...current, spec: next as unknown as Record<string, unknown> },
          { expectedResourceVersion: current.metadata.resourceVersion },
        );
        return { repeat: false, uses: next.uses, maxUses: next.maxUses };
      } catch (err) {
        // Another join of the same token won the write: read again and recount.
        if (isMeshError(err, ErrorCodes.CONFLICT) || isMeshError(err, ErrorCodes.ALREADY_EXISTS)) continue;
        throw err;
      }
    }
    throw new MeshError(ErrorCodes.CONFLICT, 'the join token is being redeemed concurrently; retry');
  }

  /** Drops records of tokens that expired before `now` (they can no longer be redeemed anyway). */
  async prune(now: Date): Promise<number> {
    const { items } = await this.store.list({ kind: JOIN_TOKEN_KIND, namespace: '' });
    let removed = 0;
    for (const item of items) {
      const expiresAt = Date.parse(specOf(item).expiresAt);
      if (!(expiresAt < now.getTime())) continue;
      try {
        await this.store.delete(
          { kind: JOIN_TOKEN_KIND, namespace: '', name: item.metadata.name },
          { expectedResourceVersion: item.metadata.resourceVersion },
        );
        removed++;
      } catch (err) {
        if (!isMeshError(err, ErrorCodes.NOT_FOUND) && !isMeshError(err, ErrorCodes.CONFLICT)) throw err;
      }
    }
    return removed;
  }
}
