import { describe, expect, it } from '@jest/globals';
import { SseReader, type SseEvent } from '../../cli/sse-reader.js';

function parse(chunks: Array<string | Buffer>): SseEvent[] {
  const events: SseEvent[] = [];
  const reader = new SseReader((e) => events.push(e));
  for (const chunk of chunks) reader.push(chunk);
  reader.end();
  return events;
}

const STREAM =
  'id: 42\nevent: MODIFIED\ndata: {"type":"MODIFIED"}\n\n: ping\n\nevent: DELETED\ndata: a\ndata: b\n\n';

describe('SseReader', () => {
  it('parses id, event and multi-line data, skipping comments', () => {
    expect(parse([STREAM])).toEqual([
      { id: '42', event: 'MODIFIED', data: '{"type":"MODIFIED"}' },
      { event: 'DELETED', data: 'a\nb' },
    ]);
  });

  it('gives the same events whatever the chunking, even inside a UTF-8 character', () => {
    const text = 'data: café ☕\n\n' + STREAM;
    const bytes = Buffer.from(text, 'utf8');
    const whole = parse([bytes]);
    for (let cut = 1; cut < bytes.length; cut++) {
      expect(parse([bytes.subarray(0, cut), bytes.subarray(cut)])).toEqual(whole);
    }
    expect(parse([...bytes].map((b) => Buffer.from([b])))).toEqual(whole);
    expect(whole[0]).toEqual({ event: 'message', data: 'café ☕' });
  });

  it('accepts CRLF and CR line ends, split across chunks', () => {
    expect(parse(['event: A\r', '\ndata: 1\r\n\r', '\nevent: B\rdata: 2\r\r'])).toEqual([
      { event: 'A', data: '1' },
      { event: 'B', data: '2' },
    ]);
  });

  it('drops an event the stream ended in the middle of', () => {
    expect(parse(['data: complete\n\ndata: partial\n'])).toEqual([{ event: 'message', data: 'complete' }]);
  });
});
