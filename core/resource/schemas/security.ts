/**
 * PeerAuthentication and AuthorizationPolicy specs (security.istio.io /
 * security.meshfed.io).
 */

import type { JsonSchema } from '../json-schema.js';
import { enumOf, list, matchLabelsSelector, obj, policyTargetReference, str, strings } from './common.js';

function mutualTls(description: string): JsonSchema {
  return obj(description, {
    mode: enumOf('mTLS mode.', ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT']),
  });
}

/** PeerAuthentication spec schema. */
export const peerAuthenticationSpec: JsonSchema = obj('Mutual TLS requirements for traffic to workloads.', {
  selector: matchLabelsSelector('Workloads the policy applies to; absent means the whole namespace.'),
  mtls: mutualTls('mTLS setting of the workloads.'),
  portLevelMtls: {
    type: 'object',
    description: 'mTLS setting per port number; requires a selector.',
    additionalProperties: mutualTls('mTLS setting of the port.'),
  },
});

const source = obj('Attributes of the request origin; fields are ANDed.', {
  principals: strings('Peer identities (trust-domain/ns/namespace/sa/account) allowed.'),
  notPrincipals: strings('Peer identities refused.'),
  requestPrincipals: strings('Request (JWT) identities iss/sub allowed.'),
  notRequestPrincipals: strings('Request identities refused.'),
  namespaces: strings('Namespaces of the peer allowed.'),
  notNamespaces: strings('Namespaces of the peer refused.'),
  serviceAccounts: strings('Service accounts (namespace/name) allowed.'),
  notServiceAccounts: strings('Service accounts refused.'),
  ipBlocks: strings('Peer IPs or CIDR blocks allowed.'),
  notIpBlocks: strings('Peer IPs or CIDR blocks refused.'),
  remoteIpBlocks: strings('Original client IPs (X-Forwarded-For) allowed.'),
  notRemoteIpBlocks: strings('Original client IPs refused.'),
});

const operation = obj('Attributes of the request; fields are ANDed.', {
  hosts: strings('Hosts (authority) matched.'),
  notHosts: strings('Hosts not matched.'),
  ports: strings('Ports matched, as strings.'),
  notPorts: strings('Ports not matched.'),
  methods: strings('HTTP methods matched.'),
  notMethods: strings('HTTP methods not matched.'),
  paths: strings('Paths matched (exact, prefix*, *suffix, or {*}/{**} templates).'),
  notPaths: strings('Paths not matched.'),
});

/** AuthorizationPolicy spec schema. */
export const authorizationPolicySpec: JsonSchema = obj('Access control for workloads.', {
  selector: matchLabelsSelector('Workloads the policy applies to; absent means the whole namespace.'),
  targetRef: policyTargetReference('Resource the policy is attached to (instead of selector).'),
  targetRefs: list('Resources the policy is attached to.', policyTargetReference('A target.')),
  rules: list(
    'Rules; a request matching any rule triggers the action. No rules: ALLOW matches nothing.',
    obj('A rule: from AND to AND when.', {
      from: list('Sources; any may match.', obj('A source.', { source: source }, ['source'])),
      to: list('Operations; any may match.', obj('An operation.', { operation: operation }, ['operation'])),
      when: list(
        'Extra conditions on request attributes.',
        obj(
          'A condition.',
          {
            key: str('Attribute name, e.g. request.headers[version] or source.ip.'),
            values: strings('Values allowed.'),
            notValues: strings('Values refused.'),
          },
          ['key'],
        ),
      ),
    }),
  ),
  action: enumOf('What to do with a matching request (default ALLOW).', ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']),
  provider: obj('Extension provider of a CUSTOM policy.', {
    name: str('Name of the provider in mesh config.'),
  }),
});
