/**
 * Turn a request body (JSON or multi-document YAML) into plain documents.
 * Everything that can go wrong is a MeshError DECODE naming the document and
 * the line:column, because the body usually comes from a file a person wrote.
 * The limits protect the control plane from hostile bodies: deep nesting
 * (stack exhaustion in the walkers downstream), many documents, and YAML
 * alias expansion ("billion laughs").
 */

import { isMap, isPair, isSeq, LineCounter, parseAllDocuments } from 'yaml';
import type { Node as YamlNode } from 'yaml';
import { ErrorCodes, MeshError, isMeshError } from '../errors.js';

/** Deepest nesting of objects/arrays a document may have. */
export const MAX_DEPTH = 64;
/** Most documents one body may carry (after List items are flattened). */
export const MAX_DOCUMENTS = 1000;
/** Most alias dereferences per YAML document. */
export const MAX_ALIAS_COUNT = 100;

const JSON_TYPES = new Set(['application/json']);
const YAML_TYPES = new Set([
  'application/yaml',
  'application/x-yaml',
  'text/yaml',
  'text/x-yaml',
  'application/yml',
]);
const SNIFF_TYPES = new Set(['', 'text/plain', 'application/octet-stream', '*/*']);

interface Position {
  line: number;
  column: number;
}

function decodeError(document: number, pos: Position, what: string, cause?: unknown): MeshError {
  return new MeshError(ErrorCodes.DECODE, `document ${document}, line ${pos.line}:${pos.column}: ${what}`, {
    details: { document, line: pos.line, column: pos.column },
    cause,
  });
}

function positionOf(text: string, offset: number): Position {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}

/**
 * Offset where JSON text first nests deeper than MAX_DEPTH, or -1. Run before
 * JSON.parse so that a hostile body never reaches a recursive walker.
 */
function jsonDepthViolation(text: string): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92)
        i++; // backslash escapes the next char
      else if (c === 34) inString = false;
    } else if (c === 34) {
      inString = true;
    } else if (c === 123 || c === 91) {
      if (++depth > MAX_DEPTH) return i;
    } else if (c === 125 || c === 93) {
      depth--;
    }
  }
  return -1;
}

function depthMessage(): string {
  return `nesting deeper than ${MAX_DEPTH} levels`;
}

/** Depth of a plain value, stopping as soon as it passes MAX_DEPTH. */
function exceedsDepth(value: unknown, depth: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (depth > MAX_DEPTH) return true;
  const children = Array.isArray(value) ? value : Object.values(value);
  for (const child of children) {
    if (exceedsDepth(child, depth + 1)) return true;
  }
  return false;
}

/** First YAML node nested deeper than MAX_DEPTH, for its position. */
function deepYamlNode(node: unknown, depth: number): YamlNode | undefined {
  if (isMap(node) || isSeq(node)) {
    if (depth > MAX_DEPTH) return node;
    for (const item of node.items) {
      if (isPair(item)) {
        const found = deepYamlNode(item.key, depth + 1) ?? deepYamlNode(item.value, depth + 1);
        if (found) return found;
      } else {
        const found = deepYamlNode(item, depth + 1);
        if (found) return found;
      }
    }
  }
  return undefined;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/**
 * Append the resources a decoded document holds: the document itself, the
 * elements of a top-level array, or the items of a Kubernetes `List`.
 */
function collect(out: unknown[], value: unknown, document: number, pos: Position): void {
  if (value === null || value === undefined) return;
  const items = Array.isArray(value) ? value : isList(value) ? value.items : undefined;
  if (items !== undefined) {
    for (const item of items) {
      if (item === null || typeof item !== 'object' || Array.isArray(item)) {
        throw decodeError(document, pos, `list item is ${describe(item)}, expected an object (a resource)`);
      }
      push(out, item, document, pos);
    }
    return;
  }
  if (typeof value !== 'object') {
    throw decodeError(document, pos, `document is ${describe(value)}, expected an object (a resource)`);
  }
  push(out, value, document, pos);
}

function push(out: unknown[], value: unknown, document: number, pos: Position): void {
  if (out.length >= MAX_DOCUMENTS) {
    throw decodeError(document, pos, `more than ${MAX_DOCUMENTS} documents in one body`);
  }
  out.push(value);
}

function isList(value: unknown): value is { items: unknown[] } {
  if (value === null || typeof value !== 'object') return false;
  const kind = (value as { kind?: unknown }).kind;
  const items = (value as { items?: unknown }).items;
  return typeof kind === 'string' && kind.endsWith('List') && Array.isArray(items);
}

function decodeJson(text: string): unknown[] {
  const tooDeep = jsonDepthViolation(text);
  if (tooDeep >= 0) throw decodeError(0, positionOf(text, tooDeep), depthMessage());
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw decodeError(0, jsonErrorPosition(text), `invalid JSON: ${errorMessage(err)}`, err);
  }
  const out: unknown[] = [];
  collect(out, value, 0, { line: 1, column: 1 });
  return out;
}

/**
 * V8's JSON.parse messages carry no position on Node 20, so a small scanner
 * finds the offset of the first syntax error. It only runs on bad input and
 * after the depth check, so its recursion is bounded.
 */
function jsonErrorPosition(text: string): Position {
  return positionOf(text, jsonErrorOffset(text));
}

