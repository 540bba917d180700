/**
 * HPACK, the header compression of HTTP/2 (RFC 7541): a decoder for the
 * header blocks a peer sends and an encoder for the ones sent to it. Each
 * side of a connection has one of each, and each keeps a dynamic table that
 * must stay in step with the peer's: a block that fails to decode leaves the
 * tables out of step, so every decoding error is a connection error
 * (COMPRESSION_ERROR).
 *
 * Header lists are flat arrays `[name0, value0, name1, value1, ...]` of
 * latin1 strings (one character per byte), which costs one array per block
 * and no object per field.
 */

import { H2Error, H2ErrorCode } from './h2-errors.js';
import { huffmanDecode } from './huffman.js';

/** RFC 7541 Appendix A; index 0 is unused so that the arrays are indexed like the table. */
const STATIC_NAMES: readonly string[] = [
  '',
  ':authority',
  ':method',
  ':method',
  ':path',
  ':path',
  ':scheme',
  ':scheme',
  ':status',
  ':status',
  ':status',
  ':status',
  ':status',
  ':status',
  ':status',
  'accept-charset',
  'accept-encoding',
  'accept-language',
  'accept-ranges',
  'accept',
  'access-control-allow-origin',
  'age',
  'allow',
  'authorization',
  'cache-control',
  'content-disposition',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-range',
  'content-type',
  'cookie',
  'date',
  'etag',
  'expect',
  'expires',
  'from',
  'host',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'last-modified',
  'link',
  'location',
  'max-forwards',
  'proxy-authenticate',
  'proxy-authorization',
  'range',
  'referer',
  'refresh',
  'retry-after',
  'server',
  'set-cookie',
  'strict-transport-security',
  'transfer-encoding',
  'user-agent',
  'vary',
  'via',
  'www-authenticate',
];

/** The static table's values: all empty but these. */
const STATIC_VALUES: readonly string[] = STATIC_NAMES.map((_, index) => {
  switch (index) {
    case 2:
      return 'GET';
    case 3:
      return 'POST';
    case 4:
      return '/';
    case 5:
      return '/index.html';
    case 6:
      return 'http';
    case 7:
      return 'https';
    case 8:
      return '200';
    case 9:
      return '204';
    case 10:
      return '206';
    case 11:
      return '304';
    case 12:
      return '400';
    case 13:
      return '404';
    case 14:
      return '500';
    case 16:
      return 'gzip, deflate';
    default:
      return '';
  }
});

const STATIC_COUNT = 61;

/** RFC 7541 4.1: an entry's size is its name's and value's lengths plus 32. */
const ENTRY_OVERHEAD = 32;

/** The SETTINGS_HEADER_TABLE_SIZE both sides assume until told otherwise (RFC 9113 6.5.2). */
const DEFAULT_TABLE_SIZE = 4096;

/** RFC 7541 5.1 leaves the limit to implementations: 2^31-1 takes at most 5 continuation bytes. */
const MAX_INTEGER = 0x7fffffff;
const MAX_CONTINUATION_BYTES = 5;

function fail(message: string): never {
  throw new H2Error(H2ErrorCode.COMPRESSION_ERROR, message);
}

/**
 * A dynamic table (RFC 7541 2.3.2) as a ring of names and values: inserting
 * and evicting move no entries, and the newest entry has index 1.
 */
class DynamicTable {
  names: string[] = new Array<string>(16).fill('');
  values: string[] = new Array<string>(16).fill('');
  /** Ring position of the oldest entry. */
  oldest = 0;
  count = 0;
  /** Sum of the entries' sizes. */
  size = 0;
  /** The most `size` may be: the last dynamic table size update. */
  maxSize: number;

  constructor(maxSize: number) {
    this.maxSize = maxSize;
  }

  /** Ring position of the entry at dynamic index `i` (1 = newest, at most `count`). */
  position(i: number): number {
    return (this.oldest + this.count - i) & (this.names.length - 1);
  }

  /** Adds an entry of `size` (at most `maxSize`) as index 1, after evicting what it needs room for. */
  add(name: string, value: string, size: number): void {
    this.evictTo(this.maxSize - size);
    if (this.count === this.names.length) this.#grow();
    const p = (this.oldest + this.count) & (this.names.length - 1);
    this.names[p] = name;
    this.values[p] = value;
    this.count++;
    this.size += size;
  }

