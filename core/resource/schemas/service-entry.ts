/**
 * ServiceEntry, WorkloadEntry and WorkloadGroup specs: services and
 * workloads that are not discovered from a platform (external APIs, VMs).
 */

import type { JsonSchema } from '../json-schema.js';
import {
  enumOf,
  exportTo,
  int,
  list,
  obj,
  portNumber,
  str,
  stringMap,
  strings,
  workloadEntrySpec,
  workloadSelector,
} from './common.js';

/** ServiceEntry spec schema. */
export const serviceEntrySpec: JsonSchema = obj(
  'Adds an entry to the service registry.',
  {
    hosts: strings('Hosts of the service (DNS names, wildcards allowed).'),
    addresses: strings('Virtual IP addresses or CIDR blocks of the service.'),
    ports: list(
      'Ports of the service.',
      obj(
        'A service port.',
        {
          number: portNumber('Port number.'),
          protocol: str('Protocol: HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS.'),
          name: str('Label of the port.'),
          targetPort: portNumber('Port on the endpoints traffic is sent to.'),
        },
        ['number'],
      ),
    ),
    location: enumOf('Whether the service is part of the mesh.', ['MESH_EXTERNAL', 'MESH_INTERNAL']),
    resolution: enumOf('How the endpoints of the service are resolved.', [
      'NONE',
      'STATIC',
      'DNS',
      'DNS_ROUND_ROBIN',
    ]),
    endpoints: list('Endpoints of the service.', workloadEntrySpec('An endpoint of the service.')),
    workloadSelector: workloadSelector(
      'Select WorkloadEntries (and pods) as endpoints instead of listing them.',
    ),
    exportTo: exportTo(),
    subjectAltNames: strings('Accepted subject alternative names of the endpoints.'),
  },
  ['hosts'],
);

/** WorkloadEntry spec schema. */
export const workloadEntrySpecSchema: JsonSchema = workloadEntrySpec(
  'A non-Kubernetes workload (VM, bare metal).',
);

/** WorkloadGroup spec schema. */
export const workloadGroupSpec: JsonSchema = obj(
  'A template for the WorkloadEntries of workloads that join the mesh automatically.',
  {
    metadata: obj('Metadata copied to the generated WorkloadEntries.', {
      labels: stringMap('Labels.'),
      annotations: stringMap('Annotations.'),
    }),
    template: workloadEntrySpec(
      'Template of the WorkloadEntries; address and labels are filled per workload.',
    ),
    probe: obj('Readiness probe run by the agent on the workload.', {
      initialDelaySeconds: int('Seconds before the first probe.', { minimum: 0 }),
      timeoutSeconds: int('Probe timeout in seconds.', { minimum: 0 }),
      periodSeconds: int('Seconds between probes.', { minimum: 0 }),
      successThreshold: int('Successes in a row to become ready.', { minimum: 0 }),
      failureThreshold: int('Failures in a row to become not ready.', { minimum: 0 }),
      httpGet: obj(
        'HTTP GET probe.',
        {
          path: str('Path to request.'),
          port: portNumber('Port to connect to.'),
          host: str('Host to connect to (default 127.0.0.1).'),
          scheme: str('HTTP or HTTPS.'),
          httpHeaders: list(
            'Headers to send.',
            obj('A header.', { name: str('Header name.'), value: str('Header value.') }),
          ),
        },
        ['port'],
      ),
      tcpSocket: obj(
        'TCP connect probe.',
        { host: str('Host to connect to.'), port: portNumber('Port to connect to.') },
        ['port'],
      ),
      exec: obj('Command probe.', { command: strings('Command and arguments; exit code 0 is healthy.') }, [
        'command',
      ]),
    }),
  },
  ['template'],
);
