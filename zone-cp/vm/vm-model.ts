/**
 * The zone side of VM enrollment (issue #8): the names it writes into the
 * store and its settings. VM WorkloadEntries are ordinary WorkloadEntries
 * (the universal discovery source turns them into endpoints) marked with the
 * label `meshfed.io/workload-group` and Istio's `istio.io/autoRegistrationGroup`
 * annotation, so operators find them the way Istio users expect.
 */

import { ErrorCodes, MeshError } from '../../core/errors.js';
import { VM_JOIN_TOKEN_KIND, VM_REVOKED_CERT_KIND } from '../../core/vm/vm-kinds.js';

/** Label on every WorkloadEntry created by a VM join: the WorkloadGroup's name. */
export const VM_GROUP_LABEL = 'meshfed.io/workload-group';
/** Istio's annotation for auto-registered WorkloadEntries: the WorkloadGroup's name. */
export const AUTO_REGISTRATION_ANNOTATION = 'istio.io/autoRegistrationGroup';
/** Serial of the certificate issued at join (revoked when the entry is removed). */
export const VM_SERIAL_ANNOTATION = 'meshfed.io/vm-serial';
/** sha256 of the VM key's SPKI: the same key joining again is the same VM. */
export const VM_KEY_ANNOTATION = 'meshfed.io/vm-key';
/** RFC 3339 time of the join: among duplicates, the most recent join wins. */
export const VM_JOINED_AT_ANNOTATION = 'meshfed.io/vm-joined-at';
/** The VM's host name, for operators. */
export const VM_HOSTNAME_ANNOTATION = 'meshfed.io/vm-hostname';

/** Internal kind: one per redeemed join token, named by the token's SHA-256 (the token itself is never stored). */
export const JOIN_TOKEN_KIND = VM_JOIN_TOKEN_KIND;
/** Internal kind: one per revoked workload certificate, until it expires. */
export const REVOKED_CERT_KIND = VM_REVOKED_CERT_KIND;

/** Settings of VM enrollment on a zone CP (`ZoneCpOptions.vm`). */
export interface VmSettings {
  /** Heartbeat period the zone asks VM agents for. Default 10 s. */
  heartbeatIntervalSeconds?: number;
  /** A VM silent for this long is marked unhealthy (Healthy=False). Default 30 s. */
  unhealthyAfterMs?: number;
  /** A VM silent for this long loses its WorkloadEntry (and its certificate is revoked). Default 1 h. */
  removeAfterMs?: number;
  /** How long a join token issued without a ttl is accepted after issue. Default 24 h. */
  defaultJoinTokenTtlSeconds?: number;
  /** host:port VMs dial for MDS and the CA. Default: the gRPC bind address, or the join URL's host when that is a wildcard. */
  grpcAdvertiseAddress?: string;
  /** How often the reaper looks for silent VMs. Default a quarter of `unhealthyAfterMs`, between 1 and 30 s. */
  reapIntervalMs?: number;
}

export interface ResolvedVmSettings {
  heartbeatIntervalSeconds: number;
  unhealthyAfterMs: number;
  removeAfterMs: number;
  defaultJoinTokenTtlSeconds: number;
  grpcAdvertiseAddress: string | undefined;
  reapIntervalMs: number;
}

function positive(value: number | undefined, fallback: number, name: string): number {
  const n = value ?? fallback;
  if (!Number.isFinite(n) || n <= 0) {
    throw new MeshError(ErrorCodes.CONFIG, `vm.${name} must be a positive number, got ${String(value)}`);
  }
  return n;
}

/** Defaults applied and every setting checked, so a typo fails at start. */
export function resolveVmSettings(settings: VmSettings = {}): ResolvedVmSettings {
  const heartbeatIntervalSeconds = positive(
    settings.heartbeatIntervalSeconds,
    10,
    'heartbeatIntervalSeconds',
  );
  const unhealthyAfterMs = positive(settings.unhealthyAfterMs, 30_000, 'unhealthyAfterMs');
  const removeAfterMs = positive(settings.removeAfterMs, 3_600_000, 'removeAfterMs');
  if (heartbeatIntervalSeconds * 1000 >= unhealthyAfterMs) {
    // Every VM would be marked unhealthy between two of its own heartbeats.
    throw new MeshError(
      ErrorCodes.CONFIG,
      `vm.heartbeatIntervalSeconds (${heartbeatIntervalSeconds} s) must be shorter than vm.unhealthyAfterMs (${unhealthyAfterMs} ms)`,
    );
  }
  if (removeAfterMs < unhealthyAfterMs) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `vm.removeAfterMs (${removeAfterMs}) must not be shorter than vm.unhealthyAfterMs (${unhealthyAfterMs})`,
    );
  }
  const advertise = settings.grpcAdvertiseAddress;
  if (advertise !== undefined && !/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(advertise)) {
    throw new MeshError(ErrorCodes.CONFIG, `vm.grpcAdvertiseAddress must be host:port, got "${advertise}"`);
  }
  return {
    heartbeatIntervalSeconds,
    unhealthyAfterMs,
    removeAfterMs,
    defaultJoinTokenTtlSeconds: positive(
      settings.defaultJoinTokenTtlSeconds,
      86_400,
      'defaultJoinTokenTtlSeconds',
    ),
    grpcAdvertiseAddress: advertise,
    reapIntervalMs: positive(
      settings.reapIntervalMs,
      Math.min(30_000, Math.max(1000, unhealthyAfterMs / 4)),
      'reapIntervalMs',
    ),
  };
}

/** Serials compare as upper-case hex without leading zeros (DER may add one for the sign). */
export function normalizeSerial(serial: string): string {
  const hex = serial.replace(/[^0-9a-fA-F]/g, '').toUpperCase();
  const stripped = hex.replace(/^0+/, '');
  return stripped === '' ? '0' : stripped;
}

/** The WorkloadEntry name of a VM: `<group>-<address>` with the address made DNS-safe. */
export function workloadEntryName(group: string, address: string): string {
  const slug = address
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  const name = `${group}-${slug}`.slice(0, 253).replace(/[-.]+$/, '');
  return name;
}
