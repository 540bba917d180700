/**
 * Tunables of the KDS server with their defaults. Every one is an option of
 * `startGlobalCp({ kds })`; the common ones also have CLI flags.
 */

import { ErrorCodes, MeshError } from '../../core/errors.js';
import { DEFAULT_KEEPALIVE, type KeepaliveOptions } from '../../core/kds/kds-grpc.js';
import {
  DEFAULT_CHUNK_BYTES,
  KDS_CAPABILITIES,
  KDS_MIN_PROTOCOL_VERSION,
  KDS_PROTOCOL_VERSION,
  type VersionRange,
} from '../../core/kds/kds-protocol.js';

export interface KdsSettings {
  /** How long a disconnected zone's services stay in other zones' catalogs. Default 60 s. */
  gracePeriodMs: number;
  keepalive: KeepaliveOptions;
  /**
   * Bytes of changes queued for one zone before global drops the queue and
   * resends everything as a full resync at the zone's pace. Default 64 MiB.
   */
  sendQueueBytes: number;
  /** A zone that reads nothing for this long while data waits for it is dropped. Default 60 s. */
  stallTimeoutMs: number;
  /** Sustained messages per second a zone may send, and the burst above it. Defaults 50 and 500. */
  maxMessagesPerSecond: number;
  messageBurst: number;
  /** Full resyncs listed and encoded at once across all zones (the rest wait their turn). Default 4. */
  maxConcurrentResyncs: number;
  /** Target JSON bytes per Changes message before compression. Default 512 KiB. */
  chunkBytes: number;
  /** How often an idle zone is told global's revision moved on (unrelated writes). Default 30 s. */
  progressIntervalMs: number;
  /** Least time between two progress writes of one zone's status. Default 2 s. */
  statusIntervalMs: number;
  /** Replica lease length; renewed every third of it. Default 15 s. */
  leaseMs: number;
  /** A stream that sends no Hello within this long is closed. Default 10 s. */
  helloTimeoutMs: number;
  /** Lifetime of a zone's intermediate CA certificate. Default 90 days (the zone renews at half-life). */
  intermediateTtlSeconds: number;
  /** Least time between two inventory writes of one zone. Default 250 ms. */
  inventoryWriteIntervalMs: number;
  /** Protocol versions this server speaks (tests pin an older global). */
  protocol: VersionRange;
  capabilities: readonly string[];
}

export const DEFAULT_KDS_SETTINGS: KdsSettings = {
  gracePeriodMs: 60_000,
  keepalive: DEFAULT_KEEPALIVE,
  sendQueueBytes: 64 * 1024 * 1024,
  stallTimeoutMs: 60_000,
  maxMessagesPerSecond: 50,
  messageBurst: 500,
  maxConcurrentResyncs: 4,
  chunkBytes: DEFAULT_CHUNK_BYTES,
  progressIntervalMs: 30_000,
  statusIntervalMs: 2_000,
  leaseMs: 15_000,
  helloTimeoutMs: 10_000,
  intermediateTtlSeconds: 90 * 86_400,
  inventoryWriteIntervalMs: 250,
  protocol: { min: KDS_MIN_PROTOCOL_VERSION, max: KDS_PROTOCOL_VERSION },
  capabilities: KDS_CAPABILITIES,
};

/** Defaults filled in; CONFIG naming the setting for a value that is not a positive integer. */
export function resolveKdsSettings(overrides: Partial<KdsSettings> = {}): KdsSettings {
  const settings: KdsSettings = {
    ...DEFAULT_KDS_SETTINGS,
    ...stripUndefined(overrides),
    keepalive: { ...DEFAULT_KDS_SETTINGS.keepalive, ...overrides.keepalive },
  };
  const numbers: [string, number][] = [
    ['gracePeriodMs', settings.gracePeriodMs],
    ['keepalive.timeMs', settings.keepalive.timeMs],
    ['keepalive.timeoutMs', settings.keepalive.timeoutMs],
    ['sendQueueBytes', settings.sendQueueBytes],
    ['stallTimeoutMs', settings.stallTimeoutMs],
    ['maxMessagesPerSecond', settings.maxMessagesPerSecond],
    ['messageBurst', settings.messageBurst],
    ['maxConcurrentResyncs', settings.maxConcurrentResyncs],
    ['chunkBytes', settings.chunkBytes],
    ['progressIntervalMs', settings.progressIntervalMs],
    ['statusIntervalMs', settings.statusIntervalMs],
    ['leaseMs', settings.leaseMs],
    ['helloTimeoutMs', settings.helloTimeoutMs],
    ['intermediateTtlSeconds', settings.intermediateTtlSeconds],
    ['inventoryWriteIntervalMs', settings.inventoryWriteIntervalMs],
  ];
  for (const [name, value] of numbers) {
    const zeroOk = name === 'gracePeriodMs';
    if (!Number.isSafeInteger(value) || value < (zeroOk ? 0 : 1)) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `KDS setting ${name} must be a ${zeroOk ? 'non-negative' : 'positive'} integer, got ${String(value)}`,
      );
    }
  }
  if (settings.protocol.min < 1 || settings.protocol.max < settings.protocol.min) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `KDS protocol range ${settings.protocol.min}-${settings.protocol.max} is empty`,
    );
  }
  return settings;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
