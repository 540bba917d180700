/**
 * Value parsers for commander options. Each throws commander's
 * InvalidArgumentError, so the message names the flag (or the environment
 * variable the value came from) before anything starts.
 */

import { InvalidArgumentError } from 'commander';
import { supportedStoreSchemes } from '../core/store/store-registry.js';

/** A TCP port, 0 (pick a free one) to 65535. */
export function parsePort(value: string): number {
  const trimmed = value.trim();
  if (!/^\d+$/.test(trimmed)) throw new InvalidArgumentError('a port is an integer from 0 to 65535.');
  const port = Number(trimmed);
  if (port > 65535) throw new InvalidArgumentError('a port is an integer from 0 to 65535.');
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
      throw new InvalidArgumentError(`expected an integer from ${min} to ${max}.`);
    }
    return n;
  };
}

/** A positive byte count: `4194304`, `4Mi`, `512KiB`. */
export function parseByteSize(value: string): number {
  const match = /^(\d+)\s*([a-zA-Z]*)$/.exec(value.trim());
  const unit = byteUnits[(match?.[2] ?? '').toLowerCase()];
  if (!match || unit === undefined) {
    throw new InvalidArgumentError('expected a byte count such as 4194304 or 4Mi.');
  }
  const bytes = Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes) || bytes < 1)
    throw new InvalidArgumentError('expected a positive byte count.');
  return bytes;
}

/** A store URL: memory://, file:///abs/dir, redis://host:port/db. */
export function parseStoreUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(
      'expected a URL: memory://, file:///abs/dir, redis://host:port/db or kubernetes://.',
    );
  }
  // The store registry is the one list of backends; the flag only checks the scheme early.
  const schemes = supportedStoreSchemes();
  if (!schemes.includes(url.protocol.replace(/:$/, ''))) {
    throw new InvalidArgumentError(
      `unsupported store scheme "${url.protocol}"; use ${schemes.map((s) => `${s}://`).join(', ')}.`,
    );
  }
  return value;
}

/** A host name or IP address to bind to. */
export function parseHost(value: string): string {
  const trimmed = value.trim();
  if (!trimmed || /[\s/]/.test(trimmed))
    throw new InvalidArgumentError('expected a host name or IP address.');
  return trimmed;
}

/** A trust domain: a DNS-like name, no scheme, no path. */
export function parseTrustDomain(value: string): string {
  const trimmed = value.trim().toLowerCase();
  if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(trimmed)) {
    throw new InvalidArgumentError('expected a DNS-like name such as cluster.local.');
  }
  return trimmed;
}
