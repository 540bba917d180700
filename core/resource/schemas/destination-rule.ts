/**
 * DestinationRule spec: what happens to traffic after routing — load
 * balancing, locality, connection pools, outlier detection, client TLS and
 * subsets.
 */

import type { JsonSchema } from '../json-schema.js';
import {
  bool,
  duration,
  enumOf,
  exportTo,
  int,
  list,
  obj,
  portNumber,
  str,
  stringMap,
  strings,
  uint32,
  workloadSelector,
} from './common.js';

function loadBalancer(): JsonSchema {
  return obj('Load-balancing policy.', {
    simple: enumOf('Standard algorithm (LEAST_CONN is a deprecated alias of LEAST_REQUEST).', [
      'UNSPECIFIED',
      'LEAST_CONN',
      'RANDOM',
      'PASSTHROUGH',
      'ROUND_ROBIN',
      'LEAST_REQUEST',
    ]),
    consistentHash: obj('Session affinity by consistent hashing.', {
      httpHeaderName: str('Hash on this request header.'),
      httpCookie: obj(
        'Hash on this cookie (generated when absent).',
        {
          name: str('Cookie name.'),
          path: str('Cookie path.'),
          ttl: duration('Lifetime of the generated cookie.'),
        },
        ['name'],
      ),
      useSourceIp: bool('Hash on the source IP address.'),
      httpQueryParameterName: str('Hash on this query parameter.'),
      ringHash: obj('Ring hash algorithm.', { minimumRingSize: uint32('Minimum number of ring entries.') }),
      maglev: obj('Maglev algorithm.', { tableSize: uint32('Lookup table size (prime).') }),
      minimumRingSize: uint32('Deprecated: use ringHash.minimumRingSize.'),
    }),
    localityLbSetting: obj('Locality-weighted load balancing and failover.', {
      distribute: list(
        'Traffic shares from a source locality to destination localities.',
        obj('A distribution rule.', {
          from: str('Source locality region/zone/subzone, wildcards allowed.'),
          to: {
            type: 'object',
            description: 'Destination localities and their weights; the weights sum to 100.',
            additionalProperties: { type: 'integer', minimum: 0, maximum: 100 },
          },
        }),
      ),
      failover: list(
        'Where to fail over when the local region has no healthy endpoints.',
        obj('A failover rule.', { from: str('Source region.'), to: str('Destination region.') }),
      ),
      failoverPriority: strings('Ordered labels to prioritise endpoints by (topology labels or custom).'),
      enabled: bool('Enable locality load balancing (overrides the mesh setting).'),
    }),
    warmupDurationSecs: duration('Slow-start window for new endpoints.'),
  });
}

function connectionPool(): JsonSchema {
  return obj('Connection pool limits for each host.', {
    tcp: obj('TCP connection pool.', {
      maxConnections: int('Maximum connections to a host.', { minimum: 0 }),
      connectTimeout: duration('TCP connect timeout.'),
      tcpKeepalive: obj('TCP keepalive.', {
        probes: uint32('Unanswered probes before the connection is dead.'),
        time: duration('Idle time before probes start.'),
        interval: duration('Time between probes.'),
      }),
      maxConnectionDuration: duration('Maximum lifetime of a connection.'),
      idleTimeout: duration('Idle timeout of a TCP connection.'),
    }),
    http: obj('HTTP connection pool.', {
      http1MaxPendingRequests: int('Maximum requests queued waiting for a connection.', { minimum: 0 }),
      http2MaxRequests: int('Maximum active requests to a destination.', { minimum: 0 }),
      maxRequestsPerConnection: int('Maximum requests per connection (0 = unlimited).', { minimum: 0 }),
      maxRetries: int('Maximum outstanding retries to a destination.', { minimum: 0 }),
      idleTimeout: duration('Idle timeout of an upstream connection.'),
      h2UpgradePolicy: enumOf('Whether to upgrade HTTP/1.1 connections to HTTP/2.', [
        'DEFAULT',
        'DO_NOT_UPGRADE',
        'UPGRADE',
      ]),
      useClientProtocol: bool('Use the protocol of the client connection upstream.'),
      maxConcurrentStreams: int('Maximum concurrent streams per HTTP/2 connection.', { minimum: 0 }),
    }),
  });
}

