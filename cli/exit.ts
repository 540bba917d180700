/**
 * How the CLI fails: exactly one line `error: <message> (<code>)` on stderr and
 * a non-zero exit status. A stack trace only when MESHFED_DEBUG is set, since
 * users report the line, and developers ask for the trace.
 */

import { ErrorCodes, MeshError, type ErrorCode } from '../core/errors.js';

/** Exit status of every failed command. */
export const EXIT_FAILURE = 1;

const knownCodes = new Set<string>(Object.values(ErrorCodes));

/** True if `code` is one of core/errors.ts' MESHFED_ERR_* codes. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && knownCodes.has(code);
}

/**
 * Commander's usage errors, told by their documented `commander.*` codes
 * rather than by class, so that this module (loaded by the lean sidecar
 * entry too) does not load commander.
 */
function isCommanderError(err: unknown): err is Error {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && typeof code === 'string' && code.startsWith('commander.');
}

/**
 * Turn anything thrown into a MeshError. Commander's own usage errors become
 * INVALID_ARGUMENT without their `error: ` prefix; anything else is INTERNAL,
 * because an unexpected exception in the CLI is a bug.
 */
export function toMeshError(err: unknown): MeshError {
  if (err instanceof MeshError) return err;
  if (isCommanderError(err)) {
    return new MeshError(ErrorCodes.INVALID_ARGUMENT, err.message.replace(/^error:\s*/i, ''), { cause: err });
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    if (isErrorCode(code)) return new MeshError(code, err.message, { cause: err });
    return new MeshError(ErrorCodes.INTERNAL, err.message, { cause: err });
  }
  return new MeshError(ErrorCodes.INTERNAL, String(err));
}

/**
 * The one line printed for an error, without a trailing newline. The field
 * path is added when the server named one and the message does not already
 * start with it.
 */
export function formatErrorLine(err: unknown, context?: string): string {
  const meshErr = toMeshError(err);
  let message = meshErr.message.replace(/\s*\n\s*/g, ' ').trim();
  if (meshErr.field && !message.includes(meshErr.field)) message = `${meshErr.field}: ${message}`;
  if (context) message = `${context}: ${message}`;
  return `error: ${message} (${meshErr.code})`;
}

/** Print the one-line error (and, with MESHFED_DEBUG, the stack) and exit. */
export function failAndExit(err: unknown, context?: string): never {
  process.stderr.write(formatErrorLine(err, context) + '\n');
  if (process.env.MESHFED_DEBUG) {
    const stack = err instanceof Error ? err.stack : undefined;
    if (stack) process.stderr.write(stack + '\n');
    const cause = err instanceof Error ? err.cause : undefined;
    if (cause instanceof Error && cause.stack) process.stderr.write(`caused by: ${cause.stack}\n`);
  }
  process.exit(EXIT_FAILURE);
}
