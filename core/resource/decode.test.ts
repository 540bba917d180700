import { describe, expect, it } from '@jest/globals';
import { ErrorCodes, MeshError } from '../errors.js';
import { decodeDocuments, MAX_DEPTH } from './decode.js';

function refusal(fn: () => unknown): MeshError {
  try {
    fn();
  } catch (err) {
    if (err instanceof MeshError) return err;
    throw new Error(`expected a MeshError, got ${String(err)}`, { cause: err });
  }
  throw new Error('expected decoding to fail');
}

const doc = { apiVersion: 'meshfed.io/v1alpha1', kind: 'Zone', metadata: { name: 'zone-a' } };

describe('decodeDocuments', () => {
  it('reads a JSON object, an array and a List', () => {
    expect(decodeDocuments(JSON.stringify(doc), 'application/json')).toEqual([doc]);
    expect(decodeDocuments(JSON.stringify([doc, doc]), 'application/json; charset=utf-8')).toEqual([
      doc,
      doc,
    ]);
    const list = { apiVersion: 'v1', kind: 'List', items: [doc, doc, doc] };
    expect(decodeDocuments(JSON.stringify(list))).toHaveLength(3);
  });

  it('reads multi-document YAML and skips empty documents', () => {
    const yaml = `---\n# only a comment\n---\napiVersion: meshfed.io/v1alpha1\nkind: Zone\nmetadata:\n  name: zone-a\n---\n---\napiVersion: meshfed.io/v1alpha1\nkind: Zone\nmetadata: {name: zone-b}\n...\n`;
    const docs = decodeDocuments(yaml, 'application/yaml');
    expect(docs).toEqual([doc, { ...doc, metadata: { name: 'zone-b' } }]);
    expect(decodeDocuments(yaml)).toEqual(docs);
    expect(decodeDocuments('')).toEqual([]);
  });

  it('turns numeric YAML keys into strings (portLevelMtls)', () => {
    expect(decodeDocuments('portLevelMtls:\n  8080:\n    mode: DISABLE\n')).toEqual([
      { portLevelMtls: { '8080': { mode: 'DISABLE' } } },
    ]);
  });

  it('reports malformed YAML with document index and line:column', () => {
    const yaml = `kind: Zone\n---\nkind: Zone\nmetadata:\n  name: [a, b\n`;
    const err = refusal(() => decodeDocuments(yaml, 'application/yaml'));
    expect(err.code).toBe(ErrorCodes.DECODE);
    expect(err.details).toMatchObject({ document: 1 });
    expect(err.message).toMatch(/^document 1, line \d+:\d+: /);
    const dup = refusal(() => decodeDocuments('a: 1\na: 2\n'));
    expect(dup.details).toEqual({ document: 0, line: 2, column: 1 });
    expect(dup.message).toContain('document 0, line 2:1');
  });

  it('reports malformed JSON with a position', () => {
    const err = refusal(() => decodeDocuments('{\n  "kind": "Zone",\n  "metadata": }\n', 'application/json'));
    expect(err.code).toBe(ErrorCodes.DECODE);
    expect(err.details).toEqual({ document: 0, line: 3, column: 15 });
    expect(err.message).toContain('invalid JSON');
  });

  it('refuses nesting deeper than 64 levels, naming the depth', () => {
    const ok = '['.repeat(MAX_DEPTH) + ']'.repeat(MAX_DEPTH);
    expect(() =>
      decodeDocuments(`{"a":${'['.repeat(MAX_DEPTH - 1)}${']'.repeat(MAX_DEPTH - 1)}}`),
    ).not.toThrow();
    for (const [text, type] of [
      ['['.repeat(MAX_DEPTH + 1) + ']'.repeat(MAX_DEPTH + 1), 'application/json'],
      ['a: ' + '['.repeat(MAX_DEPTH) + ']'.repeat(MAX_DEPTH), 'application/yaml'],
      ['['.repeat(100_000), undefined],
    ] as const) {
      const err = refusal(() => decodeDocuments(text, type));
      expect(err.code).toBe(ErrorCodes.DECODE);
      expect(err.message).toContain('nesting deeper than 64 levels');
    }
    expect(ok.length).toBe(128);
  });

  it('refuses nesting that only aliases create', () => {
    const deep = '['.repeat(40) + ']'.repeat(40);
    const yaml = `a: &x ${deep}\nb: ${'['.repeat(30)}*x${']'.repeat(30)}\n`;
    const err = refusal(() => decodeDocuments(yaml, 'application/yaml'));
    expect(err.message).toContain('after expanding aliases');
  });

  it('refuses more than 1000 documents', () => {
    const many = Array.from({ length: 1001 }, () => 'kind: Zone').join('\n---\n');
    const err = refusal(() => decodeDocuments(many, 'application/yaml'));
    expect(err.code).toBe(ErrorCodes.DECODE);
    expect(err.message).toContain('more than 1000 documents');
    expect(decodeDocuments(JSON.stringify(Array.from({ length: 1000 }, () => doc)))).toHaveLength(1000);
  });

  it('refuses a YAML alias bomb', () => {
    const bomb = [
      'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
      'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]',
      'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
      'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]',
      'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]',
      'f: [*e,*e,*e,*e,*e,*e,*e,*e,*e]',
    ].join('\n');
    const err = refusal(() => decodeDocuments(bomb, 'application/yaml'));
    expect(err.code).toBe(ErrorCodes.DECODE);
    expect(err.message).toContain('alias');
  });

  it('refuses scalars and unsupported content types', () => {
    expect(refusal(() => decodeDocuments('just text')).message).toContain('expected an object');
    expect(refusal(() => decodeDocuments('[1]', 'application/json')).message).toContain('expected an object');
    expect(refusal(() => decodeDocuments('{}', 'application/xml')).code).toBe(
      ErrorCodes.UNSUPPORTED_MEDIA_TYPE,
    );
  });

  it('accepts flow-style YAML that is not JSON when no type is given', () => {
    expect(decodeDocuments('{kind: Zone, metadata: {name: zone-a}}')).toEqual([
      { kind: 'Zone', metadata: { name: 'zone-a' } },
    ]);
  });
});
