import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { ErrorCodes, MeshError, isMeshError } from '../errors.js';
import { decodeDocuments } from './decode.js';
import type { JsonSchema } from './json-schema.js';
import { allKinds, findKind } from './kinds.js';
import { validateResource } from './validate.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Step = string | number;

const fixturesDir = fileURLToPath(new URL('../../test/fixtures/istio/', import.meta.url));
const validDocs: Json[] = readdirSync(fixturesDir)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => decodeDocuments(readFileSync(`${fixturesDir}${f}`, 'utf8'), 'application/yaml') as Json[]);

function isObj(value: Json | undefined): value is { [key: string]: Json } {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function kindOf(doc: Json): string {
  return isObj(doc) && typeof doc.kind === 'string' ? doc.kind : '';
}

/** Every path of a doc that is a closed object (a struct, not a map): an unknown key there is an error. */
function closedObjects(doc: Json): Step[][] {
  const out: Step[][] = [[], ['metadata']];
  const info = findKind(kindOf(doc));
  const spec = isObj(doc) ? doc.spec : undefined;
  if (info === undefined || !isObj(spec)) return out;
  const walk = (value: Json | undefined, schema: JsonSchema, path: Step[]): void => {
    if (Array.isArray(value) && schema.items) {
      value.forEach((v, i) => walk(v, schema.items as JsonSchema, [...path, i]));
    } else if (isObj(value)) {
      if (schema.properties) {
        if (!schema['x-kubernetes-preserve-unknown-fields']) out.push(path);
        for (const [k, v] of Object.entries(value)) {
          const child = schema.properties[k];
          if (child) walk(v, child, [...path, k]);
        }
      } else if (typeof schema.additionalProperties === 'object') {
        for (const [k, v] of Object.entries(value)) walk(v, schema.additionalProperties, [...path, k]);
      }
    }
  };
  walk(spec, info.specSchema, ['spec']);
  return out;
}

function at(doc: Json, path: Step[]): Json | undefined {
  let node: Json | undefined = doc;
  for (const step of path) {
    if (Array.isArray(node) && typeof step === 'number') node = node[step];
    else if (isObj(node) && typeof step === 'string') node = node[step];
    else return undefined;
  }
  return node;
}

/** Every path of a doc, for replacing a random node. */
function allPaths(doc: Json, path: Step[] = []): Step[][] {
  const out: Step[][] = [path];
  if (Array.isArray(doc)) doc.forEach((v, i) => out.push(...allPaths(v, [...path, i])));
  else if (isObj(doc)) for (const [k, v] of Object.entries(doc)) out.push(...allPaths(v, [...path, k]));
  return out;
}

function replaceAt(doc: Json, path: Step[], value: Json): Json {
  if (path.length === 0) return value;
  const copy = structuredClone(doc);
  const parent = at(copy, path.slice(0, -1));
  const last = path[path.length - 1];
  if (Array.isArray(parent) && typeof last === 'number') parent[last] = value;
  else if (isObj(parent) && typeof last === 'string') parent[last] = value;
  return copy;
}

function neverThrowsNonMeshError(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!isMeshError(err)) throw err;
  }
}

const kindNames = allKinds().flatMap((k) =>
  k.groups.map((g) => [`${g}/${k.storageVersion}`, k.kind] as const),
);

