/**
 * Kinds the global CP keeps in its store for itself. They are not in the
 * public kind registry, so no REST route can read or write them: the root key
 * never leaves through the API.
 */

/** spec: { certPem, keyPem } — the mesh root CA and the token signing key. */
export const SECRET_KIND = 'MeshfedSecret';
/** spec: { kind, subject, expiresAt?, revoked, createdAt } — one per issued API token, keyed by token id. */
export const TOKEN_RECORD_KIND = 'MeshfedTokenRecord';

export const INTERNAL_API_VERSION = 'internal.meshfed.io/v1';

export const ROOT_CA_SECRET = 'root-ca';
export const TOKEN_KEY_SECRET = 'token-signing-key';
