import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { allKinds } from '../../core/resource/kinds.js';
import {
  API_REFERENCE_HEADER,
  API_REFERENCE_PATH,
  collectRoutes,
  fieldRows,
  renderApiReference,
  repoRoot,
} from '../../scripts/gen-api-docs.js';

const root = repoRoot();

function readOrMissing(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '(missing)';
  }
}

describe('docs/api-reference.md', () => {
  it('is up to date with the schemas and the route registrations', async () => {
    const onDisk = readOrMissing(join(root, API_REFERENCE_PATH));
    const fresh = await renderApiReference(root);
    if (onDisk !== fresh) {
      throw new Error(
        `${API_REFERENCE_PATH} is out of date with core/resource/schemas or the REST routes: run \`npm run gen:api-docs\` and commit the result`,
      );
    }
    expect(onDisk.startsWith(API_REFERENCE_HEADER)).toBe(true);
  });

  it('documents every field of every kind, with its path', () => {
    const doc = readOrMissing(join(root, API_REFERENCE_PATH));
    for (const kind of allKinds()) {
      expect(doc).toContain(`## ${kind.kind}\n`);
      for (const row of fieldRows(kind.specSchema, 'spec', true).slice(1)) {
        expect(doc).toContain(`\`${row.path}\``);
      }
    }
    // A field that only exists deep in one schema, to prove nesting is walked.
    expect(doc).toContain('`spec.http[].route[].destination.host`');
    expect(doc).toMatch(/`spec\.trafficPolicy\.loadBalancer\.localityLbSetting\.failover\[\]\.from`/);
  });

  it('lists every REST route the control planes register, each described', () => {
    const doc = readOrMissing(join(root, API_REFERENCE_PATH));
    const routes = collectRoutes(root);
    // The resource CRUD routes, the token routes and each server's health routes at least.
    expect(routes.length).toBeGreaterThanOrEqual(30);
    for (const route of routes) {
      expect(doc).toMatch(
        new RegExp(`\\| ${route.method} +\\| \`${route.path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\``),
      );
    }
    expect(doc).not.toContain('not described yet');
  });

  it('marks required fields and renders enums and defaults', () => {
    const rows = fieldRows(
      {
        type: 'object',
        required: ['mode'],
        properties: {
          mode: { type: 'string', description: 'How.', enum: ['A', 'B'] },
          on: { type: 'boolean', description: 'Whether.', default: true },
          tags: { type: 'object', additionalProperties: { type: 'string' } },
        },
      },
      'spec',
      true,
    );
    expect(rows.map((r) => [r.path, r.type, r.required, r.constraints])).toEqual([
      ['spec', 'object', true, []],
      ['spec.mode', 'string', true, ['one of `A`, `B`']],
      ['spec.on', 'boolean', false, ['default `true`']],
      ['spec.tags', 'map[string]string', false, []],
    ]);
  });
});
