/**
 * A workload's inbound side: the ports of the services it backs (target
 * ports resolved against its named ports), or its own named ports when no
 * service selects it; the effective mTLS mode per port; the authorization
 * policies that select it.
 */

import type { InboundConfig, InboundPort, PortProtocol } from '../../core/mesh/snapshot.js';
import type { WorkloadEndpoint } from '../discovery/discovery.js';
import { authorizationFor } from './authorization.js';
import { targetPortOf } from './endpoints.js';
import type { MeshView } from './mesh-view.js';
import { effectiveMtls } from './peer-authentication.js';

export function buildInbound(view: MeshView, workload: WorkloadEndpoint): InboundConfig {
  const mtls = effectiveMtls(view, workload.namespace, workload.labels);
  const ports: InboundPort[] = [];
  const seen = new Set<number>();
  for (const svc of view.servicesOf(workload)) {
    for (const spec of svc.portSpecs) {
      if (seen.has(spec.port)) continue;
      const targetPort = targetPortOf(spec.targetPort, workload);
      if (targetPort === undefined) continue;
      seen.add(spec.port);
      ports.push({
        port: spec.port,
        targetPort,
        protocol: spec.protocol,
        mtls: mtls.forPort(targetPort, spec.port),
        ...(spec.name ? { name: spec.name } : {}),
      });
    }
  }
  if (ports.length === 0) {
    for (const [name, port] of Object.entries(workload.ports)) {
      if (seen.has(port)) continue;
      seen.add(port);
      ports.push({
        port,
        targetPort: port,
        protocol: protocolOfName(name),
        mtls: mtls.forPort(port, port),
        name,
      });
    }
  }
  ports.sort((a, b) => a.port - b.port);
  return {
    ports,
    defaultMtls: mtls.workload,
    authorization: authorizationFor(view, workload.namespace, workload.labels),
  };
}

/** Istio's protocol selection by port name prefix (`http-web`, `grpc`, `tcp-db`). */
export function protocolOfName(name: string): PortProtocol {
  const prefix = name.toLowerCase().split('-')[0] ?? '';
  if (prefix === 'http' || prefix === 'http2' || prefix === 'grpc') return prefix;
  return prefix === 'https' || prefix === 'tcp' || prefix === 'tls' ? 'tcp' : 'http';
}
