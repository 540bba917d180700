/**
 * The address a workload is reached at, as a WorkloadEntry, a ServiceEntry
 * endpoint, a universal registration or a VM enrollment gives it: an IPv4
 * or IPv6 address (with a `%zone` suffix, as Node's net.isIP takes it) or a
 * DNS name. One check for all of them, so that what one entry point stores
 * another does not refuse.
 */

import { isIP } from 'node:net';
import { isDns1123Subdomain } from './dns-name.js';

/** True for an IP address or a DNS-1123 name (any case). */
export function isEndpointAddress(value: string): boolean {
  return isIP(value) !== 0 || isDns1123Subdomain(value.toLowerCase());
}
