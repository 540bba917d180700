/**
 * Building blocks shared by the spec schemas of several kinds. Each helper
 * returns a fresh object so that a schema tree never shares nodes: the CRD
 * writer and the validator's closing transform may then treat every node on
 * its own.
 */

import type { JsonSchema } from '../json-schema.js';

/** A string with a description. */
export function str(description: string, extra: Partial<JsonSchema> = {}): JsonSchema {
  return { type: 'string', description, ...extra };
}

/** A boolean with a description. */
export function bool(description: string, extra: Partial<JsonSchema> = {}): JsonSchema {
  return { type: 'boolean', description, ...extra };
}

/** An integer with a description and optional bounds. */
export function int(description: string, extra: Partial<JsonSchema> = {}): JsonSchema {
  return { type: 'integer', description, ...extra };
}

/** A non-negative integer (protobuf uint32 and its wrappers). */
export function uint32(description: string): JsonSchema {
  return { type: 'integer', description, minimum: 0, maximum: 4294967295 };
}

/** A string enum. */
export function enumOf(description: string, values: string[]): JsonSchema {
  return { type: 'string', description, enum: values };
}

/** A list of strings. */
export function strings(description: string): JsonSchema {
  return { type: 'array', description, items: { type: 'string' } };
}

/** A map from string to string (labels, header values). */
export function stringMap(description: string): JsonSchema {
  return { type: 'object', description, additionalProperties: { type: 'string' } };
}

/** An object with the given properties (closed by the validator). */
export function obj(
  description: string,
  properties: Record<string, JsonSchema>,
  required?: string[],
): JsonSchema {
  return { type: 'object', description, properties, ...(required ? { required } : {}) };
}

/** A list of objects. */
export function list(description: string, items: JsonSchema, extra: Partial<JsonSchema> = {}): JsonSchema {
  return { type: 'array', description, items, ...extra };
}

/**
 * A protobuf Duration as Istio writes it (`1s`, `0.5s`, `100ms`, `1h30m`).
 * The syntax is checked by the semantic pass (duration.ts) so that the error
 * says which part is wrong rather than quoting a regular expression.
 */
export function duration(description: string): JsonSchema {
  return {
    type: 'string',
    format: 'duration',
    description: `${description} Duration such as 1s, 0.5s, 100ms, 1h30m.`,
  };
}

/** A TCP/UDP port number. */
export function portNumber(description: string): JsonSchema {
  return { type: 'integer', description, minimum: 1, maximum: 65535 };
}

/** Istio's `Percent`: a double in [0, 100]. */
export function percent(description: string): JsonSchema {
  return obj(description, {
    value: { type: 'number', description: 'Percentage in the range [0.0, 100.0].', minimum: 0, maximum: 100 },
  });
}

/** Istio's `StringMatch`: exactly one of exact, prefix or regex (RE2 syntax). */
export function stringMatch(description: string): JsonSchema {
  return obj(description, {
    exact: str('Exact string match.'),
    prefix: str('Prefix-based match.'),
    regex: str('RE2 style regex-based match.'),
  });
}

/** A map of header or query parameter names to StringMatch. */
export function stringMatchMap(description: string): JsonSchema {
  return {
    type: 'object',
    description,
    additionalProperties: stringMatch('Match on the value; an empty match checks presence only.'),
  };
}

/** `exportTo`: namespaces the resource is visible to (`.`, `*`, or names). */
export function exportTo(): JsonSchema {
  return strings('Namespaces to which this resource is exported: "." (own namespace), "*" (all) or names.');
}

/** Istio's `WorkloadSelector` (used by DestinationRule, ServiceEntry, Sidecar). */
export function workloadSelector(description: string): JsonSchema {
  return obj(description, {
    labels: stringMap('Labels of the workloads the resource applies to.'),
  });
}

/** `type.WorkloadSelector` of the security API: `matchLabels`. */
export function matchLabelsSelector(description: string): JsonSchema {
  return obj(description, {
    matchLabels: stringMap('Labels of the workloads the policy applies to.'),
  });
}

/** `PolicyTargetReference` (Gateway API attachment of security policies). */
export function policyTargetReference(description: string): JsonSchema {
  return obj(
    description,
    {
      group: str('Group of the target resource.'),
      kind: str('Kind of the target resource (Gateway, Service, ServiceEntry, GatewayClass).'),
      name: str('Name of the target resource.'),
      namespace: str('Namespace of the target resource; defaults to the policy namespace.'),
    },
    ['kind', 'name'],
  );
}

/** Istio's `WorkloadEntry` spec, also used as ServiceEntry endpoints and WorkloadGroup template. */
export function workloadEntrySpec(description: string): JsonSchema {
  return obj(description, {
    address: str('Address of the endpoint: an IP, a DNS name or a unix:// socket path.'),
    ports: {
      type: 'object',
      description: 'Ports of the endpoint, keyed by the port name of the service.',
      additionalProperties: { type: 'integer', minimum: 1, maximum: 65535 },
    },
    labels: stringMap('Labels of the endpoint.'),
    network: str('Network the endpoint is in; needed to reach it through a gateway.'),
    locality: str('Locality region/zone/subzone of the endpoint.'),
    weight: uint32('Load-balancing weight of the endpoint.'),
    serviceAccount: str('Service account of the workload, for its identity.'),
  });
}
