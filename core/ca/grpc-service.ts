/**
 * Typed access to the services of meshfed's .proto files: the generic
 * client constructor and service definition proto-loader produced, found
 * by qualified name and checked once, so callers never walk `GrpcObject`s.
 */

import type { GrpcObject, ServiceClientConstructor, ServiceDefinition } from '@grpc/grpc-js';
import { ErrorCodes, MeshError } from '../errors.js';
import { loadProto } from '../grpc/proto.js';

export interface LoadedService {
  /** Client constructor: `new Client(address, credentials, options)`. */
  Client: ServiceClientConstructor;
  /** Definition for `server.addService`. */
  service: ServiceDefinition;
}

const cache = new Map<string, LoadedService>();

function isClientConstructor(value: unknown): value is ServiceClientConstructor {
  return typeof value === 'function' && 'service' in value;
}

/** The service `qualifiedName` (e.g. `meshfed.ca.v1.CertificateAuthority`) of `file`. */
export function loadService(file: string, qualifiedName: string): LoadedService {
  const key = `${file}#${qualifiedName}`;
  const cached = cache.get(key);
  if (cached !== undefined) return cached;
  let node: GrpcObject | ServiceClientConstructor | undefined = loadProto(file);
  for (const part of qualifiedName.split('.')) {
    if (node === undefined || isClientConstructor(node)) {
      node = undefined;
      break;
    }
    const next: unknown = (node as Record<string, unknown>)[part];
    node = isClientConstructor(next)
      ? next
      : typeof next === 'object' && next !== null
        ? (next as GrpcObject)
        : undefined;
  }
  if (node === undefined || !isClientConstructor(node)) {
    throw new MeshError(ErrorCodes.INTERNAL, `${file} defines no service ${qualifiedName}`);
  }
  const loaded = { Client: node, service: node.service };
  cache.set(key, loaded);
  return loaded;
}
