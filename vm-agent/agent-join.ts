/**
 * `meshfed vm-agent join`: enroll this machine in one command.
 *
 * 1. Pin the zone CP: `--ca-fingerprint`, else the fingerprint the join
 *    token carries; trust on first use only with `--insecure-skip-verify`.
 * 2. Check the config directory is writable before anything else.
 * 3. Generate the key here (or reuse the one a previous join left, so a
 *    retried join is not a second use of the token), send a CSR with the
 *    token, receive the certificate chain, the trust bundle and the name of
 *    the WorkloadEntry the zone created.
 * 4. Write vm-agent.yaml, key.pem (0600), cert-chain.pem, trust-bundle.pem,
 *    and the systemd unit when systemd is there.
 *
 * Joining again an enrolled VM with the same settings changes nothing and
 * says so; with other settings it re-joins with the same key.
 */

import { X509Certificate, createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { hostname as osHostname, networkInterfaces } from 'node:os';
import { resolve } from 'node:path';
import { ErrorCodes, MeshError } from '../core/errors.js';
import { generateKeyPair } from '../core/pki/ca.js';
import { buildCsr } from '../core/pki/csr.js';
import type { JoinAnswer } from '../core/vm/vm-join.js';
import type { AgentConfig, ProbeSpec, SidecarPorts } from './agent-config.js';
import { BUNDLE_FILE, CHAIN_FILE, CONFIG_FILE, ConfigDir, KEY_FILE } from './agent-files.js';
import { DEFAULT_UNIT_DIR, installUnit, systemdRunning, type InstallResult } from './agent-systemd.js';
import { formatFingerprint, normalizeFingerprint, parseZoneCpUrl, zoneRequest } from './zone-client.js';

export const DEFAULT_PORTS: SidecarPorts = { inbound: 15006, outbound: 15001, admin: 15000, metrics: 15090 };

export interface JoinOptions {
  /** https://host:port of the zone REST API. */
  zoneCp: string;
  /** The join token (`meshfed token create --kind vm`). */
  token: string;
  /** Pin: `sha256:<hex>` of the mesh root or zone CA. Default: the token's. */
  caFingerprint?: string;
  /** Accept whatever certificate the zone CP presents (trust on first use). */
  insecureSkipVerify?: boolean;
  /** The address the mesh reaches this VM at. Default: the first non-loopback IPv4 address. */
  address?: string;
  hostname?: string;
  /** Where the local service listens (replaces the group's port). */
  servicePort?: number;
  labels?: Record<string, string>;
  ports?: Partial<SidecarPorts>;
  certTtlSeconds?: number;
  configDir: string;
  /** on: write (and enable, when systemd runs) the unit; off: neither; auto: on when systemd runs. */
  systemd: 'auto' | 'on' | 'off';
  /** Where the unit goes. Default /etc/systemd/system. */
  systemdDir?: string;
  /** The command that runs meshfed, for the unit's ExecStart. */
  command: string[];
  systemdUser?: string;
}

export interface JoinResult {
  config: AgentConfig;
  configDir: string;
  /** Enrolled before with these settings: nothing was sent. */
  alreadyEnrolled: boolean;
  /** The zone recognised this key: the token use was not counted again. */
  rejoined: boolean;
  serial: string;
  notAfter: Date;
  /** What the zone CP's chain ends in (what to pin next time). */
  rootFingerprint: string;
  replaced: string[];
  systemd: InstallResult | { note: string };
  warnings: string[];
}

/** The zone's answer as this agent reads it: the probe as a spec, `replaced` absent from older zones. */
type JoinAnswerWire = Omit<JoinAnswer, 'probe' | 'replaced'> & {
  probe: ProbeSpec | null;
  replaced?: string[];
};

/** The claims of a token, read WITHOUT verifying it (the zone verifies): only to pick the pin and say what is wrong early. */
function peekToken(token: string): { kind?: unknown; ext?: Record<string, unknown> } {
  const [prefix, payload] = token.split('.');
  if (prefix !== 'mf1' || payload === undefined) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      'the join token is not a meshfed token (mf1.…): create one with meshfed token create --kind vm --zone <zone> --workload-group <group>',
    );
  }
  try {
    return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as {
      kind?: unknown;
      ext?: Record<string, unknown>;
    };
  } catch {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'the join token is malformed: copy it again in full');
  }
}

/** The first non-internal IPv4 address, else IPv6. */
export function defaultAddress(): string | undefined {
  const all = Object.values(networkInterfaces()).flatMap((list) => list ?? []);
  const external = all.filter((i) => !i.internal);
  return (external.find((i) => i.family === 'IPv4') ?? external.find((i) => i.family === 'IPv6'))?.address;
}

