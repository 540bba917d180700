/** Small HTTP helpers for integration tests against real servers. */

export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
  /** Parsed body when it is JSON, else undefined. */
  json: unknown;
}

export interface HttpRequest {
  method?: string;
  token?: string;
  body?: string | Buffer;
  contentType?: string;
}

export async function http(url: string, request: HttpRequest = {}): Promise<HttpAnswer> {
  const headers: Record<string, string> = {};
  if (request.token !== undefined) headers.authorization = `Bearer ${request.token}`;
  if (request.contentType !== undefined) headers['content-type'] = request.contentType;
  const res = await fetch(url, { method: request.method ?? 'GET', headers, body: request.body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export interface SseEvent {
  id?: string;
  event: string;
  data: unknown;
}

/**
 * Opens a server-sent-events stream and collects its events. `next()` waits
 * for the next event with a deadline, so a test fails instead of hanging.
 */
export async function openSse(
  url: string,
  token: string,
): Promise<{ next(timeoutMs?: number): Promise<SseEvent>; close(): void }> {
  const controller = new AbortController();
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
  if (res.status !== 200 || res.body === null) {
    throw new Error(`SSE request answered ${res.status}: ${await res.text()}`);
  }
  const queue: SseEvent[] = [];
  const waiters: Array<(e: SseEvent) => void> = [];
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  void (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event: SseEvent = { event: 'message', data: undefined };
          let isComment = true;
          for (const line of frame.split('\n')) {
            if (line.startsWith(':')) continue;
            isComment = false;
            const colon = line.indexOf(':');
            const field = line.slice(0, colon);
            const value = line.slice(colon + 1).trimStart();
            if (field === 'id') event.id = value;
            else if (field === 'event') event.event = value;
            else if (field === 'data') event.data = JSON.parse(value);
          }
          if (isComment) continue;
          const waiter = waiters.shift();
          if (waiter) waiter(event);
          else queue.push(event);
        }
      }
    } catch {
      // aborted by close()
    }
  })();
  return {
    next(timeoutMs = 5000) {
      const queued = queue.shift();
      if (queued) return Promise.resolve(queued);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no SSE event within ${timeoutMs} ms`)), timeoutMs);
        waiters.push((e) => {
          clearTimeout(timer);
          resolve(e);
        });
      });
    },
    close() {
      controller.abort();
    },
  };
}
