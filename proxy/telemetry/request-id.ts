/**
 * Request ids: random (version 4) UUIDs, as Envoy puts in `x-request-id`.
 *
 * `crypto.randomUUID()` builds its answer by concatenating 20 short strings,
 * which leaves ~20 heap objects per id for the young generation to sweep; a
 * proxy makes one per request. This writes the 36 characters into one
 * buffer and decodes it once: one string per id. The random bytes come
 * from the same CSPRNG, fetched in batches as Node does.
 */

import { randomFillSync } from 'node:crypto';

const IDS_PER_BATCH = 128;
const random = Buffer.allocUnsafe(16 * IDS_PER_BATCH);
let nextId = IDS_PER_BATCH;
const text = Buffer.allocUnsafe(36);
const HEX = Buffer.from('0123456789abcdef', 'latin1');
const DASH = 0x2d;

/** A new random UUID (RFC 9562 version 4), lowercase. */
export function newRequestId(): string {
  if (nextId === IDS_PER_BATCH) {
    randomFillSync(random);
    nextId = 0;
  }
  const from = nextId++ * 16;
  let at = 0;
  for (let i = 0; i < 16; i++) {
    let byte = random[from + i] as number;
    if (i === 6)
      byte = (byte & 0x0f) | 0x40; // version 4
    else if (i === 8) byte = (byte & 0x3f) | 0x80; // variant 10xx
    text[at++] = HEX[byte >> 4] as number;
    text[at++] = HEX[byte & 0x0f] as number;
    if (i === 3 || i === 5 || i === 7 || i === 9) text[at++] = DASH;
  }
  return text.toString('latin1', 0, 36);
}
