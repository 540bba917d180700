/** The demo's files: the ready file (written atomically) and the component log. */

import { createWriteStream, promises as fs, type WriteStream } from 'node:fs';
import path from 'node:path';
import { setLogSink } from '../../core/log.js';

/** Write JSON to `file` atomically: a reader sees the old file, no file, or the whole new one. */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(value, null, 2) + '\n');
  await fs.rename(tmp, file);
}

/**
 * Send component logs to `logFile`; warnings and errors are echoed to
 * stderr (the user must see them). Returns a function that restores stderr
 * logging and flushes the file.
 */
export function redirectLogs(logFile: string): () => Promise<void> {
  const stream: WriteStream = createWriteStream(logFile, { flags: 'a' });
  setLogSink((line) => {
    stream.write(line + '\n');
    if (/"level":"(warn|error)"/.test(line)) process.stderr.write(line + '\n');
  });
  return async () => {
    setLogSink((line) => process.stderr.write(line + '\n'));
    await new Promise<void>((resolve) => stream.end(resolve));
  };
}
