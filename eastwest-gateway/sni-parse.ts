/**
 * Incremental TLS ClientHello reader: finds the SNI of a connection from the
 * bytes received so far, without decrypting anything (there is nothing to
 * decrypt yet: the ClientHello is the one plaintext message the gateway
 * routes on).
 *
 * The reader is fed TCP chunks as they arrive. It copes with a ClientHello
 * split across TCP segments, with a handshake message fragmented over several
 * TLS records (RFC 8446 §5.1 allows it), and with extra bytes after the hello
 * in the same chunk (0-RTT data, a compatibility ChangeCipherSpec). Each
 * pushed byte is looked at a bounded number of times, so feeding a hello one
 * byte at a time stays linear.
 *
 * Boundary: `push` never throws and never reads outside the chunks it was
 * given (every length field is checked against what is there before use);
 * every failure is a result with a reason that the gateway counts in a
 * metric. A fuzz test (fast-check) holds the reader to that.
 */

/** Why a byte stream is not a ClientHello the gateway can route. */
export type HelloErrorReason =
  /** The first bytes are not a TLS handshake record (plain HTTP, SSLv2, a port scan). */
  | 'not-tls'
  /** A TLS record or the ClientHello inside it breaks the encoding rules. */
  | 'malformed'
  /** The ClientHello (or the records carrying it) exceeds the configured bound. */
  | 'too-large';

export type HelloResult =
  | { readonly status: 'need-more' }
  | {
      readonly status: 'ok';
      /** The host_name of the server_name extension, lower-cased; undefined when the hello has none. */
      readonly serverName: string | undefined;
      /** Bytes of the stream taken by the records that carried the ClientHello. */
      readonly consumed: number;
    }
  | { readonly status: 'error'; readonly reason: HelloErrorReason; readonly detail: string };

export interface ClientHelloReaderOptions {
  /**
   * Largest ClientHello handshake message accepted (4-byte header included).
   * Default 16 KiB: browsers with post-quantum key shares send ~1.8 KiB.
   * The records carrying it may take at most twice this on the wire.
   */
  maxHelloBytes?: number;
}

export const DEFAULT_MAX_HELLO_BYTES = 16 * 1024;

const RECORD_HEADER_BYTES = 5;
const CONTENT_TYPE_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
/** RFC 8446 §5.1: a TLSPlaintext fragment is at most 2^14 bytes. */
const MAX_RECORD_PAYLOAD = 16384;
const EXTENSION_SERVER_NAME = 0;
const NAME_TYPE_HOST_NAME = 0;
const MAX_HOST_NAME = 255;
const NEED_MORE: HelloResult = Object.freeze({ status: 'need-more' });

/**
 * Host-name bytes accepted in an SNI: letters, digits, `-`, `.` and `_` (the
 * mesh SNI's "any subset" label). Upper-case letters map to lower case; 0
 * marks a byte that makes the name malformed.
 */
const HOST_CHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f) {
    HOST_CHAR[c] = c;
  } else if (c >= 0x41 && c <= 0x5a) {
    HOST_CHAR[c] = c + 0x20;
  }
}

function fail(reason: HelloErrorReason, detail: string): HelloResult {
  return { status: 'error', reason, detail };
}

/**
 * Reads one connection's ClientHello from the chunks pushed into it. Once a
 * result other than `need-more` is returned, it sticks: later pushes return
 * the same result (and keep the chunks, so the caller can forward them all).
 */
export class ClientHelloReader {
  private readonly maxHelloBytes: number;
  private readonly maxWireBytes: number;
  private readonly received: Buffer[] = [];
  private total = 0;
  /** Stream offset of the next record header, and where it lies in `received`. */
  private recordStart = 0;
  private cursorChunk = 0;
  private cursorOffset = 0;
  /** The handshake message assembled from record fragments: 4-byte header first, then the whole message. */
  private readonly head = Buffer.alloc(4);
  private message: Buffer | undefined;
  private filled = 0;
  private result: HelloResult = NEED_MORE;

