import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import { parse } from 'yaml';
import { buildCrd, CRD_HEADER, crdName, renderCrdYaml } from './crd.js';
import type { JsonSchema } from './json-schema.js';
import { allKinds } from './kinds.js';

const crdDir = fileURLToPath(new URL('../../deploy/crds/', import.meta.url));

/** Every violation of Kubernetes' structural-schema rules, as path: problem. */
function structuralProblems(schema: JsonSchema, path: string): string[] {
  const problems: string[] = [];
  const intOrString = schema['x-kubernetes-int-or-string'] === true;
  if (schema.type === undefined && !intOrString) problems.push(`${path}: no type`);
  if (schema.properties !== undefined && schema.additionalProperties !== undefined) {
    problems.push(`${path}: both properties and additionalProperties`);
  }
  if (schema.type === 'array' && schema.items === undefined) problems.push(`${path}: array without items`);
  if (
    schema.type !== 'object' &&
    (schema.properties !== undefined || schema.additionalProperties !== undefined)
  ) {
    problems.push(`${path}: properties on a non-object`);
  }
  for (const [k, child] of Object.entries(schema.properties ?? {})) {
    problems.push(...structuralProblems(child, `${path}.${k}`));
  }
  if (typeof schema.additionalProperties === 'object') {
    problems.push(...structuralProblems(schema.additionalProperties, `${path}.*`));
  }
  if (schema.items !== undefined) problems.push(...structuralProblems(schema.items, `${path}[]`));
  for (const sub of [...(schema.oneOf ?? []), ...(schema.anyOf ?? []), ...(schema.not ? [schema.not] : [])]) {
    // Kubernetes forbids types and defaults inside value validations.
    if (sub.type !== undefined || sub.default !== undefined) problems.push(`${path}: typed oneOf/anyOf/not`);
  }
  return problems;
}

function readOrMissing(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '(missing)';
  }
}

describe('CRDs', () => {
  it.each(allKinds().map((k) => [crdName(k), k] as const))(
    'deploy/crds/%s.yaml is up to date',
    (name, kind) => {
      const onDisk = readOrMissing(`${crdDir}${name}.yaml`);
      const fresh = renderCrdYaml(kind);
      if (onDisk !== fresh) {
        throw new Error(
          `deploy/crds/${name}.yaml is out of date with core/resource/schemas: run \`npm run gen:crds\` and commit the result`,
        );
      }
    },
  );

  it.each(allKinds().map((k) => [k.kind, k] as const))('%s schema is structural', (_kind, kind) => {
    expect(structuralProblems(kind.specSchema, 'spec')).toEqual([]);
    if (kind.statusSchema) expect(structuralProblems(kind.statusSchema, 'status')).toEqual([]);
  });

  it('detects a non-structural schema', () => {
    expect(
      structuralProblems(
        { type: 'object', properties: { a: {} }, additionalProperties: { type: 'string' } },
        'spec',
      ),
    ).toEqual(['spec: both properties and additionalProperties', 'spec.a: no type']);
  });

  it('builds a valid CustomResourceDefinition', () => {
    for (const kind of allKinds()) {
      const crd = buildCrd(kind) as {
        apiVersion: string;
        metadata: { name: string };
        spec: {
          group: string;
          scope: string;
          names: Record<string, unknown>;
          versions: Array<{
            name: string;
            served: boolean;
            storage: boolean;
            subresources: unknown;
            schema: { openAPIV3Schema: { type: string; properties: { spec: unknown; status: JsonSchema } } };
          }>;
        };
      };
      expect(crd.apiVersion).toBe('apiextensions.k8s.io/v1');
      expect(crd.metadata.name).toBe(`${kind.plural}.${kind.crdGroup}`);
      expect(crd.spec.group).toBe(kind.crdGroup);
      expect(crd.spec.scope).toBe(kind.namespaced ? 'Namespaced' : 'Cluster');
      expect(crd.spec.names).toMatchObject({
        kind: kind.kind,
        plural: kind.plural,
        singular: kind.singular,
        listKind: `${kind.kind}List`,
        categories: ['meshfed'],
      });
      expect(crd.spec.versions.map((v) => v.name)).toEqual(kind.versions);
      expect(crd.spec.versions.filter((v) => v.storage).map((v) => v.name)).toEqual([kind.storageVersion]);
      for (const v of crd.spec.versions) {
        expect(v.served).toBe(true);
        expect(v.subresources).toEqual({ status: {} });
        expect(v.schema.openAPIV3Schema.type).toBe('object');
        // The CRD carries the very schema object the validator compiles.
        expect(v.schema.openAPIV3Schema.properties.spec).toBe(kind.specSchema);
        expect(v.schema.openAPIV3Schema.properties.status['x-kubernetes-preserve-unknown-fields']).toBe(true);
      }
    }
  });

  it('renders YAML with the header that parses back to the CRD', () => {
    const [vs] = allKinds();
    if (vs === undefined) throw new Error('no kinds');
    const text = renderCrdYaml(vs);
    expect(text.split('\n')[0]).toBe(CRD_HEADER);
    // No anchors or aliases: the versions repeat the schema in full.
    expect(text).not.toMatch(/[&*]a[0-9]/);
    expect(parse(text)).toEqual(JSON.parse(JSON.stringify(buildCrd(vs))));
    expect(findKindShortNames(text)).toEqual(['vs']);
  });
});

function findKindShortNames(text: string): unknown {
  return (parse(text) as { spec: { names: { shortNames?: unknown } } }).spec.names.shortNames;
}
