/**
 * The protocol of a service port, decided as Istio decides it: the
 * explicit `appProtocol` first, then the port name's prefix
 * (`http-web`, `grpc`, `tcp-db`), else plain TCP (safe for anything).
 */

import type { PortProtocol } from '../../core/mesh/snapshot.js';

const BY_NAME: Record<string, PortProtocol> = {
  http: 'http',
  'http-web': 'http',
  'grpc-web': 'http',
  http2: 'http2',
  h2c: 'http2',
  'kubernetes.io/h2c': 'http2',
  grpc: 'grpc',
  tcp: 'tcp',
  // TLS and HTTPS are passed through as opaque bytes: the mesh does not terminate them.
  https: 'tcp',
  tls: 'tcp',
  mongo: 'tcp',
  mysql: 'tcp',
  redis: 'tcp',
};

function lookup(value: string): PortProtocol | undefined {
  return BY_NAME[value.toLowerCase()];
}

/**
 * @param name The port's name (`http-api`, `grpc`, ``).
 * @param appProtocol Kubernetes `appProtocol` or a ServiceEntry/Istio
 *   protocol (`HTTP`, `GRPC`, `TCP`, …) when the source has one.
 */
export function portProtocol(name: string | undefined, appProtocol?: string): PortProtocol {
  if (appProtocol !== undefined && appProtocol !== '') {
    const explicit = lookup(appProtocol);
    if (explicit) return explicit;
  }
  if (name === undefined || name === '') return 'tcp';
  const exact = lookup(name);
  if (exact) return exact;
  const dash = name.indexOf('-');
  return (dash > 0 ? lookup(name.slice(0, dash)) : undefined) ?? 'tcp';
}
