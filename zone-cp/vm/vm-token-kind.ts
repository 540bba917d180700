/**
 * The `vm` token kind a zone issues on `POST /api/v1/tokens`: a join token
 * bound to this zone and to one WorkloadGroup, optionally limited to a
 * number of uses:
 *   {"kind":"vm","workloadGroup":"billing","namespace":"demo","uses":1,"ttl":"1h"}
 * `namespace` may be left out when exactly one WorkloadGroup of that name
 * exists. The token also carries the fingerprint of the mesh root, so
 * `meshfed vm-agent join` can pin the zone CP's certificate with nothing
 * but the token (`--ca-fingerprint` still overrides it).
 */

import { X509Certificate } from 'node:crypto';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { TokenKindSpec } from '../../core/api/token-routes.js';
import { isDns1123Label, isDns1123Subdomain } from '../../core/resource/validate.js';
import type { Store } from '../../core/store/store.js';

export interface VmTokenKindDeps {
  zone: string;
  store: Store;
  /** PEM roots of the trust bundle (the first one is pinned by joining VMs); '' while unknown. */
  bundlePem: () => string;
}

/** Most uses a limited token may allow; beyond, leave `uses` out (unlimited until expiry). */
const MAX_USES = 1_000_000;

function invalid(field: string, message: string): MeshError {
  return new MeshError(ErrorCodes.INVALID_ARGUMENT, message, { field });
}

/** `sha256:<hex>` of the first certificate of a PEM bundle, '' when there is none. */
export function firstRootFingerprint(bundlePem: string): string {
  const match = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(bundlePem);
  if (!match) return '';
  const fingerprint = new X509Certificate(match[0]).fingerprint256;
  return `sha256:${fingerprint.replace(/:/g, '').toLowerCase()}`;
}

export function vmTokenKind(deps: VmTokenKindDeps): TokenKindSpec {
  return {
    kind: 'vm',
    fields: ['zone', 'workloadGroup', 'namespace', 'uses'],
    async claims(fields) {
      const zone = fields.zone;
      if (zone !== undefined && zone !== deps.zone) {
        throw invalid(
          'zone',
          `this is zone ${deps.zone}: it cannot issue a VM token for zone ${String(zone)}`,
        );
      }
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
      const namespace = await groupNamespace(deps.store, group, namespaceField);
      const uses = parseUses(fields.uses);
      const caFingerprint = firstRootFingerprint(deps.bundlePem());
      return {
        zone: deps.zone,
        ext: {
          workloadGroup: group,
          namespace,
          ...(uses === undefined ? {} : { uses: String(uses) }),
          ...(caFingerprint === '' ? {} : { caFingerprint }),
        },
      };
    },
  };
}

function parseUses(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > MAX_USES) {
    throw invalid('uses', `uses must be a whole number from 1 to ${MAX_USES}`);
  }
  return n;
}

/** The namespace of the named WorkloadGroup: the one given, or the only one holding a group of that name. */
async function groupNamespace(store: Store, group: string, namespace: string | undefined): Promise<string> {
  if (namespace !== undefined) {
    const found = await store.get({ kind: 'WorkloadGroup', namespace, name: group });
    if (found === undefined) {
      throw invalid(
        'workloadGroup',
        `WorkloadGroup ${namespace}/${group} does not exist in this zone: apply it first`,
      );
    }
    return namespace;
  }
  const all = await store.list({ kind: 'WorkloadGroup' });
  const matches = all.items.filter((g) => g.metadata.name === group);
  const [only] = matches;
  if (only === undefined) {
    throw invalid('workloadGroup', `no WorkloadGroup named ${group} exists in this zone: apply it first`);
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
