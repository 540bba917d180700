/**
 * Traffic capture for a sidecar in a pod, as istio-init does it: the nat
 * table rules (an `iptables-restore` script) that send the pod's inbound
 * TCP to the proxy's inbound port and the app's outbound TCP to the proxy's
 * outbound port, leaving the proxy's own traffic (its UID) alone so it is
 * not looped back. Pure: options in, script text out; every option is
 * checked before any rule is written, so a bad one fails the init container
 * with its name instead of half-installed rules.
 *
 * IPv4 only (`iptables-restore`); IPv6 traffic is not captured.
 */

import { ErrorCodes, MeshError } from '../../core/errors.js';

/** What `meshfed capture` installs (flags of cli/commands/capture.ts, as the injector passes them). */
export interface CaptureOptions {
  /** UID the proxy runs as; its traffic is never redirected. */
  proxyUid: number;
  /** The proxy's outbound listener (15001). */
  outboundPort: number;
  /** The proxy's inbound listener (15006). */
  inboundPort: number;
  /** Inbound ports to capture: '*' (default) for all, or a list. */
  inboundCapturePorts?: '*' | readonly number[];
  /** Inbound ports never captured (the proxy's admin and metrics ports, …). */
  excludeInboundPorts?: readonly number[];
  /** Outbound destination ports never captured. */
  excludeOutboundPorts?: readonly number[];
  /** Outbound destination IPv4 CIDRs (or addresses) never captured. */
  excludeOutboundCidrs?: readonly string[];
}

export const INBOUND_CHAIN = 'MESHFED_INBOUND';
export const OUTPUT_CHAIN = 'MESHFED_OUTPUT';

function invalid(field: string, message: string): MeshError {
  return new MeshError(ErrorCodes.INVALID_ARGUMENT, `${field}: ${message}`, { field });
}

function checkPort(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw invalid(field, `${String(value)} is not a port (an integer from 1 to 65535)`);
  }
  return value;
}

function checkPorts(values: readonly unknown[] | undefined, field: string): number[] {
  if (values === undefined) return [];
  if (!Array.isArray(values)) throw invalid(field, 'expected a list of ports');
  return [...new Set(values.map((v) => checkPort(v, field)))];
}

/** `a.b.c.d` or `a.b.c.d/n` → `a.b.c.d/n` (an address is /32). */
function checkCidr(value: unknown, field: string): string {
  const text = typeof value === 'string' ? value.trim() : '';
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?$/.exec(text);
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const bits = m?.[5] === undefined ? 32 : Number(m[5]);
  if (!m || octets.some((o) => o > 255) || bits > 32) {
    throw invalid(field, `"${String(value)}" is not an IPv4 address or CIDR (a.b.c.d/n)`);
  }
  return `${octets.join('.')}/${bits}`;
}

/** Checks every option; throws MeshError (INVALID_ARGUMENT, `field` = the option) on the first bad one. */
export function validateCaptureOptions(options: CaptureOptions): Required<CaptureOptions> {
  const uid = options.proxyUid;
  if (typeof uid !== 'number' || !Number.isInteger(uid) || uid < 0 || uid > 4294967294) {
    throw invalid('proxyUid', `${String(uid)} is not a UID (an integer from 1 to 4294967294)`);
  }
  if (uid === 0) {
    // Exempting root would exempt every process that runs as root in the pod.
    throw invalid('proxyUid', 'the proxy must not run as root (0): root traffic would escape capture');
  }
  const outboundPort = checkPort(options.outboundPort, 'outboundPort');
  const inboundPort = checkPort(options.inboundPort, 'inboundPort');
  if (outboundPort === inboundPort) {
    throw invalid('inboundPort', `must differ from outboundPort (both ${inboundPort})`);
  }
  const capture = options.inboundCapturePorts ?? '*';
  const inboundCapturePorts = capture === '*' ? '*' : checkPorts(capture, 'inboundCapturePorts');
  const excludeInboundPorts = checkPorts(options.excludeInboundPorts, 'excludeInboundPorts');
  if (excludeInboundPorts.includes(inboundPort)) {
    throw invalid('excludeInboundPorts', `contains the inbound port ${inboundPort}`);
  }
  const excludeOutboundPorts = checkPorts(options.excludeOutboundPorts, 'excludeOutboundPorts');
  const cidrs = options.excludeOutboundCidrs ?? [];
  if (!Array.isArray(cidrs)) throw invalid('excludeOutboundCidrs', 'expected a list of CIDRs');
  const excludeOutboundCidrs = [...new Set(cidrs.map((c) => checkCidr(c, 'excludeOutboundCidrs')))];
  return {
    proxyUid: uid,
    outboundPort,
    inboundPort,
    inboundCapturePorts,
    excludeInboundPorts,
    excludeOutboundPorts,
    excludeOutboundCidrs,
  };
}

/**
 * The `iptables-restore --noflush` script for the nat table:
 * PREROUTING → MESHFED_INBOUND (excluded ports RETURN, the rest REDIRECT to
 * the inbound port); OUTPUT → MESHFED_OUTPUT (the proxy's UID, loopback
 * destinations, excluded ports and CIDRs RETURN, the rest REDIRECT to the
 * outbound port). Declaring the chains (`:NAME - [0:0]`) creates or
 * empties them, so running it twice leaves one set of MESHFED rules in the
 * chains; the two jumps are appended to PREROUTING/OUTPUT (a pod's network
 * namespace starts empty and the init container runs once). Rules are
 * written as `iptables-save` prints them (`-p tcp -m tcp --dport`), so an
 * installed table reads back line for line.
 */
export function buildCaptureRules(options: CaptureOptions): string {
  const o = validateCaptureOptions(options);
  const lines = [
    '*nat',
    `:${INBOUND_CHAIN} - [0:0]`,
    `:${OUTPUT_CHAIN} - [0:0]`,
    `-A PREROUTING -p tcp -j ${INBOUND_CHAIN}`,
    `-A OUTPUT -p tcp -j ${OUTPUT_CHAIN}`,
  ];
  for (const port of o.excludeInboundPorts)
    lines.push(`-A ${INBOUND_CHAIN} -p tcp -m tcp --dport ${port} -j RETURN`);
  const redirectIn = `-j REDIRECT --to-ports ${o.inboundPort}`;
  if (o.inboundCapturePorts === '*') lines.push(`-A ${INBOUND_CHAIN} -p tcp ${redirectIn}`);
  else
    for (const port of o.inboundCapturePorts)
      if (!o.excludeInboundPorts.includes(port))
        lines.push(`-A ${INBOUND_CHAIN} -p tcp -m tcp --dport ${port} ${redirectIn}`);
  lines.push(
    // The proxy's own connections (to upstreams, to the zone CP) go out as they are.
    `-A ${OUTPUT_CHAIN} -m owner --uid-owner ${o.proxyUid} -j RETURN`,
    `-A ${OUTPUT_CHAIN} -d 127.0.0.0/8 -j RETURN`,
  );
  for (const port of o.excludeOutboundPorts)
    lines.push(`-A ${OUTPUT_CHAIN} -p tcp -m tcp --dport ${port} -j RETURN`);
  for (const cidr of o.excludeOutboundCidrs) lines.push(`-A ${OUTPUT_CHAIN} -d ${cidr} -j RETURN`);
  lines.push(`-A ${OUTPUT_CHAIN} -p tcp -j REDIRECT --to-ports ${o.outboundPort}`, 'COMMIT', '');
  return lines.join('\n');
}
