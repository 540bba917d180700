/**
 * The ClientHello reader against real hellos (openssl s_client, curl, Node)
 * and under fuzzing: it must give the same answer however the bytes are cut
 * into TCP chunks and TLS records, never throw, and never let bytes it was
 * not given influence the answer.
 */

import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { ClientHelloReader, readClientHello, type HelloResult } from '../../eastwest-gateway/sni-parse.js';
import {
  buildHelloMessage,
  frameRecords,
  loadCorpus,
  serverNameExtension,
  splitAt,
  unframeRecords,
} from './hello-builder.js';

const corpus = loadCorpus();

function readChunks(chunks: Buffer[], maxHelloBytes?: number): HelloResult {
  const reader = new ClientHelloReader(maxHelloBytes === undefined ? {} : { maxHelloBytes });
  let result: HelloResult = { status: 'need-more' };
  for (const chunk of chunks) result = reader.push(chunk);
  return result;
}

const VALID_STATUSES = new Set(['need-more', 'ok', 'error']);
const VALID_REASONS = new Set(['not-tls', 'malformed', 'too-large']);

function assertWellFormed(result: HelloResult): void {
  expect(VALID_STATUSES.has(result.status)).toBe(true);
  if (result.status === 'error') expect(VALID_REASONS.has(result.reason)).toBe(true);
}

describe('real ClientHellos', () => {
  test('the corpus holds hellos from openssl, curl and Node', () => {
    const sources = new Set(corpus.map((c) => c.file.split('-')[0]));
    expect(sources).toEqual(new Set(['openssl', 'curl', 'node']));
    expect(corpus.length).toBeGreaterThanOrEqual(12);
  });

  test.each(corpus.map((c) => [c.file, c] as const))('%s parses to its SNI', (_name, entry) => {
    const result = readClientHello(entry.bytes);
    expect(result).toEqual({
      status: 'ok',
      serverName: entry.serverName ?? undefined,
      consumed: entry.bytes.length,
    });
  });

  test('every split into two TCP segments gives the same answer', () => {
    for (const entry of corpus) {
      const whole = readClientHello(entry.bytes);
      for (let cut = 1; cut < entry.bytes.length; cut++) {
        const reader = new ClientHelloReader();
        expect(reader.push(entry.bytes.subarray(0, cut))).toEqual({ status: 'need-more' });
        expect(reader.push(entry.bytes.subarray(cut))).toEqual(whole);
      }
    }
  });

  test('one byte per segment gives the same answer', () => {
    for (const entry of corpus) {
      const chunks = [...entry.bytes].map((b) => Buffer.from([b]));
      expect(readChunks(chunks)).toEqual(readClientHello(entry.bytes));
    }
  });

  test('the hello re-fragmented into small TLS records parses the same, with consumed covering every record', () => {
    for (const entry of corpus) {
      const message = unframeRecords(entry.bytes);
      for (const size of [1, 2, 3, 7, 64, 100]) {
        const stream = frameRecords(message, size);
        expect(readClientHello(stream)).toEqual({
          status: 'ok',
          serverName: entry.serverName ?? undefined,
          consumed: stream.length,
        });
      }
    }
  });

  test('bytes after the hello (0-RTT data, a ChangeCipherSpec) are left for the upstream', () => {
    const entry = corpus.find((c) => c.file === 'node-tls13-resumed-psk.bin');
    expect(entry).toBeDefined();
    const bytes = entry?.bytes ?? Buffer.alloc(0);
    const extra = Buffer.from([20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 4, 1, 2, 3, 4]);
    const result = readClientHello(Buffer.concat([bytes, extra]));
    expect(result).toMatchObject({ status: 'ok', consumed: bytes.length });
  });

  test('upper-case SNI is lower-cased (SNI is case-insensitive)', () => {
    const entry = corpus.find((c) => c.file === 'node-mixed-case-sni.bin');
    expect(entry?.bytes.toString('latin1')).toContain('Ratings');
    expect(readClientHello(entry?.bytes ?? Buffer.alloc(0))).toMatchObject({
      serverName: 'v1.9080.ratings.bookinfo.svc.mesh',
    });
  });
});