function keyFingerprintOf(key: KeyObject): string {
  return createHash('sha256')
    .update(createPublicKey(key).export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  return JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
}

function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export async function joinMesh(options: JoinOptions): Promise<JoinResult> {
  const url = parseZoneCpUrl(options.zoneCp);
  const warnings: string[] = [];
  const claims = peekToken(options.token.trim());
  if (claims.kind !== 'vm') {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `the token is a ${String(claims.kind)} token, not a VM join token: create one with meshfed token create --kind vm`,
    );
  }
  const tokenPin = typeof claims.ext?.caFingerprint === 'string' ? claims.ext.caFingerprint : undefined;
  let pin: string | undefined;
  // An explicit --insecure-skip-verify wins over the token's pin (a TLS-terminating proxy in front of the zone).
  if (options.caFingerprint !== undefined) pin = normalizeFingerprint(options.caFingerprint);
  else if (tokenPin !== undefined && options.insecureSkipVerify !== true)
    pin = normalizeFingerprint(tokenPin, "the join token's CA fingerprint");
  else if (options.insecureSkipVerify !== true) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `nothing to pin the zone CP with: the token carries no CA fingerprint; pass --ca-fingerprint sha256:… (shown by GET ${url.origin}/api/v1/vm/bundle), or --insecure-skip-verify to trust on first use`,
    );
  }
  if (pin === undefined) {
    warnings.push(
      'warning: --insecure-skip-verify: the zone CP was NOT authenticated; anyone between this VM and the zone could have answered (trust on first use)',
    );
  }

  const dir = new ConfigDir(resolve(options.configDir));
  await dir.ensureWritable();
  const address = options.address ?? defaultAddress();
  if (address === undefined) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, "cannot tell this VM's address: pass --address <ip>");
  }
  const ports: SidecarPorts = { ...DEFAULT_PORTS, ...options.ports };
  const labels = options.labels ?? {};
  const host = options.hostname ?? osHostname();
  const systemdWanted = options.systemd === 'on' || (options.systemd === 'auto' && systemdRunning());
  const installSystemd = async (): Promise<InstallResult | { note: string }> =>
    systemdWanted
      ? installUnit({
          command: options.command,
          configDir: dir.dir,
          unitDir: options.systemdDir ?? DEFAULT_UNIT_DIR,
          enable: true,
          ...(options.systemdUser === undefined ? {} : { user: options.systemdUser }),
        })
      : {
          note:
            options.systemd === 'off'
              ? 'not installed (--no-systemd)'
              : 'not installed (systemd is not running here)',
        };

  // Enrolled already with these settings: nothing to send, the token is not spent again.
  if (await dir.enrolled()) {
    const existing = await dir.readConfig().catch(() => undefined);
    const credentials =
      existing === undefined ? undefined : await dir.readCredentials().catch(() => undefined);
    const leaf = credentials === undefined ? undefined : new X509Certificate(credentials.certChainPem);
    const same =
      existing !== undefined &&
      leaf !== undefined &&
      new Date(leaf.validTo).getTime() > Date.now() &&
      new URL(existing.zoneCp).origin === url.origin &&
      existing.workloadGroup === claims.ext?.workloadGroup &&
      existing.address === address &&
      existing.servicePort === options.servicePort &&
      sameLabels(existing.labels, labels) &&
      JSON.stringify(existing.ports) === JSON.stringify(ports) &&
      existing.certTtlSeconds === options.certTtlSeconds;
    if (same && existing !== undefined && leaf !== undefined) {
      return {
        config: existing,
        configDir: dir.dir,
        alreadyEnrolled: true,
        rejoined: false,
        serial: leaf.serialNumber,
        notAfter: new Date(leaf.validTo),
        rootFingerprint: existing.caFingerprint ?? '',
        replaced: [],
        systemd: await installSystemd(),
        warnings,
      };
    }
  }

  let privateKey = await dir.readKey();
  if (privateKey === undefined) {
    privateKey = generateKeyPair().privateKey;
    // Saved before the request: a join retried after a failure presents the same key and is not a new use.
    await dir.writeKey(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  }
  const csrPem = buildCsr(privateKey, createPublicKey(privateKey));
  const answer = await zoneRequest(
    { url, ...(pin === undefined ? { insecure: true } : { pin }) },
    'POST',
    '/api/v1/vm/join',
    {
      headers: { authorization: `Bearer ${options.token.trim()}` },
      json: {
        csrPem,
        address,
        inboundPort: ports.inbound,
        labels,
        hostname: host,
        ...(options.servicePort === undefined ? {} : { servicePort: options.servicePort }),
        ...(options.certTtlSeconds === undefined ? {} : { certTtlSeconds: options.certTtlSeconds }),
      },
    },
  );
  const joined = answer.body as JoinAnswerWire;
  if (typeof joined?.certChainPem !== 'string' || typeof joined.workloadEntry !== 'string') {
    throw new MeshError(
      ErrorCodes.DECODE,
      `the zone CP at ${url.origin} answered the join without a certificate`,
    );
  }
  const grpcHost = joined.grpc.wildcard ? url.hostname.replace(/^\[|\]$/g, '') : joined.grpc.host;
  const config: AgentConfig = {
    zoneCp: url.origin,
    ...(pin === undefined ? {} : { caFingerprint: pin }),
    zone: joined.zone,
    grpcAddress: formatHostPort(grpcHost, joined.grpc.port),
    workloadGroup: joined.workloadGroup,
    workloadEntry: joined.workloadEntry,
    namespace: joined.namespace,
    serviceAccount: joined.serviceAccount,
    spiffeId: joined.spiffeId,
    trustDomain: joined.trustDomain,
    address,
    hostname: host,
    ...(options.servicePort === undefined ? {} : { servicePort: options.servicePort }),
    labels,
    ports,
    ...(options.certTtlSeconds === undefined ? {} : { certTtlSeconds: options.certTtlSeconds }),
    heartbeatIntervalSeconds: joined.heartbeatIntervalSeconds,
    ...(joined.probe === null ? {} : { probe: joined.probe }),
    joinedAt: new Date().toISOString(),
    keyFingerprint: keyFingerprintOf(privateKey),
  };
  await dir.writeCredentials({
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    certChainPem: joined.certChainPem,
    trustBundlePem: joined.trustBundlePem,
  });
  await dir.writeConfig(config);
  return {
    config,
    configDir: dir.dir,
    alreadyEnrolled: false,
    rejoined: joined.alreadyJoined,
    serial: joined.serial,
    notAfter: new Date(joined.notAfter),
    rootFingerprint: answer.rootFingerprint,
    replaced: joined.replaced ?? [],
    systemd: await installSystemd(),
    warnings,
  };
}

