/**
 * The lean client's response-head parser (proxy/upstream/upstream-h1-head.ts)
 * reads header fields the way Node's own client does: a relayed response
 * must look the same downstream as it did when node:http read it. Node's
 * parser (a real server answering raw bytes, read with http.get) is the
 * reference; malformed field lines are refused, never guessed at.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { execFile } from 'node:child_process';
import http, { type IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { assertCliBuilt, CLI_MAIN } from '../common/cli.js';
import { H1ProtocolError } from '../../proxy/http/h1-fields.js';
import { parseResponseHead } from '../../proxy/upstream/upstream-h1-head.js';

let server: net.Server;
let port = 0;
/** What the raw server answers on its next connection. */
let nextAnswer = '';

beforeAll(async () => {
  server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => socket.end(nextAnswer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

/** The headers Node's client reads from `head` (a whole response head, no body). */
async function nodeHeaders(head: string): Promise<IncomingHttpHeaders> {
  nextAnswer = head;
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, agent: false }, (res) => {
      res.resume();
      resolve(res.headers);
    });
    req.on('error', reject);
  });
}

const head = (...fields: string[]): string =>
  `HTTP/1.1 200 OK\r\n${fields.join('\r\n')}\r\ncontent-length: 0\r\n\r\n`;

function parseError(text: string): string {
  try {
    parseResponseHead(text, false);
  } catch (err) {
    expect(err).toBeInstanceOf(H1ProtocolError);
    return (err as H1ProtocolError).code;
  }
  throw new Error('parsed a malformed head');
}

describe('response header fields', () => {
  it('lower-cases names, trims spaces and tabs around values, and joins repeats as Node does', async () => {
    const text = head(
      'Content-Type: \t text/plain \t',
      'X-Empty:',
      'Set-Cookie: a=1',
      'set-cookie: b=2',
      'Cookie: c=3',
      'COOKIE: d=4',
      'Vary: accept',
      'vary:  origin',
      'Server: first',
      'Server: second',
    );
    const parsed = parseResponseHead(text, false).headers;
    expect(parsed).toEqual({
      'content-type': 'text/plain',
      'x-empty': '',
      'set-cookie': ['a=1', 'b=2'],
      cookie: 'c=3; d=4',
      vary: 'accept, origin',
      server: 'first',
      'content-length': '0',
    });
    expect(parsed).toEqual(await nodeHeaders(text));
  });

  it('reads any mix of header names, cases and padding as Node’s parser does', async () => {
    const name = fc.constantFrom(
      'Content-Type',
      'x-trace',
      'X-Trace',
      'VARY',
      'Set-Cookie',
      'cookie',
      'Server',
      'Age',
      'X-A',
    );
    const padding = fc.constantFrom('', ' ', '\t', '  \t');
    const value = fc.stringMatching(/^[!-~]([ !-~]{0,12}[!-~])?$/);
    const field = fc.tuple(name, padding, value, padding).map(([n, a, v, b]) => `${n}:${a}${v}${b}`);
    await fc.assert(
      fc.asyncProperty(fc.array(field, { minLength: 1, maxLength: 8 }), async (fields) => {
        const text = head(...fields);
        expect(parseResponseHead(text, false).headers).toEqual(await nodeHeaders(text));
      }),
      { numRuns: 60 },
    );
  });

  it('keeps reading names right once it has seen more distinct spellings than it remembers', () => {
    for (let i = 0; i < 600; i++) {
      const { headers } = parseResponseHead(head(`X-Name-${i}: v${i}`), false);
      expect(headers[`x-name-${i}`]).toBe(`v${i}`);
    }
  });

  it('remembers names without keeping the heads they came in alive', async () => {
    // A cached name sliced from a 60 KB head must not pin the head: 500 of them would hold 30 MB.
    assertCliBuilt();
    const parser = path.resolve(path.dirname(CLI_MAIN), '../proxy/upstream/upstream-h1-head.js');
    const script = `
      const { parseResponseHead } = await import(${JSON.stringify(parser)});
      gc();
      const before = process.memoryUsage().heapUsed;
      for (let i = 0; i < 500; i++)
        parseResponseHead('HTTP/1.1 200 OK\\r\\nX-Long-Header-Name-' + i + ': ' + 'x'.repeat(60000) + '\\r\\n\\r\\n', false);
      gc();
      console.log(process.memoryUsage().heapUsed - before);`;
    const retained = await new Promise<number>((resolve, reject) =>
      execFile(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], (err, out) =>
        err ? reject(err) : resolve(Number(out)),
      ),
    );
    expect(retained).toBeLessThan(2 * 1024 * 1024);
  });

  it.each([
    ['a line without a colon', 'no-colon-here'],
    ['an empty name', ': value'],
    ['a space before the colon', 'X-Bad : value'],
    ['a control character in the value', 'X-Bad: a\u0001b'],
    ['a bare LF inside a field', 'X-Bad: a\nX-Next: b'],
    ['a colon only on the next line', 'X-Bad\r\nX-Next: b'],
  ])('refuses %s', (_what, field) => {
    expect(parseError(head(field))).toBe('INVALID_HEADER');
  });
});