function outlierDetection(): JsonSchema {
  return obj('Ejection of unhealthy hosts from the pool.', {
    splitExternalLocalOriginErrors: bool('Count local-origin failures apart from external errors.'),
    consecutiveLocalOriginFailures: uint32('Local-origin failures before ejection.'),
    consecutiveGatewayErrors: uint32('Gateway errors (502, 503, 504) before ejection.'),
    consecutive5xxErrors: uint32('5xx errors before ejection.'),
    consecutiveErrors: int('Deprecated: use consecutive5xxErrors.', { minimum: 0 }),
    interval: duration('Time between ejection sweeps.'),
    baseEjectionTime: duration('Minimum ejection duration.'),
    maxEjectionPercent: int('Maximum share of hosts ejected.', { minimum: 0, maximum: 100 }),
    minHealthPercent: int('Outlier detection stops below this share of healthy hosts.', {
      minimum: 0,
      maximum: 100,
    }),
  });
}

function clientTls(): JsonSchema {
  return obj('TLS settings for upstream connections.', {
    mode: enumOf('TLS mode.', ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']),
    clientCertificate: str('Path of the client certificate (MUTUAL).'),
    privateKey: str('Path of the client private key (MUTUAL).'),
    caCertificates: str('Path of the CA certificates used to verify the server.'),
    credentialName: str('Secret holding the client certificate, key and CA.'),
    subjectAltNames: strings('Accepted subject alternative names of the server.'),
    sni: str('SNI to present.'),
    insecureSkipVerify: bool('Skip verification of the server certificate.'),
    caCrl: str('Path of the certificate revocation list.'),
  });
}

function trafficPolicy(withPortLevel: boolean): JsonSchema {
  const properties: Record<string, JsonSchema> = {
    loadBalancer: loadBalancer(),
    connectionPool: connectionPool(),
    outlierDetection: outlierDetection(),
    tls: clientTls(),
    tunnel: obj(
      'Tunnel the connection through a proxy.',
      {
        protocol: enumOf('Tunnel protocol.', ['CONNECT', 'POST']),
        targetHost: str('Host to tunnel to.'),
        targetPort: portNumber('Port to tunnel to.'),
      },
      ['targetHost', 'targetPort'],
    ),
    proxyProtocol: obj('Send a PROXY protocol header upstream.', {
      version: enumOf('PROXY protocol version.', ['V1', 'V2']),
    }),
  };
  if (withPortLevel) {
    properties.portLevelSettings = list(
      'Settings per destination port; they override the policy for that port.',
      obj('Settings for one port.', {
        port: obj('The port the settings apply to.', { number: portNumber('Port number.') }),
        loadBalancer: loadBalancer(),
        connectionPool: connectionPool(),
        outlierDetection: outlierDetection(),
        tls: clientTls(),
      }),
    );
  }
  return obj('Traffic policy applied to the destination.', properties);
}

/** DestinationRule spec schema. */
export const destinationRuleSpec: JsonSchema = obj(
  'Policies applied to traffic for a service after routing.',
  {
    host: str('Name of the service the rule applies to.'),
    trafficPolicy: trafficPolicy(true),
    subsets: list(
      'Named versions of the service, selected by endpoint labels.',
      obj(
        'A subset of the endpoints of the service.',
        {
          name: str('Name of the subset (a DNS label), referenced by routes.'),
          labels: stringMap('Labels selecting the endpoints of the subset.'),
          trafficPolicy: trafficPolicy(true),
        },
        ['name'],
      ),
    ),
    exportTo: exportTo(),
    workloadSelector: workloadSelector('Workloads the rule applies to (sidecars only).'),
  },
  ['host'],
);
