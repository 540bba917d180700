import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { ErrorCodes, MeshError, httpStatusOf } from './errors.js';

/** Rows of the table in docs/errors.md: code → documented HTTP status. */
function documentedCodes(): Map<string, string> {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const rows = new Map<string, string>();
  for (const line of doc.split('\n')) {
    const cells = line.split('|').map((cell) => cell.trim());
    const code = /^`(MESHFED_ERR_[A-Z_]+)`$/.exec(cells[1] ?? '')?.[1];
    if (code !== undefined) rows.set(code, cells[2] ?? '');
  }
  return rows;
}

describe('error codes', () => {
  const documented = documentedCodes();

  it.each(Object.values(ErrorCodes))('%s is documented in docs/errors.md with its HTTP status', (code) => {
    expect(documented.get(code)).toBe(String(httpStatusOf(code)));
  });

  it('documents no code that does not exist', () => {
    expect([...documented.keys()].sort()).toEqual(Object.values(ErrorCodes).sort());
  });

  it('serializes to the stable JSON shape', () => {
    const err = new MeshError(ErrorCodes.VALIDATION, 'bad', { field: 'spec.x', details: { document: 2 } });
    expect(err.httpStatus).toBe(422);
    expect(JSON.parse(JSON.stringify(err))).toEqual({
      code: 'MESHFED_ERR_VALIDATION',
      message: 'bad',
      field: 'spec.x',
      details: { document: 2 },
    });
  });
});
