/**
 * Long-running commands (global-cp, demo) stop on SIGINT/SIGTERM: the first
 * signal closes gracefully and exits 0; a second one exits at once.
 */

import { ErrorCodes, MeshError } from '../core/errors.js';
import { formatErrorLine } from './exit.js';

/** Run `stop` on the first SIGINT or SIGTERM, then exit (0 if it succeeded). */
export function exitOnSignal(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      process.stderr.write(`${signal} again: exiting without waiting\n`);
      process.exit(1);
    }
    stopping = true;
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(formatErrorLine(err, 'shutdown') + '\n');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/**
 * A listen failure (port taken, address not local) as a MeshError that says what to do.
 * `portFlags` names the command's own port flags for the hint ("--port" unless given).
 */
export function explainListenError(
  err: unknown,
  host: string | undefined,
  port: number | undefined,
  portFlags = '--port',
): unknown {
  const hint = `stop what listens there or pass ${portFlags} N (0 picks a free port)`;
  if (err instanceof MeshError && /already in use/.test(err.message)) {
    return new MeshError(err.code, `${err.message}: ${hint}`, { cause: err });
  }
  const failed = err as { code?: unknown; address?: unknown; port?: unknown };
  const code = failed.code;
  // Node's listen error names the address that failed: with --port 0 that
  // is a component's port, not the flag's 0.
  const where =
    typeof failed.address === 'string' && typeof failed.port === 'number'
      ? `${failed.address}:${failed.port}`
      : `${host ?? '127.0.0.1'}:${port ?? 5681}`;
  if (code === 'EADDRINUSE') {
    return new MeshError(ErrorCodes.CONFIG, `${where} is already in use: ${hint}`, { cause: err });
  }
  if (code === 'EADDRNOTAVAIL' || code === 'EACCES') {
    return new MeshError(ErrorCodes.CONFIG, `cannot listen on ${where}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return err;
}