  constructor(options: ClientHelloReaderOptions = {}) {
    const max = options.maxHelloBytes ?? DEFAULT_MAX_HELLO_BYTES;
    this.maxHelloBytes = Number.isSafeInteger(max) && max >= 64 ? max : DEFAULT_MAX_HELLO_BYTES;
    this.maxWireBytes = 2 * this.maxHelloBytes + RECORD_HEADER_BYTES;
  }

  /** Every chunk pushed so far, in order: what the gateway forwards upstream once routed. */
  get chunks(): readonly Buffer[] {
    return this.received;
  }

  /** Bytes pushed so far. */
  get bufferedBytes(): number {
    return this.total;
  }

  /** Adds a received chunk and says whether the ClientHello is complete. Never throws. */
  push(chunk: Buffer): HelloResult {
    if (this.result.status !== 'need-more') {
      this.received.push(chunk);
      this.total += chunk.length;
      return this.result;
    }
    if (chunk.length === 0) return this.result;
    this.received.push(chunk);
    this.total += chunk.length;
    try {
      this.result = this.advance();
    } catch (err) {
      // Unreachable by construction; the boundary promise is "never throws".
      this.result = fail('malformed', `internal parser error: ${(err as Error).message}`);
    }
    return this.result;
  }

  private advance(): HelloResult {
    for (;;) {
      const available = this.total - this.recordStart;
      if (this.recordStart === 0) {
        // Refuse non-TLS traffic on its first byte, before waiting for a whole header.
        const first = this.byteAt(0);
        if (first !== CONTENT_TYPE_HANDSHAKE) {
          return fail(
            'not-tls',
            `first byte 0x${first.toString(16).padStart(2, '0')} is not a TLS handshake`,
          );
        }
        if (available >= 2 && this.byteAt(1) !== 3) return fail('not-tls', 'record version is not TLS 3.x');
      }
      if (available < RECORD_HEADER_BYTES) return this.needMore();
      const type = this.byteAt(0);
      const major = this.byteAt(1);
      const length = (this.byteAt(3) << 8) | this.byteAt(4);
      if (type !== CONTENT_TYPE_HANDSHAKE) {
        return fail('malformed', `record of content type ${type} inside the ClientHello`);
      }
      if (major !== 3) return fail('malformed', 'record version is not TLS 3.x');
      if (length === 0 || length > MAX_RECORD_PAYLOAD) {
        return fail('malformed', `record length ${length} outside 1..${MAX_RECORD_PAYLOAD}`);
      }
      if (available < RECORD_HEADER_BYTES + length) return this.needMore();
      // Fast path: the whole message in the first record of one chunk, parsed in place.
      const fragment = this.takeRecord(length);
      this.recordStart += RECORD_HEADER_BYTES + length;
      if (this.filled === 0 && fragment.length >= 4) {
        const messageLength = (fragment[1] ?? 0) * 65536 + (fragment[2] ?? 0) * 256 + (fragment[3] ?? 0);
        if (fragment[0] !== HANDSHAKE_CLIENT_HELLO) return this.notClientHello(fragment[0] ?? 0);
        if (messageLength + 4 > this.maxHelloBytes) return this.tooLarge(messageLength + 4);
        if (messageLength + 4 <= fragment.length) {
          return parseClientHelloBody(fragment, 4, 4 + messageLength, this.recordStart);
        }
      }
      const done = this.append(fragment);
      if (done !== undefined) return done;
    }
  }

  private needMore(): HelloResult {
    if (this.total > this.maxWireBytes) {
      return fail('too-large', `no complete ClientHello within ${this.maxWireBytes} bytes`);
    }
    return NEED_MORE;
  }

  private notClientHello(type: number): HelloResult {
    return fail('malformed', `first handshake message is of type ${type}, not ClientHello`);
  }

  private tooLarge(size: number): HelloResult {
    return fail('too-large', `ClientHello of ${size} bytes exceeds the limit of ${this.maxHelloBytes}`);
  }