  /** Evicts the oldest entries until the table's size is at most `target`. */
  evictTo(target: number): void {
    const mask = this.names.length - 1;
    while (this.size > target) {
      const p = this.oldest;
      this.size -= (this.names[p] as string).length + (this.values[p] as string).length + ENTRY_OVERHEAD;
      this.evicted(this.names[p] as string, this.values[p] as string);
      this.names[p] = '';
      this.values[p] = '';
      this.oldest = (p + 1) & mask;
      this.count--;
    }
  }

  /** Called for each entry evicted, oldest first. */
  evicted(_name: string, _value: string): void {}

  #grow(): void {
    const names = new Array<string>(2 * this.names.length).fill('');
    const values = new Array<string>(2 * this.names.length).fill('');
    for (let i = 0; i < this.count; i++) {
      const p = (this.oldest + i) & (this.names.length - 1);
      names[i] = this.names[p] as string;
      values[i] = this.values[p] as string;
    }
    this.names = names;
    this.values = values;
    this.oldest = 0;
  }
}

/**
 * Decodes the header blocks of one connection's peer, in the order they
 * arrive (a block is the HEADERS or PUSH_PROMISE fragment with its
 * CONTINUATIONs, put together).
 */
export class HpackDecoder {
  readonly #table: DynamicTable;
  /** The SETTINGS_HEADER_TABLE_SIZE we advertised: the most a dynamic table size update may ask for. */
  #limit: number;
  /** We lowered the limit below the size the peer's encoder uses: its next block must begin with an update. */
  #updateRequired = false;
  /** Read position in the block being decoded. */
  #pos = 0;

  /**
   * `maxTableSize` is the SETTINGS_HEADER_TABLE_SIZE in force from the
   * start: a connection that advertises other than the default 4096 starts
   * with 4096 and calls `setMaxTableSize` once the peer acknowledges it.
   */
  constructor(maxTableSize = DEFAULT_TABLE_SIZE) {
    this.#table = new DynamicTable(maxTableSize);
    this.#limit = maxTableSize;
  }

  /**
   * Our SETTINGS_HEADER_TABLE_SIZE, to call when the peer acknowledges it.
   * When it is below the size the peer's encoder uses, that encoder's next
   * block must begin with a dynamic table size update within it (RFC 7541
   * 4.2); a block that does not is a COMPRESSION_ERROR.
   */
  setMaxTableSize(n: number): void {
    this.#limit = n;
    this.#updateRequired = n < this.#table.maxSize;
  }

