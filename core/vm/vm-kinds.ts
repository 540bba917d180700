/**
 * The internal store kinds of VM enrollment (zone store; never exposed by
 * the REST API). With a `kubernetes://` store each is a cluster-scoped
 * custom resource of `internal.meshfed.io` (deploy/crds).
 */

/** One per redeemed join token, named by the token's SHA-256 (the token is never stored): the use counter. */
export const VM_JOIN_TOKEN_KIND = 'MeshfedVmJoinToken';
/** One per revoked workload certificate, until it expires. */
export const VM_REVOKED_CERT_KIND = 'MeshfedRevokedCertificate';