describe('property: validateResource', () => {
  it('never throws anything but a MeshError on arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => neverThrowsNonMeshError(() => validateResource(value))),
      {
        numRuns: 500,
      },
    );
  });

  it('never throws anything but a MeshError on resource-shaped JSON', () => {
    const resource = fc.record({
      apiVersion: fc.constantFrom(...kindNames.map(([v]) => v)),
      kind: fc.constantFrom(...kindNames.map(([, k]) => k)),
      metadata: fc.oneof(fc.record({ name: fc.constantFrom('a', 'b-1') }), fc.jsonValue()),
      spec: fc.oneof(fc.object(), fc.jsonValue()),
    });
    fc.assert(
      fc.property(resource, (value) => neverThrowsNonMeshError(() => validateResource(value))),
      {
        numRuns: 500,
      },
    );
  });

  it('never throws anything but a MeshError when a node of a valid doc is replaced', () => {
    const mutated = fc
      .constantFrom(...validDocs)
      .chain((doc) => fc.tuple(fc.constant(doc), fc.constantFrom(...allPaths(doc)), fc.jsonValue()));
    fc.assert(
      fc.property(mutated, ([doc, path, value]) => {
        const input = replaceAt(doc, path, value as Json);
        const before = JSON.stringify(input);
        neverThrowsNonMeshError(() => validateResource(input));
        expect(JSON.stringify(input)).toBe(before);
      }),
      { numRuns: 1000 },
    );
  });

  it('accepts VirtualServices whose weights sum to 100, and refuses other sums', () => {
    const weights = fc.array(fc.integer({ min: 0, max: 100 }), { minLength: 0, maxLength: 9 }).map((cuts) => {
      const sorted = [0, ...cuts.sort((a, b) => a - b), 100];
      return sorted.slice(1).map((v, i) => v - (sorted[i] ?? 0));
    });
    fc.assert(
      fc.property(weights, fc.integer({ min: -5, max: 5 }), (ws, skew) => {
        const route = ws.map((weight, i) => ({ destination: { host: 'reviews', subset: `v${i}` }, weight }));
        const doc = {
          apiVersion: 'networking.istio.io/v1',
          kind: 'VirtualService',
          metadata: { name: 'reviews' },
          spec: { hosts: ['reviews'], http: [{ route }] },
        };
        const { resource } = validateResource(doc);
        expect(resource.spec.http).toEqual([{ route }]);
        const last = route[route.length - 1];
        if (last === undefined || skew === 0 || last.weight + skew < 0 || last.weight + skew > 100) return;
        last.weight += skew;
        let caught: unknown;
        try {
          validateResource(doc);
        } catch (err) {
          caught = err;
        }
        expect(isMeshError(caught, ErrorCodes.VALIDATION)).toBe(true);
        expect((caught as MeshError).field).toBe('spec.http[0].route');
      }),
      { numRuns: 300 },
    );
  });

  it('refuses an unknown key inserted into any object of a valid doc, naming it', () => {
    const inserted = fc
      .constantFrom(...validDocs)
      .chain((doc) =>
        fc.tuple(
          fc.constant(doc),
          fc.constantFrom(...closedObjects(doc)),
          fc.stringMatching(/^zz[a-zA-Z][a-zA-Z0-9_]{0,8}$/),
          fc.jsonValue({ maxDepth: 2 }),
        ),
      );
    fc.assert(
      fc.property(inserted, ([doc, path, key, value]) => {
        const copy = structuredClone(doc);
        const target = at(copy, path);
        if (!isObj(target)) throw new Error(`no object at ${path.join('.')}`);
        target[key] = value as Json;
        let caught: unknown;
        try {
          validateResource(copy);
        } catch (err) {
          caught = err;
        }
        expect(caught).toBeInstanceOf(MeshError);
        const err = caught as MeshError;
        expect(err.code).toBe(ErrorCodes.VALIDATION);
        expect(err.field).toContain(key);
        expect(err.message).toContain(`${err.field ?? ''}: unknown field`);
      }),
      { numRuns: 500 },
    );
  });
});

describe('property: decodeDocuments', () => {
  const yamlish = fc
    .array(
      fc.constantFrom(
        'a',
        ':',
        ' ',
        '\n',
        '-',
        '---',
        '[',
        ']',
        '{',
        '}',
        ',',
        '&x ',
        '*x',
        '"',
        "'",
        '#',
        '!',
        '|',
        '>',
        '? ',
        '%YAML 1.2\n',
        '\t',
        '\\',
        '1',
      ),
      { maxLength: 60 },
    )
    .map((parts) => parts.join(''));

  it('never throws anything but a MeshError on arbitrary text', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), yamlish, fc.json()),
        fc.constantFrom(undefined, 'application/json', 'application/yaml', 'text/plain'),
        (text, type) => neverThrowsNonMeshError(() => decodeDocuments(text, type)),
      ),
      { numRuns: 2000 },
    );
  });

  it('returns only objects, and round-trips any JSON object', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 5 })), (value) => {
        const text = JSON.stringify(value);
        // Compare with what JSON itself round-trips to (-0 becomes 0).
        expect(decodeDocuments(text, 'application/json')).toEqual([JSON.parse(text)]);
      }),
      { numRuns: 300 },
    );
  });
});
