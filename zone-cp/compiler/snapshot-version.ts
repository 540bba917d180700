/**
 * Snapshot versions are content hashes: equal versions mean equal config,
 * so unchanged proxies get no push. A sidecar's version hashes the hashes
 * of its parts (each service's JSON is hashed once per change), so a proxy
 * whose config did not change is recognised without assembling or hashing
 * its whole snapshot; the JSON is built only when someone reads it.
 */

import { hash } from 'node:crypto';

/** A compiled snapshot ready to push. */
export interface CompiledSnapshot {
  /** 32 hex characters of SHA-256 over the content. */
  readonly version: string;
  /** `sidecar/v1` or `gateway/v1`. */
  readonly type: string;
  /** The snapshot as JSON text (what goes on the wire); built on first read. */
  readonly json: string;
}

export function contentHash(text: string): string {
  // One-shot: about 40% cheaper than createHash() for the few-kB texts hashed here, thousands per change.
  return hash('sha256', text, 'hex').slice(0, 32);
}

/** A snapshot whose version is the hash of its JSON. */
export function compiled(type: string, json: string): CompiledSnapshot {
  return { version: contentHash(json), type, json };
}

/** A snapshot whose version is already known and whose JSON is built when read. */
export function lazyCompiled(type: string, version: string, build: () => string): CompiledSnapshot {
  let json: string | undefined;
  return {
    version,
    type,
    get json() {
      json ??= build();
      return json;
    },
  };
}