  /** Appends a record fragment to the handshake message; a result once the message is complete. */
  private append(fragment: Buffer): HelloResult | undefined {
    let i = 0;
    while (i < fragment.length) {
      const message = this.message;
      if (message === undefined) {
        this.head[this.filled++] = fragment[i++] ?? 0;
        if (this.filled < 4) continue;
        if (this.head[0] !== HANDSHAKE_CLIENT_HELLO) return this.notClientHello(this.head[0] ?? 0);
        const size = 4 + (this.head[1] ?? 0) * 65536 + (this.head[2] ?? 0) * 256 + (this.head[3] ?? 0);
        if (size > this.maxHelloBytes) return this.tooLarge(size);
        this.message = Buffer.allocUnsafe(size);
        this.head.copy(this.message, 0, 0, 4);
        continue;
      }
      const n = Math.min(message.length - this.filled, fragment.length - i);
      fragment.copy(message, this.filled, i, i + n);
      this.filled += n;
      i += n;
      if (this.filled === message.length) {
        // Bytes after the hello in the same record would be a second handshake message: not ours to judge.
        return parseClientHelloBody(message, 4, message.length, this.recordStart);
      }
    }
    if (this.message !== undefined && this.filled === this.message.length) {
      return parseClientHelloBody(this.message, 4, this.message.length, this.recordStart);
    }
    return undefined;
  }

  /** Byte at `offset` past the current record start; the caller has checked it was received. */
  private byteAt(offset: number): number {
    let index = this.cursorChunk;
    let at = this.cursorOffset + offset;
    for (;;) {
      const chunk = this.received[index];
      if (chunk === undefined) return 0;
      if (at < chunk.length) return chunk[at] ?? 0;
      at -= chunk.length;
      index++;
    }
  }

  /** The current record's payload (a view when it lies in one chunk, else a copy); moves the cursor past it. */
  private takeRecord(length: number): Buffer {
    this.skip(RECORD_HEADER_BYTES);
    const chunk = this.received[this.cursorChunk];
    if (chunk !== undefined && this.cursorOffset + length <= chunk.length) {
      const view = chunk.subarray(this.cursorOffset, this.cursorOffset + length);
      this.skip(length);
      return view;
    }
    const copy = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const current = this.received[this.cursorChunk];
      if (current === undefined) break;
      const n = Math.min(length - filled, current.length - this.cursorOffset);
      current.copy(copy, filled, this.cursorOffset, this.cursorOffset + n);
      filled += n;
      this.skip(n);
    }
    return copy;
  }

  private skip(n: number): void {
    let left = n;
    while (left > 0) {
      const chunk = this.received[this.cursorChunk];
      if (chunk === undefined) return;
      const step = Math.min(left, chunk.length - this.cursorOffset);
      left -= step;
      this.cursorOffset += step;
      if (this.cursorOffset === chunk.length) {
        this.cursorChunk++;
        this.cursorOffset = 0;
      }
    }
  }
}

/**
 * Parses a ClientHello body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) in
 * `buf[start, end)` and extracts the server_name extension (RFC 6066 §3).
 * `consumed` is passed through into the result.
 */