  /**
   * Decodes one complete header block into `[name0, value0, ...]`, or
   * undefined when the list's size (RFC 9113 6.5.2: names' and values'
   * lengths plus 32 per field) exceeds `maxListSize`. The block is decoded
   * to its end either way, so that the dynamic table keeps in step with the
   * peer's. Names are as sent: checking them is the caller's job.
   * Throws a COMPRESSION_ERROR H2Error for a malformed block.
   */
  decode(block: Buffer, maxListSize: number): string[] | undefined {
    const table = this.#table;
    const end = block.length;
    const list: string[] = [];
    let listSize = 0;
    let fields = 0;
    this.#pos = 0;
    while (this.#pos < end) {
      const first = block[this.#pos] as number;
      let name: string;
      let value: string;
      if (first >= 0x80) {
        // 6.1 Indexed Header Field.
        const index = this.#integer(block, 7);
        if (index === 0) fail('indexed header field with index 0');
        if (index <= STATIC_COUNT) {
          name = STATIC_NAMES[index] as string;
          value = STATIC_VALUES[index] as string;
        } else {
          const p = table.position(this.#dynamicIndex(index));
          name = table.names[p] as string;
          value = table.values[p] as string;
        }
      } else if (first >= 0x40) {
        // 6.2.1 Literal Header Field with Incremental Indexing.
        const index = this.#integer(block, 6);
        name = index === 0 ? this.#string(block) : this.#name(index);
        value = this.#string(block);
        const size = name.length + value.length + ENTRY_OVERHEAD;
        // 4.4: an entry larger than the table empties it and is not added.
        if (size > table.maxSize) table.evictTo(0);
        else table.add(name, value, size);
      } else if (first >= 0x20) {
        // 6.3 Dynamic Table Size Update, only before the first field (4.2).
        if (fields > 0) fail('dynamic table size update after a header field');
        const size = this.#integer(block, 5);
        if (size > this.#limit) {
          fail(`dynamic table size update to ${size} exceeds SETTINGS_HEADER_TABLE_SIZE ${this.#limit}`);
        }
        table.maxSize = size;
        table.evictTo(size);
        this.#updateRequired = false;
        continue;
      } else {
        // 6.2.2 Literal Header Field without Indexing (0000) and 6.2.3 Never Indexed (0001).
        const index = this.#integer(block, 4);
        name = index === 0 ? this.#string(block) : this.#name(index);
        value = this.#string(block);
      }
      if (fields++ === 0 && this.#updateRequired) this.#missingUpdate();
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      // Past the limit the fields are still decoded (for the table) but no longer kept.
      if (listSize <= maxListSize) list.push(name, value);
    }
    if (this.#updateRequired) this.#missingUpdate();
    return listSize <= maxListSize ? list : undefined;
  }

  #missingUpdate(): never {
    fail(
      `header block without the dynamic table size update SETTINGS_HEADER_TABLE_SIZE ${this.#limit} requires`,
    );
  }

  /** The dynamic index (1 = newest) for `index` past the static table, checked against the table. */
  #dynamicIndex(index: number): number {
    const i = index - STATIC_COUNT;
    if (i > this.#table.count) {
      fail(
        `index ${index} beyond the static and dynamic tables (${STATIC_COUNT + this.#table.count} entries)`,
      );
    }
    return i;
  }

  /** The name at `index` (not 0). */
  #name(index: number): string {
    if (index <= STATIC_COUNT) return STATIC_NAMES[index] as string;
    return this.#table.names[this.#table.position(this.#dynamicIndex(index))] as string;
  }

  /** 5.1: an integer with an N-bit prefix, at the read position. */
  #integer(block: Buffer, prefixBits: number): number {
    const mask = (1 << prefixBits) - 1;
    let pos = this.#pos;
    let value = (block[pos++] as number) & mask;
    if (value === mask) {
      let scale = 1;
      for (let n = 0; ; n++) {
        if (pos >= block.length) fail('header block truncated inside an integer');
        if (n === MAX_CONTINUATION_BYTES) {
          fail(`integer encoded in more than ${MAX_CONTINUATION_BYTES} continuation bytes`);
        }
        const byte = block[pos++] as number;
        value += (byte & 0x7f) * scale;
        if (value > MAX_INTEGER) fail('integer larger than 2^31-1');
        if (byte < 0x80) break;
        scale *= 128;
      }
    }
    this.#pos = pos;
    return value;
  }

