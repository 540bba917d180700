/**
 * The sidecar's node:http responses write their own Date header (proxy/http/date-header.ts): present on every head, the
 * handler's own Date kept, Node's own 417 dated too, and a head that threw
 * on a bad header leaves nothing behind for the local reply that follows.
 */

import { afterEach, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DatedServerResponse } from '../../proxy/http/date-header.js';

const HTTP_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/;
const UPSTREAM_DATE = 'Mon, 01 Jan 2001 00:00:00 GMT';

const servers: http.Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

async function listen(server: http.Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** One HTTP/1.1 request; the raw header lines of the answer. */
function rawHead(port: number, path: string, headers: Record<string, string> = {}): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      res.resume();
      const lines: string[] = [];
      for (let i = 0; i < res.rawHeaders.length; i += 2)
        lines.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
      resolve([`${res.statusCode}`, ...lines]);
    });
    req.on('error', reject);
  });
}

function dates(head: string[]): string[] {
  return head.filter((line) => /^date: /i.test(line)).map((line) => line.slice(6));
}

describe('node:http responses with their own Date', () => {
  it('dates every head once, keeps a given Date, and dates the 417 Node writes itself', async () => {
    const port = await listen(
      http.createServer({ ServerResponse: DatedServerResponse }, (req, res) => {
        if (req.url === '/given') res.writeHead(200, { 'content-type': 'text/plain', Date: UPSTREAM_DATE });
        else if (req.url === '/reason') res.writeHead(201, 'Made', { 'x-a': '1' });
        else if (req.url === '/set') res.setHeader('date', UPSTREAM_DATE);
        res.end('ok');
      }),
    );
    const implicit = await rawHead(port, '/');
    expect(dates(implicit)).toHaveLength(1);
    expect(dates(implicit)[0]).toMatch(HTTP_DATE);
    expect(dates(await rawHead(port, '/given'))).toEqual([UPSTREAM_DATE]);
    expect(dates(await rawHead(port, '/set'))).toEqual([UPSTREAM_DATE]);
    const reason = await rawHead(port, '/reason');
    expect(reason[0]).toBe('201');
    expect(dates(reason)[0]).toMatch(HTTP_DATE);
    const refused = await rawHead(port, '/', { expect: 'something-else' });
    expect(refused[0]).toBe('417');
    expect(dates(refused)[0]).toMatch(HTTP_DATE);
  });

  it('a head refused for a bad header leaves none of its headers to the reply after it', async () => {
    const port = await listen(
      http.createServer({ ServerResponse: DatedServerResponse }, (_req, res) => {
        try {
          res.writeHead(200, { 'set-cookie': 'a=1', 'x-bad': 'line\nbreak' });
        } catch {
          res.writeHead(502, { 'content-type': 'text/plain' });
        }
        res.end('upstream sent invalid headers');
      }),
    );
    const head = await rawHead(port, '/');
    expect(head[0]).toBe('502');
    expect(head.filter((line) => /^set-cookie/i.test(line))).toEqual([]);
    expect(dates(head)).toHaveLength(1);
  });
});