describe('refusals', () => {
  test.each([
    ['plain HTTP', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['an SSLv2-framed hello', Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01])],
    ['a handshake record of version 2.x', Buffer.from([22, 2, 0, 0, 10])],
    ['an SSH banner', Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')],
  ])('%s is not-tls, decided on the first bytes', (_name, bytes) => {
    expect(readClientHello(bytes.subarray(0, 2))).toMatchObject({ status: 'error', reason: 'not-tls' });
    expect(readClientHello(bytes)).toMatchObject({ status: 'error', reason: 'not-tls' });
  });

  const hello = buildHelloMessage({ serverName: '_.80.web.default.svc.mesh' });
  test.each([
    ['a record of length 0', Buffer.from([22, 3, 1, 0, 0])],
    ['a record over 2^14 bytes', Buffer.from([22, 3, 1, 0x40, 0x01])],
    [
      'a ServerHello instead of a ClientHello',
      frameRecords(Buffer.concat([Buffer.from([2]), hello.subarray(1)])),
    ],
    [
      'an alert record after a first fragment',
      Buffer.concat([frameRecords(hello.subarray(0, 10)), Buffer.from([21, 3, 3, 0, 2, 2, 40])]),
    ],
    [
      'a session id of 33 bytes',
      frameRecords(buildHelloMessage({ serverName: 'a.b', sessionId: Buffer.alloc(33) })),
    ],
    ['an odd cipher_suites length', frameRecords(patch(hello, 4 + 2 + 32 + 1 + 32 + 1, 5))],
    ['extensions overrunning the hello', frameRecords(truncateMessage(hello, 3))],
    [
      'two server_name extensions',
      frameRecords(
        buildHelloMessage({
          serverName: 'a.example',
          extensionsAfter: [{ type: 0, data: serverNameExtension('b.example').subarray(4) }],
        }),
      ),
    ],
    ['a host name with a space', frameRecords(buildHelloMessage({ serverName: 'a b.example' }))],
    ['a host name with a NUL byte', frameRecords(buildHelloMessage({ serverName: 'a\u0000.example' }))],
    ['an empty host name', frameRecords(buildHelloMessage({ serverName: '' }))],
  ])('%s is malformed', (_name, bytes) => {
    expect(readClientHello(bytes)).toMatchObject({ status: 'error', reason: 'malformed' });
  });

  test('a hello without the SNI extension, or without extensions at all, parses with no server name', () => {
    expect(readClientHello(frameRecords(buildHelloMessage({})))).toMatchObject({
      status: 'ok',
      serverName: undefined,
    });
    expect(readClientHello(frameRecords(buildHelloMessage({ noExtensions: true })))).toMatchObject({
      status: 'ok',
      serverName: undefined,
    });
  });

  test('a ClientHello declaring more than the limit is too-large as soon as its header arrives', () => {
    const header = Buffer.from([22, 3, 1, 0, 4, 1, 0x01, 0x00, 0x00]); // declares 65536 bytes
    expect(readClientHello(header)).toMatchObject({ status: 'error', reason: 'too-large' });
    const big = buildHelloMessage({
      serverName: 'a.example',
      extensionsBefore: [{ type: 21, data: Buffer.alloc(5000) }],
    });
    expect(readClientHello(frameRecords(big), { maxHelloBytes: 4096 })).toMatchObject({
      reason: 'too-large',
    });
    expect(readClientHello(frameRecords(big))).toMatchObject({ status: 'ok', serverName: 'a.example' });
  });

  test('a hello dribbled in 1-byte records is bounded on the wire', () => {
    const message = buildHelloMessage({
      serverName: 'a.example',
      extensionsBefore: [{ type: 21, data: Buffer.alloc(3000) }],
    });
    // 6 wire bytes per hello byte: over twice the 4 KiB limit before the hello completes.
    const result = readChunks(splitAt(frameRecords(message, 1), [1000, 5000, 9000]), 4096);
    expect(result).toMatchObject({ status: 'error', reason: 'too-large' });
  });

  test('a prefix asks for more; the answer sticks once given', () => {
    const bytes = frameRecords(hello);
    expect(readClientHello(bytes.subarray(0, bytes.length - 1))).toEqual({ status: 'need-more' });
    const reader = new ClientHelloReader();
    const first = reader.push(Buffer.from('GET /'));
    expect(reader.push(bytes)).toBe(first);
    expect(reader.chunks.length).toBe(2);
    expect(reader.bufferedBytes).toBe(5 + bytes.length);
  });
});

function patch(buf: Buffer, offset: number, value: number): Buffer {
  const copy = Buffer.from(buf);
  copy[offset] = value;
  return copy;
}

/** The message with its body shortened by `n` bytes but its declared lengths kept (so the extensions overrun). */
function truncateMessage(message: Buffer, n: number): Buffer {
  const copy = Buffer.from(message.subarray(0, message.length - n));
  copy.writeUIntBE(copy.length - 4, 1, 3);
  return copy;
}

