/**
 * Service host names as Kubernetes DNS spells them and as Istio resolves
 * them in routing rules: a short name is relative to the namespace of the
 * rule that uses it (`reviews` in a VirtualService of `bookinfo` is
 * `reviews.bookinfo.svc.cluster.local`). meshfed also expands
 * `name.namespace` and `name.namespace.svc`, the forms Kubernetes DNS
 * answers, so the same host means the same service in every form.
 */

export const CLUSTER_DOMAIN = 'cluster.local';
const SVC_SUFFIX = `.svc.${CLUSTER_DOMAIN}`;

/** `reviews.bookinfo.svc.cluster.local` */
export function serviceHost(name: string, namespace: string): string {
  return `${name}.${namespace}${SVC_SUFFIX}`;
}

/** A host as written in a rule of `namespace`, as an FQDN (wildcards keep their `*`). */
export function resolveHost(host: string, namespace: string): string {
  const h = host.trim().toLowerCase();
  if (h === '*' || h.endsWith(SVC_SUFFIX)) return h;
  const labels = h.split('.');
  if (labels.length === 1) return `${h}.${namespace}${SVC_SUFFIX}`;
  if (labels.length === 2 && !h.startsWith('*')) return `${h}${SVC_SUFFIX}`;
  if (labels.length === 3 && labels[2] === 'svc' && !h.startsWith('*')) return `${h}.${CLUSTER_DOMAIN}`;
  return h;
}

/** True if `pattern` (an FQDN, `*`, or `*.suffix`) covers `host`. */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1));
  return pattern === host;
}

/** How specific a pattern is: exact hosts beat wildcards, longer wildcards beat shorter ones. */
export function hostSpecificity(pattern: string): number {
  if (pattern === '*') return 0;
  if (pattern.startsWith('*.')) return pattern.length;
  return 100_000;
}

/** Names an app may put in the Host header for a service, besides its FQDN. */
export function hostAliases(name: string, namespace: string, sameNamespace: boolean): string[] {
  return [...(sameNamespace ? [name] : []), `${name}.${namespace}`, `${name}.${namespace}.svc`];
}
