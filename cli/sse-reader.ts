/**
 * A small server-sent-events parser (the subset of the WHATWG event-stream
 * format the watch API uses: `id`, `event`, `data`, comments). Bytes arrive
 * in arbitrary chunks; events are emitted when their blank line arrives.
 */

import { StringDecoder } from 'node:string_decoder';

export interface SseEvent {
  /** `event:` field; `message` when the server sent none. */
  event: string;
  /** `data:` lines joined with '\n'. */
  data: string;
  /** `id:` field of this event, if any. */
  id?: string;
}

export class SseReader {
  private readonly decoder = new StringDecoder('utf8');
  private buffer = '';
  private eventName = '';
  private dataLines: string[] = [];
  private id: string | undefined;
  private sawField = false;

  /** @param onEvent called once per complete event, in stream order. */
  constructor(private readonly onEvent: (event: SseEvent) => void) {}

  /** Feed a chunk of the response body. */
  push(chunk: Buffer | string): void {
    this.buffer += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    // A lone '\r' at the end may be the first half of '\r\n': keep it for the next chunk.
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      if (match[0] === '\r' && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line);
    }
  }

  /** The stream ended: an event without its terminating blank line is dropped, as the spec says. */
  end(): void {
    this.buffer += this.decoder.end();
    // A '\r' held back at the end of the last chunk was a complete line end after all.
    if (this.buffer.endsWith('\r')) this.push('\n');
    this.buffer = '';
    this.reset();
  }

  private line(line: string): void {
    if (line === '') {
      if (this.sawField && this.dataLines.length > 0) {
        this.onEvent({
          event: this.eventName || 'message',
          data: this.dataLines.join('\n'),
          ...(this.id === undefined ? {} : { id: this.id }),
        });
      }
      this.reset();
      return;
    }
    if (line.startsWith(':')) return; // comment (keep-alive ping)
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    this.sawField = true;
    switch (field) {
      case 'event':
        this.eventName = value;
        break;
      case 'data':
        this.dataLines.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.id = value;
        break;
      default:
        // `retry` and unknown fields do not matter to a CLI.
        break;
    }
  }

  private reset(): void {
    this.eventName = '';
    this.dataLines = [];
    this.id = undefined;
    this.sawField = false;
  }
}
