/**
 * Envoy's response flags, so access logs and the `response_flags` metric
 * label read the same as in Istio: dashboards and runbooks keyed on
 * `UO`, `UH`, `URX`, … keep working.
 */

export const ResponseFlags = {
  NONE: '-',
  /** No healthy upstream host. */
  NO_HEALTHY_UPSTREAM: 'UH',
  /** Upstream connection failure. */
  UPSTREAM_CONNECT_FAILURE: 'UF',
  /** Upstream overflow: circuit breaking (connection pool limits). */
  UPSTREAM_OVERFLOW: 'UO',
  /** No route configured for the request. */
  NO_ROUTE: 'NR',
  /** Upstream retry limit exceeded: the last attempt's failure was returned. */
  RETRY_LIMIT_EXCEEDED: 'URX',
  /** The route names a cluster this proxy does not have. */
  NO_CLUSTER: 'NC',
  /** Upstream request timeout (route timeout or per-try timeout). */
  UPSTREAM_TIMEOUT: 'UT',
  /** Upstream connection termination (reset) before or while answering. */
  UPSTREAM_RESET: 'UC',
  /** Request delayed by fault injection. */
  DELAY_INJECTED: 'DI',
  /** Request aborted by fault injection. */
  FAULT_INJECTED: 'FI',
  /** The downstream connection terminated before the response was complete. */
  DOWNSTREAM_DISCONNECT: 'DC',
  /** Downstream protocol error (malformed request). */
  DOWNSTREAM_PROTOCOL_ERROR: 'DPE',
  /** Upstream protocol error. */
  UPSTREAM_PROTOCOL_ERROR: 'UPE',
  /** Downstream request timeout (headers or body too slow). */
  DOWNSTREAM_TIMEOUT: 'DT',
} as const;

export type ResponseFlag = (typeof ResponseFlags)[keyof typeof ResponseFlags];

/** Envoy's print order when a request has several flags. */
const ORDER = ['UH', 'UT', 'UF', 'UC', 'UO', 'NR', 'DI', 'FI', 'DC', 'URX', 'DPE', 'DT', 'UPE', 'NC'];

/** Adds a flag, keeping Envoy's order (`UF,URX`); `-` means none. */
export function addFlag(current: string, flag: string): string {
  if (flag === '-' || flag === '') return current;
  if (current === '-' || current === '') return flag;
  const flags = current.split(',');
  if (flags.includes(flag)) return current;
  flags.push(flag);
  flags.sort((a, b) => rank(a) - rank(b));
  return flags.join(',');
}

function rank(flag: string): number {
  const i = ORDER.indexOf(flag);
  return i < 0 ? ORDER.length : i;
}
