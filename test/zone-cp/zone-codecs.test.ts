/**
 * The workload side's protobuf codecs (core/mds/mds-codec.ts,
 * core/ca/ca-codec.ts) against the zone CP's: every message the clients
 * encode is what proto-loader (the zone's gRPC server) decodes, and every
 * message the zone encodes is what the clients decode, for arbitrary field
 * values; and no input bytes make the decoders throw anything but a
 * ProtobufWireError or read past their buffer.
 */

import { describe, expect, test } from '@jest/globals';
import type { MethodDefinition } from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import path from 'node:path';
import fc from 'fast-check';
import { decodeSignResponse, encodeSignRequest, type SignResponseWire } from '../../core/ca/ca-codec.js';
import { CA_SERVICE } from '../../core/ca/ca-client.js';
import { loadService } from '../../core/ca/grpc-service.js';
import { ProtobufWireError, ProtobufWriter } from '../../core/grpc/protobuf-wire.js';
import { decodeControlMessage, encodeProxyMessage } from '../../core/mds/mds-codec.js';
import { MDS_SERVICE, type ControlMessageWire, type ProxyMessageWire } from '../../core/mds/mds-messages.js';
import { assertCliBuilt, CLI_MAIN } from '../common/cli.js';

type Codec = MethodDefinition<unknown, unknown>;
const mdsStream = loadService('mds.proto', MDS_SERVICE).service.Stream as Codec;
const caSign = loadService('ca.proto', CA_SERVICE).service.Sign as Codec;

const text = fc.string({ unit: 'grapheme', maxLength: 40 });
const bytes = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a));
const uint32 = fc.integer({ min: 0, max: 0xffffffff });

const proxyMessage: fc.Arbitrary<ProxyMessageWire> = fc.oneof(
  fc
    .record({
      proxy_id: text,
      kind: text,
      workload: text,
      namespace: text,
      software_version: text,
      protocol_version: uint32,
      current_version: text,
    })
    .map((hello) => ({ message: 'hello' as const, hello })),
  fc.record({ version: text, nonce: text }).map((ack) => ({ message: 'ack' as const, ack })),
  fc.record({ version: text, nonce: text, error: text }).map((nack) => ({ message: 'nack' as const, nack })),
  bytes.map((json) => ({ message: 'report' as const, report: { json } })),
);

describe('MDS codec against the zone’s proto-loader', () => {
  test('every ProxyMessage the proxy encodes decodes on the zone to the same fields', () => {
    fc.assert(
      fc.property(proxyMessage, (message) => {
        const decoded = mdsStream.requestDeserialize(encodeProxyMessage(message));
        expect(decoded).toEqual(message);
      }),
      { numRuns: 300 },
    );
  });

  test('every ControlMessage the zone encodes decodes on the proxy to the same fields', () => {
    fc.assert(
      fc.property(fc.record({ version: text, nonce: text, type: text, json: bytes }), (snapshot) => {
        const wire = mdsStream.responseSerialize({ snapshot }) as Buffer;
        const decoded: ControlMessageWire = decodeControlMessage(wire);
        expect(decoded).toEqual({ message: 'snapshot', snapshot });
      }),
      { numRuns: 300 },
    );
  });

  test('fields a newer zone adds are skipped; a ProxyMessage with nothing set is refused', () => {
    const snapshot = new ProtobufWriter().string(1, 'v7').uint(9, 42).string(10, 'future').finish();
    const wire = new ProtobufWriter().message(1, snapshot).string(2, 'another').finish();
    expect(decodeControlMessage(wire)).toEqual({
      message: 'snapshot',
      snapshot: { version: 'v7', nonce: '', type: '', json: Buffer.alloc(0) },
    });
    expect(() => encodeProxyMessage({})).toThrow(ProtobufWireError);
  });
});

describe('CA codec against the zone CA’s proto-loader', () => {
  test('every SignRequest the client encodes decodes on the zone to the same fields', () => {
    fc.assert(
      fc.property(fc.record({ csr_pem: text, ttl_seconds: uint32 }), (request) => {
        expect(caSign.requestDeserialize(encodeSignRequest(request))).toEqual(request);
      }),
      { numRuns: 300 },
    );
  });

  test('every SignResponse the zone encodes decodes on the client to the same fields, 64-bit expiry included', () => {
    fc.assert(
      fc.property(
        fc.record({
          cert_chain_pem: fc.array(text, { maxLength: 4 }),
          trust_bundle_pem: fc.array(text, { maxLength: 4 }),
          spiffe_id: text,
          not_after: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
          serial: text,
        }),
        (response: SignResponseWire) => {
          const wire = caSign.responseSerialize(response) as Buffer;
          expect(decodeSignResponse(wire)).toEqual(response);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('decoding hostile bytes', () => {
  const decoders = [decodeControlMessage, decodeSignResponse];

  test('a truncated message is refused with what was wrong', () => {
    const wire = mdsStream.responseSerialize({
      snapshot: { version: 'v1', nonce: 'n', type: 'sidecar/v1', json: Buffer.from('{}') },
    }) as Buffer;
    expect(() => decodeControlMessage(wire.subarray(0, wire.length - 1))).toThrow(
      /malformed protobuf: field 1 claims \d+ bytes, \d+ left/,
    );
    expect(() => decodeSignResponse(Buffer.from([0x20, 0xff]))).toThrow(/varint at byte 1 runs past the end/);
    expect(() => decodeSignResponse(Buffer.from([0x0b]))).toThrow(/wire type 3, which proto3 does not use/);
    expect(() => decodeSignResponse(Buffer.from([0x18, 0x01]))).toThrow(
      /SignResponse.spiffe_id \(field 3\) is not length-delimited/,
    );
  });

  test('no bytes make a decoder throw anything but a ProtobufWireError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 1 }), (input, which) => {
        const decode = decoders[which] as (b: Buffer) => unknown;
        try {
          decode(Buffer.from(input));
        } catch (err) {
          expect(err).toBeInstanceOf(ProtobufWireError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

test('the workload-side clients load neither @grpc/grpc-js nor @grpc/proto-loader nor protobufjs', async () => {
  assertCliBuilt();
  const dist = path.resolve(path.dirname(CLI_MAIN), '..');
  const script = `
    import { createRequire } from 'node:module';
    await import(${JSON.stringify(path.join(dist, 'core/mds/mds-client.js'))});
    await import(${JSON.stringify(path.join(dist, 'core/ca/ca-client.js'))});
    // A CommonJS package the check must see: prom-client, which the metrics load.
    await import(${JSON.stringify(path.join(dist, 'core/metrics.js'))});
    const files = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify({
      heavy: files.filter((f) => /@grpc|protobufjs/.test(f)),
      witness: files.some((f) => f.includes('prom-client')),
    }));
  `;
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, ['--input-type=module', '-e', script], (err, out) =>
      err ? reject(err) : resolve(out),
    ),
  );
  // prom-client is seen in the same cache, so the check sees what is loaded.
  expect(JSON.parse(stdout)).toEqual({ heavy: [], witness: true });
});
