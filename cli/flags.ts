/**
 * Value parsers for commander options: those of cli/flag-values.ts, whose
 * refusal becomes commander's InvalidArgumentError so that the message names
 * the flag (or the environment variable the value came from) before anything
 * starts; and the store URL, which needs the store registry.
 */

import { InvalidArgumentError } from 'commander';
import { supportedStoreSchemes } from '../core/store/store-registry.js';
import * as values from './flag-values.js';

/** `parse` as a commander argParser: a FlagValueError becomes commander's InvalidArgumentError. */
export function forCommander<T, P = undefined>(
  parse: (value: string, previous?: P) => T,
): (value: string, previous?: P) => T {
  return (value, previous) => {
    try {
      return parse(value, previous);
    } catch (err) {
      if (err instanceof values.FlagValueError) throw new InvalidArgumentError(err.message);
      throw err;
    }
  };
}

/** A TCP port, 0 (pick a free one) to 65535. */
export const parsePort: (value: string) => number = forCommander(values.parsePort);

/** A duration (`500ms`, `5s`, `1h30m`) in whole milliseconds. */
export const parseDurationMs: (value: string) => number = forCommander(values.parseDurationMs);

/** A duration of at least 1s in whole milliseconds. */
export const parseAtLeastSecondMs: (value: string) => number = forCommander(values.parseAtLeastSecondMs);

/** A duration of at least 1s in whole seconds. */
export const parseDurationSeconds: (value: string) => number = forCommander(values.parseDurationSeconds);

/** A dialable `host:port` (IPv6 in brackets). */
export const parseHostPort: (value: string) => string = forCommander(values.parseHostPort);

/** A positive byte count: `4194304`, `4Mi`, `512KiB`. */
export const parseByteSize: (value: string) => number = forCommander(values.parseByteSize);

/** A host name or IP address to bind to. */
export const parseHost: (value: string) => string = forCommander(values.parseHost);

/** A trust domain: a DNS-like name, no scheme, no path. */
export const parseTrustDomain: (value: string) => string = forCommander(values.parseTrustDomain);

/** An integer in [min, max]: worker counts, queue bounds, batch sizes. */
export function integerIn(min: number, max: number): (value: string) => number {
  return forCommander(values.integerIn(min, max));
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
