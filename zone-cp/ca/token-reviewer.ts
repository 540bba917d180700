/**
 * Kubernetes ServiceAccount tokens are checked by the API server, not by
 * meshfed: a TokenReviewer asks it (TokenReview) and answers the
 * namespace and service account the token belongs to. Universal zones have
 * none; `token-reviewer-kubernetes.ts` is the real one.
 */

export interface ReviewedAccount {
  namespace: string;
  serviceAccount: string;
  /** Pod the token is bound to, when the API server says (projected tokens). */
  podName?: string;
}

export interface TokenReviewer {
  /**
   * Resolves the account of a valid ServiceAccount token. Rejects with
   * MeshError UNAUTHENTICATED (token refused, with the API server's reason),
   * FORBIDDEN (a valid token that is not a ServiceAccount's) or UNAVAILABLE
   * (the API server cannot be asked).
   */
  review(token: string): Promise<ReviewedAccount>;
}
