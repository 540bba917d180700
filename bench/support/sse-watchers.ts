/** Many SSE watch streams on raw sockets, parsed with as little work as possible. */

import { request } from 'node:http';

export interface WatchedEvent {
  type?: string;
  object?: { metadata?: { name?: string; annotations?: Record<string, string> } };
}

export async function openWatchers(
  url: string,
  token: string,
  count: number,
  onEvent: (event: WatchedEvent) => void,
): Promise<{ close(): void }> {
  const parsed = new URL(url);
  const requests: Array<ReturnType<typeof request>> = [];
  await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve, reject) => {
          const req = request(
            {
              host: parsed.hostname,
              port: Number(parsed.port),
              path: parsed.pathname + parsed.search,
              headers: { authorization: `Bearer ${token}` },
            },
            (res) => {
              if (res.statusCode !== 200) {
                reject(new Error(`watch answered ${res.statusCode}`));
                return;
              }
              let buffer = '';
              res.setEncoding('utf8');
              res.on('data', (chunk: string) => {
                buffer += chunk;
                let end: number;
                while ((end = buffer.indexOf('\n\n')) >= 0) {
                  const frame = buffer.slice(0, end);
                  buffer = buffer.slice(end + 2);
                  const dataLine = frame.split('\n').find((line) => line.startsWith('data: '));
                  if (dataLine !== undefined) onEvent(JSON.parse(dataLine.slice(6)) as WatchedEvent);
                }
              });
              res.on('error', () => undefined);
              resolve();
            },
          );
          req.on('error', reject);
          req.end();
          requests.push(req);
        }),
    ),
  );
  return {
    close() {
      for (const req of requests) req.destroy();
    },
  };
}