/** The one-screen summary `join` prints. */
export function joinSummary(result: JoinResult): string {
  const c = result.config;
  const pinned =
    c.caFingerprint === undefined
      ? `NOT verified (--insecure-skip-verify); it presented ${formatFingerprint(result.rootFingerprint)}: pin that with --ca-fingerprint`
      : `pinned ${formatFingerprint(c.caFingerprint)}`;
  const headline = result.alreadyEnrolled
    ? `already enrolled as ${c.spiffeId}: nothing changed (the token was not used)`
    : result.rejoined
      ? `joined again as ${c.spiffeId} (this key had joined before: the token use was not counted twice)`
      : `joined the mesh as ${c.spiffeId}`;
  const service =
    c.servicePort === undefined ? 'the ports of the WorkloadGroup' : `127.0.0.1:${c.servicePort}`;
  const systemd = result.systemd.note;
  const enabled = 'enabled' in result.systemd && result.systemd.enabled;
  const lines = [
    headline,
    `  zone:          ${c.zone} at ${c.zoneCp} (zone CA ${pinned})`,
    `  workload:      WorkloadEntry ${c.namespace}/${c.workloadEntry} of WorkloadGroup ${c.workloadGroup}, address ${c.address}`,
    `  certificate:   serial ${result.serial}, valid until ${result.notAfter.toISOString()}; renewed at half-life by the agent`,
    `  sidecar:       inbound mTLS :${c.ports.inbound} -> ${service}; outbound proxy 127.0.0.1:${c.ports.outbound}; admin 127.0.0.1:${c.ports.admin}`,
    `  MDS + CA:      ${c.grpcAddress}`,
    `  files:         ${result.configDir}/{${CONFIG_FILE}, ${KEY_FILE} (0600), ${CHAIN_FILE}, ${BUNDLE_FILE}}`,
    `  systemd:       ${systemd}`,
    ...(result.replaced.length > 0
      ? [`  replaced:      ${result.replaced.join(', ')} (an older join at the same address)`]
      : []),
    'next:',
    ...(enabled
      ? [`  meshfed vm-agent status --config-dir ${result.configDir}`]
      : [
          `  meshfed vm-agent run --config-dir ${result.configDir}      (what the systemd unit runs)`,
          `  meshfed vm-agent status --config-dir ${result.configDir}`,
        ]),
    `  call mesh services through http://127.0.0.1:${c.ports.outbound} (HTTP proxy); leave with meshfed vm-agent leave --config-dir ${result.configDir}`,
  ];
  return lines.join('\n');
}