function jsonErrorOffset(text: string): number {
  const ws = (i: number): number => {
    while (i < text.length && ' \t\n\r'.includes(text.charAt(i))) i++;
    return i;
  };
  const literal = (i: number, word: string): number => {
    if (text.startsWith(word, i)) return i + word.length;
    throw i;
  };
  const string = (i: number): number => {
    if (text.charAt(i) !== '"') throw i;
    for (let j = i + 1; j < text.length; j++) {
      const c = text.charCodeAt(j);
      if (c === 34) return j + 1;
      if (c < 32) throw j;
      if (c === 92) {
        const e = text.charAt(j + 1);
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(j + 2, j + 6))) throw j;
          j += 5;
        } else if ('"\\/bfnrt'.includes(e) && e !== '') j++;
        else throw j;
      }
    }
    throw text.length;
  };
  const number = (i: number): number => {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (m === null || m[0] === '' || m[0] === '-') throw i;
    return i + m[0].length;
  };
  const value = (start: number): number => {
    const i = ws(start);
    const c = text.charAt(i);
    if (c === '{') {
      let j = ws(i + 1);
      if (text.charAt(j) === '}') return j + 1;
      for (;;) {
        j = ws(string(ws(j)));
        if (text.charAt(j) !== ':') throw j;
        j = ws(value(j + 1));
        if (text.charAt(j) === '}') return j + 1;
        if (text.charAt(j) !== ',') throw j;
        j++;
      }
    }
    if (c === '[') {
      let j = ws(i + 1);
      if (text.charAt(j) === ']') return j + 1;
      for (;;) {
        j = ws(value(j));
        if (text.charAt(j) === ']') return j + 1;
        if (text.charAt(j) !== ',') throw j;
        j++;
      }
    }
    if (c === '"') return string(i);
    if (c === 't') return literal(i, 'true');
    if (c === 'f') return literal(i, 'false');
    if (c === 'n') return literal(i, 'null');
    return number(i);
  };
  try {
    const end = ws(value(0));
    return end < text.length ? end : 0;
  } catch (offset) {
    return typeof offset === 'number' ? offset : 0;
  }
}

function errorMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const firstLine = message.split('\n', 1)[0] ?? message;
  return firstLine.replace(/ at line \d+, column \d+:?$/, '');
}

function decodeYaml(text: string): unknown[] {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, merge: true, prettyErrors: false });
  const out: unknown[] = [];
  // parseAllDocuments returns an EmptyStream (an empty array) for no documents.
  const list = Array.isArray(docs) ? docs : [];
  for (let i = 0; i < list.length; i++) {
    const doc = list[i];
    if (doc === undefined) continue;
    const start = doc.contents?.range[0] ?? doc.range[0];
    const startPos = toPosition(lineCounter, start);
    const error = doc.errors[0];
    if (error !== undefined) {
      throw decodeError(i, toPosition(lineCounter, error.pos[0]), errorMessage(error), error);
    }
    const deep = deepYamlNode(doc.contents, 1);
    if (deep !== undefined) {
      throw decodeError(i, toPosition(lineCounter, deep.range?.[0] ?? start), depthMessage());
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (err) {
      throw decodeError(
        i,
        startPos,
        `refused: ${errorMessage(err)} (more than ${MAX_ALIAS_COUNT} aliases)`,
        err,
      );
    }
    // Aliases can nest an anchored subtree deeper than the text shows.
    if (exceedsDepth(value, 1)) throw decodeError(i, startPos, `${depthMessage()} after expanding aliases`);
    collect(out, value, i, startPos);
  }
  return out;
}

function toPosition(lineCounter: LineCounter, offset: number): Position {
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

function mediaType(contentType: string | undefined): string {
  if (contentType === undefined) return '';
  const semi = contentType.indexOf(';');
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/**
 * Decode a body into its documents.
 *
 * - `application/json` (or `+json`): one object, an array of objects, or a
 *   Kubernetes `List` whose `items` are returned.
 * - YAML types: a multi-document stream; empty documents are skipped, a
 *   `List` document contributes its items.
 * - no or a generic content type: JSON when it parses as JSON, else YAML.
 *
 * @throws MeshError DECODE with `details: { document, line, column }` for
 *   malformed input, nesting deeper than 64, more than 1000 documents or an
 *   alias bomb; UNSUPPORTED_MEDIA_TYPE for another content type. Never
 *   anything else.
 */
export function decodeDocuments(text: string, contentType?: string): unknown[] {
  try {
    if (typeof text !== 'string') {
      throw decodeError(0, { line: 1, column: 1 }, `body is ${describe(text)}, expected text`);
    }
    // A UTF-8 byte-order mark is legal in YAML but not in JSON.
    const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
    const media = mediaType(contentType);
    if (JSON_TYPES.has(media) || media.endsWith('+json')) return decodeJson(body);
    if (YAML_TYPES.has(media) || media.endsWith('+yaml')) return decodeYaml(body);
    if (!SNIFF_TYPES.has(media)) {
      throw new MeshError(
        ErrorCodes.UNSUPPORTED_MEDIA_TYPE,
        `unsupported content type "${contentType ?? ''}": send application/json or application/yaml`,
      );
    }
    const first = body.trimStart().charCodeAt(0);
    if (first === 123 || first === 91) {
      try {
        return decodeJson(body);
      } catch (err) {
        // Flow-style YAML also starts with { or [; YAML will say where it breaks.
        if (!isMeshError(err, ErrorCodes.DECODE) || err.message.includes(depthMessage())) throw err;
      }
    }
    return decodeYaml(body);
  } catch (err) {
    if (isMeshError(err)) throw err;
    // The parsers are recursive; a pathological body can exhaust the stack.
    const tooDeep = err instanceof RangeError;
    throw decodeError(
      0,
      { line: 1, column: 1 },
      tooDeep ? `${depthMessage()} (parser stack exhausted)` : `cannot decode: ${errorMessage(err)}`,
      err,
    );
  }
}