function parseClientHelloBody(buf: Buffer, start: number, end: number, consumed: number): HelloResult {
  let p = start;
  // legacy_version (2) + random (32)
  if (end - p < 35) return fail('malformed', 'ClientHello shorter than its fixed fields');
  if (buf[p] !== 3) return fail('malformed', 'ClientHello version is not TLS 3.x');
  p += 34;
  const sessionIdLength = buf[p++] ?? 0;
  if (sessionIdLength > 32) return fail('malformed', `session id of ${sessionIdLength} bytes (max 32)`);
  p += sessionIdLength;
  if (end - p < 2) return fail('malformed', 'ClientHello truncated before cipher_suites');
  const suitesLength = ((buf[p] ?? 0) << 8) | (buf[p + 1] ?? 0);
  p += 2;
  if (suitesLength < 2 || suitesLength % 2 !== 0) {
    return fail('malformed', `cipher_suites length ${suitesLength} is not a positive even number`);
  }
  if (end - p < suitesLength + 1) return fail('malformed', 'ClientHello truncated in cipher_suites');
  p += suitesLength;
  const compressionLength = buf[p++] ?? 0;
  if (compressionLength < 1) return fail('malformed', 'no compression method');
  if (end - p < compressionLength) return fail('malformed', 'ClientHello truncated in compression_methods');
  p += compressionLength;
  // A hello without extensions is legal TLS 1.2 and has no SNI.
  if (p === end) return { status: 'ok', serverName: undefined, consumed };
  if (end - p < 2) return fail('malformed', 'ClientHello truncated in the extensions length');
  const extensionsLength = ((buf[p] ?? 0) << 8) | (buf[p + 1] ?? 0);
  p += 2;
  if (p + extensionsLength !== end) {
    return fail('malformed', 'extensions length does not match the ClientHello length');
  }
  let serverName: string | undefined;
  let sawServerName = false;
  while (p < end) {
    if (end - p < 4) return fail('malformed', 'truncated extension header');
    const type = ((buf[p] ?? 0) << 8) | (buf[p + 1] ?? 0);
    const length = ((buf[p + 2] ?? 0) << 8) | (buf[p + 3] ?? 0);
    p += 4;
    if (end - p < length) return fail('malformed', `extension ${type} overruns the ClientHello`);
    if (type === EXTENSION_SERVER_NAME) {
      if (sawServerName) return fail('malformed', 'two server_name extensions');
      sawServerName = true;
      const name = readServerName(buf, p, p + length);
      if (typeof name !== 'string') return name;
      serverName = name;
    }
    p += length;
  }
  return { status: 'ok', serverName, consumed };
}

/** The host_name of a server_name extension body `buf[start, end)`, or the failure. */
function readServerName(buf: Buffer, start: number, end: number): string | HelloResult {
  if (end - start < 2) return fail('malformed', 'server_name extension without a name list');
  const listLength = ((buf[start] ?? 0) << 8) | (buf[start + 1] ?? 0);
  if (listLength !== end - start - 2 || listLength === 0) {
    return fail('malformed', 'server_name list length does not match its extension');
  }
  let p = start + 2;
  let hostName: string | undefined;
  while (p < end) {
    if (end - p < 3) return fail('malformed', 'truncated server_name entry');
    const nameType = buf[p] ?? 0;
    const length = ((buf[p + 1] ?? 0) << 8) | (buf[p + 2] ?? 0);
    p += 3;
    if (end - p < length) return fail('malformed', 'server_name entry overruns its list');
    if (nameType === NAME_TYPE_HOST_NAME) {
      if (hostName !== undefined) return fail('malformed', 'two host_name entries in server_name');
      if (length === 0 || length > MAX_HOST_NAME) {
        return fail('malformed', `host_name of ${length} bytes (want 1..${MAX_HOST_NAME})`);
      }
      let upper = false;
      for (let i = p; i < p + length; i++) {
        const byte = buf[i] ?? 0;
        const c = HOST_CHAR[byte] ?? 0;
        if (c === 0) return fail('malformed', 'host_name holds a byte that is not a DNS name character');
        if (c !== byte) upper = true;
      }
      // SNI is case-insensitive (RFC 6066); the routing table is keyed in lower case.
      const name = buf.toString('latin1', p, p + length);
      hostName = upper ? name.toLowerCase() : name;
    }
    p += length;
  }
  if (hostName === undefined) return fail('malformed', 'server_name extension without a host_name');
  return hostName;
}

/** One-shot convenience: the result of reading `bytes` as the start of a stream. */
export function readClientHello(bytes: Buffer, options: ClientHelloReaderOptions = {}): HelloResult {
  return new ClientHelloReader(options).push(bytes);
}
