/**
 * x-request-id values (proxy/telemetry/request-id.ts): random version 4
 * UUIDs in their canonical form, across many batches of random bytes.
 */

import { describe, expect, it } from '@jest/globals';
import { newRequestId } from '../../proxy/telemetry/request-id.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('newRequestId', () => {
  it('gives distinct version 4 UUIDs, batch after batch', () => {
    const ids = Array.from({ length: 1000 }, () => newRequestId());
    for (const id of ids) expect(id).toMatch(UUID_V4);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('spreads every random nibble over all 16 digits', () => {
    // Version and variant digits aside, each position takes every hex digit over a few thousand ids.
    const seen = Array.from({ length: 36 }, () => new Set<string>());
    for (let i = 0; i < 4000; i++) [...newRequestId()].forEach((c, at) => seen[at]?.add(c));
    const fixed = new Set([8, 13, 14, 18, 19, 23]);
    seen.forEach((digits, at) => {
      if (!fixed.has(at)) expect(digits.size).toBe(16);
    });
    expect([...(seen[14] ?? [])]).toEqual(['4']);
    expect([...(seen[19] ?? [])].sort()).toEqual(['8', '9', 'a', 'b']);
  });
});
