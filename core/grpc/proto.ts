/**
 * Loads meshfed's .proto files (core/proto/) with @grpc/proto-loader. The
 * files are found from the package root, so the same code works from the
 * TypeScript sources (tests) and from dist/ (the built CLI).
 */

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

let protoDir: string | undefined;

/** core/proto under the package root (the nearest ancestor holding package.json). */
export function protoDirectory(): string {
  if (protoDir !== undefined) return protoDir;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error('cannot find the meshfed package root from ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
  protoDir = join(dir, 'core', 'proto');
  return protoDir;
}

const cache = new Map<string, GrpcObject>();

/**
 * The gRPC package object of one proto file (e.g. 'mds.proto'). Options:
 * field names stay snake_case as in the .proto, 64-bit integers become
 * strings (no precision loss), bytes stay Buffers, enums become strings,
 * and defaults are filled in so absent fields are '' / 0 / [] rather than
 * undefined.
 */
export function loadProto(file: string): GrpcObject {
  const cached = cache.get(file);
  if (cached !== undefined) return cached;
  const definition = loadSync(join(protoDirectory(), file), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = loadPackageDefinition(definition);
  cache.set(file, loaded);
  return loaded;
}
