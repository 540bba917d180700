/**
 * Builds synthetic TLS ClientHellos and re-frames real ones, for the SNI
 * parser's tests: random but valid hellos (so the fuzzer reaches deep into
 * the extension parser) and the same hello fragmented over many records.
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CORPUS_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../fixtures/client-hello',
);

export interface CorpusEntry {
  file: string;
  serverName: string | null;
  bytes: Buffer;
}

/** The captured real ClientHellos with the SNI each must parse to. */
export function loadCorpus(): CorpusEntry[] {
  const manifest = JSON.parse(readFileSync(path.join(CORPUS_DIR, 'manifest.json'), 'utf8')) as Array<{
    file: string;
    serverName: string | null;
  }>;
  return manifest.map((m) => ({ ...m, bytes: readFileSync(path.join(CORPUS_DIR, m.file)) }));
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u24(n: number): Buffer {
  const b = Buffer.alloc(3);
  b.writeUIntBE(n, 0, 3);
  return b;
}

export interface HelloSpec {
  serverName?: string;
  sessionId?: Buffer;
  cipherSuites?: number[];
  /** Extensions other than server_name, placed before (and after) it. */
  extensionsBefore?: Array<{ type: number; data: Buffer }>;
  extensionsAfter?: Array<{ type: number; data: Buffer }>;
  /** Omit the extensions block entirely (a bare TLS 1.2 hello). */
  noExtensions?: boolean;
}

export function serverNameExtension(name: string): Buffer {
  const host = Buffer.from(name, 'latin1');
  const entry = Buffer.concat([Buffer.from([0]), u16(host.length), host]);
  const list = Buffer.concat([u16(entry.length), entry]);
  return Buffer.concat([u16(0), u16(list.length), list]);
}

/** The handshake message (type + length + body) of a ClientHello. */
export function buildHelloMessage(spec: HelloSpec): Buffer {
  const sessionId = spec.sessionId ?? Buffer.alloc(32, 7);
  const suites = spec.cipherSuites ?? [0x1301, 0x1302, 0xc02f];
  const parts: Buffer[] = [
    Buffer.from([3, 3]),
    Buffer.alloc(32, 0xab),
    Buffer.from([sessionId.length]),
    sessionId,
    u16(suites.length * 2),
    Buffer.concat(suites.map(u16)),
    Buffer.from([1, 0]),
  ];
  if (!spec.noExtensions) {
    const ext = (e: { type: number; data: Buffer }): Buffer =>
      Buffer.concat([u16(e.type), u16(e.data.length), e.data]);
    const extensions = Buffer.concat([
      ...(spec.extensionsBefore ?? []).map(ext),
      ...(spec.serverName === undefined ? [] : [serverNameExtension(spec.serverName)]),
      ...(spec.extensionsAfter ?? []).map(ext),
    ]);
    parts.push(u16(extensions.length), extensions);
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([1]), u24(body.length), body]);
}

/** Wraps a handshake message in TLS records carrying at most `fragment` bytes each. */
export function frameRecords(message: Buffer, fragment = 16384, version = 0x0301): Buffer {
  const records: Buffer[] = [];
  for (let offset = 0; offset < message.length; offset += fragment) {
    const piece = message.subarray(offset, Math.min(message.length, offset + fragment));
    records.push(Buffer.from([22]), u16(version), u16(piece.length), piece);
  }
  return Buffer.concat(records);
}

/** The handshake message inside a record stream of one or more handshake records. */
export function unframeRecords(stream: Buffer): Buffer {
  const pieces: Buffer[] = [];
  let offset = 0;
  while (offset + 5 <= stream.length) {
    const length = stream.readUInt16BE(offset + 3);
    pieces.push(stream.subarray(offset + 5, offset + 5 + length));
    offset += 5 + length;
  }
  return Buffer.concat(pieces);
}

/** Splits a buffer at the given (sorted, in-range) offsets. */
export function splitAt(bytes: Buffer, offsets: number[]): Buffer[] {
  const cuts = [...new Set(offsets.filter((o) => o > 0 && o < bytes.length))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const cut of cuts) {
    chunks.push(bytes.subarray(start, cut));
    start = cut;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}
