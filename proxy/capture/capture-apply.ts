/**
 * Installs the capture rules: `iptables-restore --noflush` with the script
 * on stdin (one atomic commit of the nat table, other tables untouched), or
 * with `dryRun` just hands the script back for printing.
 */

import { spawn } from 'node:child_process';

import { ErrorCodes, MeshError } from '../../core/errors.js';
import { buildCaptureRules, type CaptureOptions } from './capture-rules.js';

export interface ApplyCaptureOptions {
  /** Print instead of install. */
  dryRun?: boolean;
  /** The restore binary. Default `iptables-restore` (from PATH). */
  iptablesRestore?: string;
  /** Extra arguments before `--noflush` (e.g. `--test` to check without committing). */
  extraArgs?: readonly string[];
}

export interface CaptureResult {
  /** The script that was (or, dry run, would be) installed. */
  script: string;
  applied: boolean;
}

/** Runs `command args` with `input` on stdin; resolves on exit 0, else a MeshError with its stderr. */
export function runWithStdin(command: string, args: readonly string[], input: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const child = spawn(command, [...args], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 8192) stderr += chunk;
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(
        new MeshError(
          ErrorCodes.UNAVAILABLE,
          err.code === 'ENOENT'
            ? `${command} not found: the init image needs iptables (iptables-restore on PATH)`
            : `cannot run ${command}: ${err.message}`,
          { cause: err },
        ),
      );
    });
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          new MeshError(
            ErrorCodes.INTERNAL,
            `${command} ${args.join(' ')} failed (${signal ?? `exit ${String(code)}`}): ${stderr.trim() || 'no message'}`,
          ),
        );
    });
    // A child that exits before reading all of stdin raises EPIPE here; its exit status tells why.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** Builds the rules (validating every option first) and installs them unless `dryRun`. */
export async function applyCapture(
  options: CaptureOptions,
  apply: ApplyCaptureOptions = {},
): Promise<CaptureResult> {
  const script = buildCaptureRules(options);
  if (apply.dryRun === true) return { script, applied: false };
  await runWithStdin(
    apply.iptablesRestore ?? 'iptables-restore',
    [...(apply.extraArgs ?? []), '--noflush'],
    script,
  );
  return { script, applied: true };
}
