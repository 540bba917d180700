/** The meshfed release a control plane runs, reported over KDS (Hello, Welcome, Zone status). */

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { protoDirectory } from '../grpc/proto.js';

let cached: string | undefined;

/** `version` of the meshfed package.json (found the way the .proto files are), or 0.0.0. */
export function meshfedVersion(): string {
  if (cached !== undefined) return cached;
  try {
    const pkg: unknown = JSON.parse(
      readFileSync(join(dirname(dirname(protoDirectory())), 'package.json'), 'utf8'),
    );
    cached =
      typeof pkg === 'object' && pkg !== null && 'version' in pkg && typeof pkg.version === 'string'
        ? pkg.version
        : '0.0.0';
  } catch {
    cached = '0.0.0';
  }
  return cached;
}