  /** 5.2: a string literal, raw or Huffman-coded, at the read position. */
  #string(block: Buffer): string {
    if (this.#pos >= block.length) fail('header block truncated before a string literal');
    const huffman = (block[this.#pos] as number) >= 0x80;
    const length = this.#integer(block, 7);
    const start = this.#pos;
    const end = start + length;
    if (end > block.length) {
      fail(`string literal of ${length} bytes truncated: the header block has ${block.length - start} left`);
    }
    this.#pos = end;
    if (length === 0) return '';
    return huffman ? huffmanDecode(block, start, end) : block.toString('latin1', start, end);
  }
}

/** How the encoder represents a field whose exact name and value are not in the static table. */
const INDEX = 0;
const WITHOUT_INDEXING = 1;
const NEVER_INDEXED = 2;

/**
 * Fields not added to the dynamic table. Values that change on every
 * request or response would only evict entries that are reused; credentials
 * go as "never indexed" (RFC 7541 7.1.3), which also tells intermediaries
 * that re-encode them not to index them, so that a compression oracle cannot
 * guess them byte by byte (CRIME). Also `x-b3-*`, by prefix.
 */
const NOT_INDEXED: readonly (readonly [string, number])[] = [
  [':path', WITHOUT_INDEXING],
  ['content-length', WITHOUT_INDEXING],
  ['x-request-id', WITHOUT_INDEXING],
  ['traceparent', WITHOUT_INDEXING],
  ['tracestate', WITHOUT_INDEXING],
  ['b3', WITHOUT_INDEXING],
  ['date', WITHOUT_INDEXING],
  ['etag', WITHOUT_INDEXING],
  ['last-modified', WITHOUT_INDEXING],
  ['age', WITHOUT_INDEXING],
  ['if-modified-since', WITHOUT_INDEXING],
  ['authorization', NEVER_INDEXED],
  ['proxy-authorization', NEVER_INDEXED],
  ['cookie', NEVER_INDEXED],
  ['set-cookie', NEVER_INDEXED],
];
const NOT_INDEXED_PREFIX = 'x-b3-';

/** What the encoder knows of a name in the static table or NOT_INDEXED: one lookup per field finds it all. */
interface KnownName {
  /** The name's first index in the static table, or 0. */
  index: number;
  /** The static entries of the name by value, for the names with values there; otherwise `index` has value ''. */
  values: Map<string, number> | undefined;
  policy: number;
}

const KNOWN_NAMES = new Map<string, KnownName>();
for (let index = 1; index <= STATIC_COUNT; index++) {
  const name = STATIC_NAMES[index] as string;
  const value = STATIC_VALUES[index] as string;
  let known = KNOWN_NAMES.get(name);
  if (known === undefined) {
    known = { index, values: undefined, policy: INDEX };
    KNOWN_NAMES.set(name, known);
  }
  if (value !== '') (known.values ??= new Map()).set(value, index);
}
for (const [name, policy] of NOT_INDEXED) {
  const known = KNOWN_NAMES.get(name);
  if (known === undefined) KNOWN_NAMES.set(name, { index: 0, values: undefined, policy });
  else known.policy = policy;
}

/** The encoder's dynamic table, which also finds an entry by name and value. */
class EncoderTable extends DynamicTable {
  /** name -> value -> the entry's insertion number. Two levels, so that a lookup makes no string. */
  readonly byName = new Map<string, Map<string, number>>();
  /** Entries ever added: the newest entry's insertion number. */
  added = 0;

  /** The HPACK index (past the static table) of the entry with this name and value, or 0. */
  find(name: string, value: string): number {
    const id = this.byName.get(name)?.get(value);
    return id === undefined ? 0 : STATIC_COUNT + this.added - id + 1;
  }

  override add(name: string, value: string, size: number): void {
    super.add(name, value, size);
    this.added++;
    let values = this.byName.get(name);
    if (values === undefined) {
      values = new Map();
      this.byName.set(name, values);
    }
    values.set(value, this.added);
  }

  override evicted(name: string, value: string): void {
    // The encoder never adds an entry it finds, so the one evicted is the one mapped.
    const values = this.byName.get(name);
    if (values === undefined) return;
    values.delete(value);
    if (values.size === 0) this.byName.delete(name);
  }
}

/**
 * Blocks are written into a slab shared by all encoders (`encode` runs to
 * completion) and handed out as views of it, as Node's Buffer pool does: no
 * copy, and no allocation but the view. A slab stays in memory while a block
 * in it does, which is while the block is being written to its socket.
 */
const SLAB_SIZE = 8192;
let out = Buffer.allocUnsafeSlow(SLAB_SIZE);
/** Where the block being written starts in `out`. */
let blockStart = 0;
/** Where the next byte goes in `out`. */
let pos = 0;

/** Makes room for `n` more bytes at `pos`: a new slab, with the block so far, if this one is full. */
function reserve(n: number): void {
  if (pos + n <= out.length) return;
  const written = pos - blockStart;
  const slab = Buffer.allocUnsafeSlow(Math.max(SLAB_SIZE, 2 * (written + n)));
  out.copy(slab, 0, blockStart, pos);
  out = slab;
  blockStart = 0;
  pos = written;
}

/** 5.1: `value` with an N-bit prefix, the first byte's other bits from `first`. */
function writeInteger(first: number, prefixBits: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out[pos++] = first | value;
    return;
  }
  out[pos++] = first | max;
  value -= max;
  while (value >= 0x80) {
    out[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[pos++] = value;
}

/** 5.2: `s` as a raw (not Huffman-coded) string literal. */
function writeString(s: string): void {
  writeInteger(0, 7, s.length);
  // Below 16 characters a loop beats the call into C++ (~50 ns, measured on Node 20).
  if (s.length >= 16) {
    pos += out.write(s, pos, 'latin1');
    return;
  }
  for (let i = 0; i < s.length; i++) out[pos++] = s.charCodeAt(i);
}

/** 6.2: a literal field, its name by static index when there is one (`nameIndex` not 0). */
function writeLiteral(
  first: number,
  prefixBits: number,
  nameIndex: number,
  name: string,
  value: string,
): void {
  if (nameIndex !== 0) {
    writeInteger(first, prefixBits, nameIndex);
  } else {
    out[pos++] = first;
    writeString(name);
  }
  writeString(value);
}

/** At most 3 integers of 6 bytes each, besides the name and value (when a field is written). */
const FIELD_OVERHEAD = 18;

/**
 * Encodes the header blocks sent to one connection's peer, in the order
 * they are sent.
 *
 * It spends as little CPU and garbage as it can rather than saving every
 * byte: it writes no Huffman-coded strings, since between sidecars on
 * loopback or a LAN the ~20% Huffman saves of a string is worth less than
 * the time to code it (and the peer's to decode it); the dynamic table
 * makes the headers that repeat on every request one or two bytes from the
 * second request on, which saves far more.
 */
export class HpackEncoder {
  readonly #table: EncoderTable;
  /** The most this encoder lets its table take, whatever the peer allows. */
  readonly #cap: number;
  /** The smallest table size since the last block, if it changed: -1 if it did not (RFC 7541 4.2). */
  #smallestChange = -1;

  /**
   * `maxTableSize` bounds the table whatever the peer's
   * SETTINGS_HEADER_TABLE_SIZE, to bound the memory a connection takes.
   */
  constructor(maxTableSize = DEFAULT_TABLE_SIZE) {
    this.#cap = maxTableSize;
    this.#table = new EncoderTable(DEFAULT_TABLE_SIZE);
    // The peer's decoder starts at the default: a smaller cap needs an update in the first block.
    this.setMaxTableSize(DEFAULT_TABLE_SIZE);
  }

  /**
   * The peer's SETTINGS_HEADER_TABLE_SIZE. When the table size this encoder
   * uses changes (it is the smaller of this and the constructor's bound),
   * the next block begins with a dynamic table size update; entries that no
   * longer fit are evicted now, as the peer's decoder will when it reads it.
   */
  setMaxTableSize(n: number): void {
    const size = Math.min(n, this.#cap);
    if (size === this.#table.maxSize) return;
    this.#smallestChange = this.#smallestChange < 0 ? size : Math.min(this.#smallestChange, size);
    this.#table.maxSize = size;
    this.#table.evictTo(size);
  }

  /**
   * Encodes the fields `[name0, value0, ...]` (names lowercase, latin1
   * strings) as one header block. A field is indexed when the static or
   * dynamic table has it; otherwise it is added to the dynamic table unless
   * its name is one of NOT_INDEXED's or the entry would take more than a
   * quarter of the table. The block is a view of a shared slab: write it,
   * copy it or drop it, but do not keep it for long.
   */
  encode(headers: string[]): Buffer {
    if (headers.length % 2 !== 0) throw new RangeError('header list has a name without a value');
    const table = this.#table;
    blockStart = pos;
    if (this.#smallestChange >= 0) {
      // 4.2: the smallest size the table had since the last block, then the size it has now.
      reserve(2 * 6);
      if (this.#smallestChange < table.maxSize) writeInteger(0x20, 5, this.#smallestChange);
      writeInteger(0x20, 5, table.maxSize);
      this.#smallestChange = -1;
    }
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string;
      const value = headers[i + 1] as string;
      reserve(name.length + value.length + FIELD_OVERHEAD);
      const known = KNOWN_NAMES.get(name);
      let nameIndex = 0;
      let policy = INDEX;
      if (known !== undefined) {
        nameIndex = known.index;
        if (nameIndex !== 0) {
          const index = known.values === undefined ? (value === '' ? nameIndex : 0) : known.values.get(value);
          if (index !== undefined && index !== 0) {
            writeInteger(0x80, 7, index);
            continue;
          }
        }
        policy = known.policy;
      } else if (name.startsWith(NOT_INDEXED_PREFIX)) {
        policy = WITHOUT_INDEXING;
      }
      if (policy === INDEX) {
        const index = table.find(name, value);
        if (index !== 0) {
          writeInteger(0x80, 7, index);
          continue;
        }
        const size = name.length + value.length + ENTRY_OVERHEAD;
        if (size <= table.maxSize >>> 2) {
          writeLiteral(0x40, 6, nameIndex, name, value);
          table.add(name, value, size);
          continue;
        }
      }
      writeLiteral(policy === NEVER_INDEXED ? 0x10 : 0x00, 4, nameIndex, name, value);
    }
    const block = out.subarray(blockStart, pos);
    // The next block starts on an 8-byte boundary, as in Node's pool.
    pos = Math.min((pos + 7) & ~7, out.length);
    return block;
  }
}
