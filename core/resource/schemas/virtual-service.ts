/**
 * VirtualService spec (networking.istio.io / networking.meshfed.io), after
 * Istio's API reference: HTTP, TCP and TLS routes with matches, weighted
 * destinations, redirects, rewrites, timeouts, retries, faults, mirroring and
 * CORS.
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
  percent,
  portNumber,
  str,
  stringMap,
  stringMatch,
  stringMatchMap,
  strings,
  uint32,
} from './common.js';

function destination(description: string): JsonSchema {
  return obj(
    description,
    {
      host: str('Name of a service from the service registry (short names resolve in the rule namespace).'),
      subset: str('Name of a subset declared in the DestinationRule of the host.'),
      port: obj('Port on the host being addressed.', { number: portNumber('Port number.') }),
    },
    ['host'],
  );
}

function headerOperations(description: string): JsonSchema {
  return obj(description, {
    set: stringMap('Overwrite the headers with these values.'),
    add: stringMap('Append these values to the headers.'),
    remove: strings('Remove these headers.'),
  });
}

function headers(description: string): JsonSchema {
  return obj(description, {
    request: headerOperations('Header manipulation applied before forwarding a request.'),
    response: headerOperations('Header manipulation applied before returning a response.'),
  });
}

function httpMatch(): JsonSchema {
  return obj('Conditions a request must meet for the route to apply; all conditions are ANDed.', {
    name: str('Name of the match, appended to the route name in logs.'),
    uri: stringMatch('URI to match (case-sensitive unless ignoreUriCase).'),
    scheme: stringMatch('URI scheme to match.'),
    method: stringMatch('HTTP method to match.'),
    authority: stringMatch('HTTP authority (Host) to match.'),
    headers: stringMatchMap('Header values to match; keys are lower-case header names.'),
    port: portNumber('Port on the host being addressed.'),
    sourceLabels: stringMap('Labels the calling workload must carry.'),
    gateways: strings('Gateway names the match applies to.'),
    queryParams: stringMatchMap('Query parameters to match.'),
    ignoreUriCase: bool('Match the URI case-insensitively.'),
    withoutHeaders: stringMatchMap('Headers that must not match.'),
    sourceNamespace: str('Namespace the calling workload must be in.'),
    statPrefix: str('Prefix of the route statistics.'),
  });
}

function httpRouteDestination(): JsonSchema {
  return obj(
    'A weighted destination of an HTTP route.',
    {
      destination: destination('Where to send the request.'),
      weight: int('Share of traffic for this destination; weights of a route sum to 100.', {
        minimum: 0,
        maximum: 100,
      }),
      headers: headers('Header manipulation for this destination.'),
    },
    ['destination'],
  );
}

function routeDestination(): JsonSchema {
  return obj(
    'A weighted L4 destination.',
    {
      destination: destination('Where to send the connection.'),
      weight: int('Share of traffic for this destination; weights of a route sum to 100.', {
        minimum: 0,
        maximum: 100,
      }),
    },
    ['destination'],
  );
}

function l4Match(withSni: boolean): JsonSchema {
  const properties: Record<string, JsonSchema> = {
    destinationSubnets: strings('IPv4/IPv6 destination addresses or subnets (a.b.c.d/xx).'),
    port: portNumber('Port on the host being addressed.'),
    sourceLabels: stringMap('Labels the calling workload must carry.'),
    gateways: strings('Gateway names the match applies to.'),
    sourceNamespace: str('Namespace the calling workload must be in.'),
  };
  if (withSni) {
    return obj(
      'TLS connection match attributes.',
      { sniHosts: strings('SNI values to match (wildcards allowed).'), ...properties },
      ['sniHosts'],
    );
  }
  return obj('L4 connection match attributes.', properties);
}

function httpRoute(): JsonSchema {
  return obj('Rules for HTTP/1.1, HTTP/2 and gRPC traffic.', {
    name: str('Name of the route, used in logs.'),
    match: list('Match conditions; any one matching applies the route.', httpMatch()),
    route: list('Weighted destinations of the traffic.', httpRouteDestination()),
    redirect: obj('Answer with a redirect instead of forwarding.', {
      uri: str('Replace the path with this value.'),
      authority: str('Replace the authority with this value.'),
      port: portNumber('Replace the port with this value.'),
      derivePort: enumOf('Derive the port from the protocol or the request.', [
        'FROM_PROTOCOL_DEFAULT',
        'FROM_REQUEST_PORT',
      ]),
      scheme: str('Replace the scheme with this value.'),
      redirectCode: int('HTTP status of the redirect (default 301).', { minimum: 300, maximum: 399 }),
    }),
    directResponse: obj(
      'Answer with a fixed response.',
      {
        status: int('HTTP status of the response.', { minimum: 200, maximum: 599 }),
        body: obj('Response body.', {
          string: str('Body as a string.'),
          bytes: str('Body as base64 bytes.'),
        }),
      },
      ['status'],
    ),
    delegate: obj('Delegate routing to another VirtualService.', {
      name: str('Name of the delegate VirtualService.'),
      namespace: str('Namespace of the delegate VirtualService.'),
    }),
    rewrite: obj('Rewrite the request before forwarding.', {
      uri: str('Replace the matched prefix (or whole path) with this value.'),
      authority: str('Replace the authority with this value.'),
      uriRegexRewrite: obj('Rewrite the path with a regular expression.', {
        match: str('RE2 regular expression to match.'),
        rewrite: str('Replacement, with \\1-style capture references.'),
      }),
    }),
    timeout: duration('Timeout of the request; 0s disables it.'),
    retries: obj('Retry policy.', {
      attempts: int('Number of retries.', { minimum: 0 }),
      perTryTimeout: duration('Timeout per attempt.'),
      retryOn: str('Comma-separated conditions to retry on (5xx, gateway-error, connect-failure, ...).'),
      retryRemoteLocalities: bool('Allow retries to other localities.'),
    }),
    fault: obj('Fault injection.', {
      delay: obj('Delay injection.', {
        fixedDelay: duration('Delay before forwarding.'),
        exponentialDelay: duration('Exponential delay (unsupported by Envoy; accepted for compatibility).'),
        percentage: percent('Share of requests delayed.'),
        percent: int('Deprecated: share of requests delayed as an integer; use percentage.', {
          minimum: 0,
          maximum: 100,
        }),
      }),
      abort: obj('Abort injection.', {
        httpStatus: int('HTTP status to answer with.', { minimum: 200, maximum: 599 }),
        grpcStatus: str('gRPC status to answer with (e.g. UNAVAILABLE).'),
        http2Error: str('HTTP/2 error to answer with.'),
        percentage: percent('Share of requests aborted.'),
      }),
    }),
    mirror: destination('Mirror traffic to this destination as well.'),
    mirrors: list(
      'Mirror traffic to several destinations.',
      obj(
        'A mirror destination.',
        {
          destination: destination('Where to mirror.'),
          percentage: percent('Share of requests mirrored.'),
        },
        ['destination'],
      ),
    ),
    mirrorPercentage: percent('Share of requests mirrored to mirror (default 100).'),
    mirrorPercent: uint32('Deprecated: share mirrored as an integer; use mirrorPercentage.'),
    mirror_percent: uint32('Deprecated: share mirrored as an integer; use mirrorPercentage.'),
    corsPolicy: obj('Cross-Origin Resource Sharing policy.', {
      allowOrigins: list('Origins allowed.', stringMatch('An origin match.')),
      allowOrigin: strings('Deprecated: exact origins allowed; use allowOrigins.'),
      allowMethods: strings('Methods allowed.'),
      allowHeaders: strings('Request headers allowed.'),
      exposeHeaders: strings('Response headers browsers may read.'),
      maxAge: duration('How long preflight results may be cached.'),
      allowCredentials: bool('Allow credentials.'),
      unmatchedPreflights: enumOf('What to do with preflights not matching the policy.', [
        'UNSPECIFIED',
        'FORWARD',
        'IGNORE',
      ]),
    }),
    headers: headers('Header manipulation for the route.'),
  });
}

/** VirtualService spec schema. */
export const virtualServiceSpec: JsonSchema = obj('Traffic routing rules for a set of hosts.', {
  hosts: strings('Destination hosts the rules apply to (DNS names, wildcards, or short service names).'),
  gateways: strings('Gateways and sidecars the rules apply to ("mesh" means every sidecar).'),
  http: list('Ordered HTTP routes; the first match wins.', httpRoute()),
  tls: list(
    'Ordered routes for non-terminated TLS traffic.',
    obj('A TLS route.', {
      match: list('Match conditions.', l4Match(true)),
      route: list('Weighted destinations.', routeDestination()),
    }),
  ),
  tcp: list(
    'Ordered routes for opaque TCP traffic.',
    obj('A TCP route.', {
      match: list('Match conditions.', l4Match(false)),
      route: list('Weighted destinations.', routeDestination()),
    }),
  ),
  exportTo: exportTo(),
});