describe('fuzzing (fast-check)', () => {
  const hostLabel = fc.stringMatching(/^[a-z0-9_]([a-z0-9-]{0,20}[a-z0-9])?$/);
  const hostName = fc.array(hostLabel, { minLength: 1, maxLength: 6 }).map((labels) => labels.join('.'));
  const extension = fc.record({
    type: fc.integer({ min: 1, max: 0xffff }),
    data: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  });
  const helloSpec = fc.record({
    serverName: fc.option(hostName, { nil: undefined }),
    sessionId: fc.uint8Array({ maxLength: 32 }).map((a) => Buffer.from(a)),
    cipherSuites: fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 40 }),
    extensionsBefore: fc.array(extension, { maxLength: 8 }),
    extensionsAfter: fc.array(extension, { maxLength: 8 }),
  });
  const realHello = fc.constantFrom(...corpus.map((c) => c.bytes));

  test('random bytes never throw and give a well-formed answer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (bytes) => {
        assertWellFormed(readClientHello(Buffer.from(bytes)));
      }),
      { numRuns: 2000 },
    );
  });

  test('random bytes behind a valid record header never throw', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.uint8Array({ maxLength: 2048 }), (length, body) => {
        const bytes = Buffer.concat([
          Buffer.from([22, 3, 1, length >> 8, length & 0xff, 1]),
          Buffer.from(body),
        ]);
        assertWellFormed(readClientHello(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  test('random valid hellos parse to their SNI, whatever the records and TCP segments', () => {
    fc.assert(
      fc.property(
        helloSpec,
        fc.integer({ min: 1, max: 600 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (spec, fragment, cuts) => {
          const stream = frameRecords(buildHelloMessage(spec), fragment);
          const chunks = splitAt(
            stream,
            cuts.map((c) => c % (stream.length + 1)),
          );
          expect(readChunks(chunks)).toEqual({
            status: 'ok',
            serverName: spec.serverName,
            consumed: stream.length,
          });
        },
      ),
      { numRuns: 500 },
    );
  });

  test('mutated real hellos never throw, and the same bytes in other segments give the same answer', () => {
    const mutation = fc.oneof(
      fc.record({
        kind: fc.constant('flip' as const),
        at: fc.nat(),
        value: fc.integer({ min: 0, max: 255 }),
      }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), value: fc.constant(0) }),
      fc.record({
        kind: fc.constant('insert' as const),
        at: fc.nat(),
        value: fc.integer({ min: 0, max: 255 }),
      }),
    );
    fc.assert(
      fc.property(
        realHello,
        fc.array(mutation, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (bytes, mutations, cuts) => {
          let mutated = Buffer.from(bytes);
          for (const m of mutations) {
            const at = m.at % (mutated.length + 1);
            if (m.kind === 'flip' && at < mutated.length) mutated[at] = m.value;
            else if (m.kind === 'cut') mutated = mutated.subarray(0, at);
            else if (m.kind === 'insert')
              mutated = Buffer.concat([
                mutated.subarray(0, at),
                Buffer.from([m.value]),
                mutated.subarray(at),
              ]);
          }
          const whole = readClientHello(mutated);
          assertWellFormed(whole);
          const chunks = splitAt(
            mutated,
            cuts.map((c) => c % (mutated.length + 1)),
          );
          expect(readChunks(chunks)).toEqual(whole);
        },
      ),
      { numRuns: 3000 },
    );
  });

  test('never reads past what it was given: bytes beyond a chunk, or arriving later, do not change a final answer', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          realHello,
          fc.uint8Array({ maxLength: 1024 }).map((a) => Buffer.from(a)),
        ),
        fc.nat(),
        fc.uint8Array({ minLength: 1, maxLength: 256 }),
        (bytes, cutSeed, garbage) => {
          const cut = cutSeed % (bytes.length + 1);
          // The prefix as a view into a larger buffer whose tail is garbage.
          const backing = Buffer.concat([bytes.subarray(0, cut), Buffer.from(garbage)]);
          const prefix = backing.subarray(0, cut);
          const early = readClientHello(prefix);
          assertWellFormed(early);
          expect(readClientHello(Buffer.from(prefix))).toEqual(early);
          // A decision on a prefix is the decision on the whole stream.
          if (early.status !== 'need-more') expect(readClientHello(bytes)).toEqual(early);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
