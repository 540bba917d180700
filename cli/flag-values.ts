/**
 * Value parsers for flags, without commander: the lean sidecar entry
 * (cli/proxy-main.ts) parses its flags with node:util and must not load the
 * full CLI's parser. Each throws FlagValueError with what was expected; the
 * flag parser in use (cli/flag-table.ts, or commander through cli/flags.ts)
 * prefixes the flag, or the environment variable the value came from.
 */

import { readFileSync } from 'node:fs';
import { ErrorCodes, MeshError } from '../core/errors.js';
import { parseDuration } from '../core/resource/duration.js';

/** A flag's value was refused; the message says what was expected. */
export class FlagValueError extends Error {
  override readonly name = 'FlagValueError';
}

/** A TCP port, 0 (pick a free one) to 65535. */
export function parsePort(value: string): number {
  const trimmed = value.trim();
  if (!/^\d+$/.test(trimmed)) throw new FlagValueError('a port is an integer from 0 to 65535.');
  const port = Number(trimmed);
  if (port > 65535) throw new FlagValueError('a port is an integer from 0 to 65535.');
  return port;
}

const byteUnits: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1000,
  kb: 1000,
  ki: 1024,
  kib: 1024,
  m: 1000 ** 2,
  mb: 1000 ** 2,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1000 ** 3,
  gb: 1000 ** 3,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
};

/** An integer in [min, max]: worker counts, queue bounds, batch sizes. */
export function integerIn(min: number, max: number): (value: string) => number {
  return (value: string): number => {
    const trimmed = value.trim();
    const n = /^\d+$/.test(trimmed) ? Number(trimmed) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new FlagValueError(`expected an integer from ${min} to ${max}.`);
    }
    return n;
  };
}

/** A positive byte count: `4194304`, `4Mi`, `512KiB`. */
export function parseByteSize(value: string): number {
  const match = /^(\d+)\s*([a-zA-Z]*)$/.exec(value.trim());
  const unit = byteUnits[(match?.[2] ?? '').toLowerCase()];
  if (!match || unit === undefined) {
    throw new FlagValueError('expected a byte count such as 4194304 or 4Mi.');
  }
  const bytes = Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new FlagValueError('expected a positive byte count.');
  return bytes;
}

/** A host name or IP address to bind to. */
export function parseHost(value: string): string {
  const trimmed = value.trim();
  if (!trimmed || /[\s/]/.test(trimmed)) throw new FlagValueError('expected a host name or IP address.');
  return trimmed;
}

/** A trust domain: a DNS-like name, no scheme, no path. */
export function parseTrustDomain(value: string): string {
  const trimmed = value.trim().toLowerCase();
  if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(trimmed)) {
    throw new FlagValueError('expected a DNS-like name such as cluster.local.');
  }
  return trimmed;
}

/** A duration (`500ms`, `5s`, `1h30m`; never negative) in whole milliseconds. */
export function parseDurationMs(value: string): number {
  try {
    return Math.round(parseDuration(value.trim()));
  } catch {
    throw new FlagValueError('expected a duration such as 500ms, 5s or 1h.');
  }
}

/** A duration of at least one second (a lease, a grace period, a lifetime) in whole milliseconds. */
export function parseAtLeastSecondMs(value: string): number {
  const ms = parseDurationMs(value);
  if (ms < 1000) throw new FlagValueError('expected a duration of at least 1s.');
  return ms;
}

/** A duration of at least one second in whole seconds, rounded down (a certificate or token lifetime). */
export function parseDurationSeconds(value: string): number {
  return Math.floor(parseAtLeastSecondMs(value) / 1000);
}

/** A dialable `host:port` (IPv6 in brackets): the zone CP's address. */
export function parseHostPort(value: string): string {
  const trimmed = value.trim();
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(trimmed)) {
    throw new FlagValueError('expected host:port, e.g. 10.0.0.5:5678.');
  }
  return trimmed;
}

/** The text of a file a flag names; MeshError CONFIG naming the flag and the file if it cannot be read. */
export function readFlagFile(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new MeshError(ErrorCodes.CONFIG, `${flag} ${file}: ${(err as Error).message}`, { cause: err });
  }
}
