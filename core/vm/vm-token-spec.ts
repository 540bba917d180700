/**
 * The `vm` join token, shared by the two servers that issue it and the zone
 * that redeems it (issue #8: "global or zone API"):
 *
 *   POST /api/v1/tokens {"kind":"vm","zone":"zone-a","workloadGroup":"billing","namespace":"demo","uses":1,"ttl":"1h"}
 *
 * A zone CP issues tokens for itself only; the global CP issues them for any
 * zone (`zone` required) and checks the WorkloadGroup in its own store (the
 * one it syncs to the zones). Either way the token is an ES256 meshfed token
 * of kind `vm` bound to one zone, with `ext` = {@link VmTokenExt}. The zone
 * verifies global's signature with the keys it receives over KDS, and counts
 * uses in its own store (the token is bound to that zone, so no other zone
 * can spend it): see zone-cp/vm/vm-join-ledger.ts.
 */

import { X509Certificate } from 'node:crypto';
import { ErrorCodes, MeshError } from '../errors.js';
import type { TokenKindSpec } from '../api/token-routes.js';
import { isDns1123Label, isDns1123Subdomain } from '../resource/dns-name.js';
import type { Store } from '../store/store.js';
import type { TokenClaims } from '../token/token.js';

/** Most uses a limited token may allow; beyond, leave `uses` out (unlimited until expiry). */
export const MAX_VM_TOKEN_USES = 1_000_000;

/** The `ext` claims of a vm token. */
export interface VmTokenExt {
  workloadGroup: string;
  namespace: string;
  /** Decimal; absent = unlimited until the token expires. */
  uses?: string;
  /** `sha256:<hex>` of the mesh root, pinned by `vm-agent join` unless told otherwise. */
  caFingerprint?: string;
}

/** A vm token's claims as the zone redeems them. */
export interface VmTokenClaims {
  tokenId: string;
  zone: string;
  workloadGroup: string;
  namespace: string;
  /** 0 = unlimited. */
  maxUses: number;
}

/**
 * Reads the join claims of a verified `vm` token, throwing TOKEN_INVALID
 * when they are not those of a join token (a token from a release that
 * wrote other claims, or a hand-made one).
 */
export function readVmTokenClaims(claims: TokenClaims): VmTokenClaims {
  const group = claims.ext?.workloadGroup;
  const namespace = claims.ext?.namespace;
  const uses = claims.ext?.uses;
  if (claims.zone === undefined || group === undefined || namespace === undefined) {
    throw new MeshError(
      ErrorCodes.TOKEN_INVALID,
      `token ${claims.jti} names no zone and WorkloadGroup: not a join token`,
    );
  }
  const maxUses = uses === undefined ? 0 : Number(uses);
  if (!Number.isSafeInteger(maxUses) || maxUses < 0 || maxUses > MAX_VM_TOKEN_USES) {
    throw new MeshError(ErrorCodes.TOKEN_INVALID, `token ${claims.jti} has a malformed uses claim`);
  }
  return { tokenId: claims.jti, zone: claims.zone, workloadGroup: group, namespace, maxUses };
}

/** `sha256:<hex>` of the first certificate of a PEM bundle, '' when there is none. */
export function firstRootFingerprint(bundlePem: string): string {
  const match = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(bundlePem);
  if (!match) return '';
  const fingerprint = new X509Certificate(match[0]).fingerprint256;
  return `sha256:${fingerprint.replace(/:/g, '').toLowerCase()}`;
}

export interface VmTokenKindOptions {
  /**
   * The zone this server is: a zone CP issues tokens for itself only (the
   * `zone` field may be left out). Absent on the global CP, which issues
   * them for the zone the request names.
   */
  zone?: string;
  /** Where the WorkloadGroups are (the zone's store, or global's). */
  store: Store;
  /** PEM roots of the mesh (the first one is pinned by joining VMs); '' while unknown. */
  bundlePem: () => string;
  /** Where the groups are looked up, as refusals say it: 'in this zone', 'on global'. */
  where: string;
}

function invalid(field: string, message: string): MeshError {
  return new MeshError(ErrorCodes.INVALID_ARGUMENT, message, { field });
}

/** The `vm` entry of a server's token kind table (core/api/token-routes.ts). */
export function vmTokenKindSpec(options: VmTokenKindOptions): TokenKindSpec {
  return {
    kind: 'vm',
    fields: ['zone', 'workloadGroup', 'namespace', 'uses'],
    async claims(fields) {
      const zone = zoneOf(fields.zone, options.zone);
      const group = fields.workloadGroup;
      if (typeof group !== 'string' || !isDns1123Subdomain(group)) {
        throw invalid(
          'workloadGroup',
          'workloadGroup is required: the name of the WorkloadGroup the VM joins',
        );
      }
      const namespaceField = fields.namespace;
      if (
        namespaceField !== undefined &&
        (typeof namespaceField !== 'string' || !isDns1123Label(namespaceField))
      ) {
        throw invalid('namespace', `namespace ${JSON.stringify(namespaceField)} is not a DNS-1123 label`);
      }
      const namespace = await groupNamespace(options, group, namespaceField);
      const uses = parseUses(fields.uses);
      const caFingerprint = firstRootFingerprint(options.bundlePem());
      const ext: VmTokenExt = {
        workloadGroup: group,
        namespace,
        ...(uses === undefined ? {} : { uses: String(uses) }),
        ...(caFingerprint === '' ? {} : { caFingerprint }),
      };
      return { zone, ext: { ...ext } };
    },
  };
}

function zoneOf(value: unknown, own: string | undefined): string {
  if (own !== undefined) {
    if (value !== undefined && value !== own) {
      throw invalid('zone', `this is zone ${own}: it cannot issue a VM token for zone ${String(value)}`);
    }
    return own;
  }
  if (typeof value !== 'string' || !isDns1123Label(value)) {
    throw invalid(
      'zone',
      value === undefined
        ? 'zone is required: the zone the VM joins (a VM token is redeemed by that zone only)'
        : `zone ${JSON.stringify(value)} is not a DNS-1123 label`,
    );
  }
  return value;
}

function parseUses(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > MAX_VM_TOKEN_USES) {
    throw invalid('uses', `uses must be a whole number from 1 to ${MAX_VM_TOKEN_USES}`);
  }
  return n;
}

/** The namespace of the named WorkloadGroup: the one given, or the only one holding a group of that name. */
async function groupNamespace(
  options: VmTokenKindOptions,
  group: string,
  namespace: string | undefined,
): Promise<string> {
  const { store, where } = options;
  const hint =
    options.zone === undefined
      ? 'apply it on global (it syncs to the zones), or create the token on the zone API'
      : 'apply it first';
  if (namespace !== undefined) {
    const found = await store.get({ kind: 'WorkloadGroup', namespace, name: group });
    if (found === undefined) {
      throw invalid('workloadGroup', `WorkloadGroup ${namespace}/${group} does not exist ${where}: ${hint}`);
    }
    return namespace;
  }
  const all = await store.list({ kind: 'WorkloadGroup' });
  const matches = all.items.filter((g) => g.metadata.name === group);
  const [only] = matches;
  if (only === undefined) {
    throw invalid('workloadGroup', `no WorkloadGroup named ${group} exists ${where}: ${hint}`);
  }
  if (matches.length > 1) {
    const namespaces = matches.map((g) => g.metadata.namespace ?? '').join(', ');
    throw invalid(
      'namespace',
      `WorkloadGroup ${group} exists in several namespaces (${namespaces}): say which with --namespace`,
    );
  }
  return only.metadata.namespace ?? 'default';
}
