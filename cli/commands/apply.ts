/** `meshfed apply -f FILE|DIR|- [--dry-run]`: each file is one POST /api/v1/apply. */

import type { Command } from 'commander';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { clientFor } from '../connection.js';
import { toMeshError } from '../exit.js';
import { collect, readInputs } from '../input-files.js';
import { kindRef } from '../output-table.js';

interface ApplyResult {
  apiVersion: string;
  kind: string;
  name: string;
  action: string;
  warnings: unknown[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseResults(answer: unknown): ApplyResult[] {
  const results = isRecord(answer) ? answer.results : undefined;
  if (!Array.isArray(results)) {
    throw new MeshError(ErrorCodes.DECODE, 'the apply answer has no results list');
  }
  return results.filter(isRecord).map((r) => ({
    apiVersion: String(r.apiVersion ?? ''),
    kind: String(r.kind ?? ''),
    name: String(r.name ?? ''),
    action: String(r.action ?? ''),
    warnings: Array.isArray(r.warnings) ? r.warnings : [],
  }));
}

function warningText(warning: unknown): string {
  if (typeof warning === 'string') return warning;
  if (isRecord(warning) && typeof warning.message === 'string') {
    return typeof warning.field === 'string' ? `${warning.field}: ${warning.message}` : warning.message;
  }
  return JSON.stringify(warning);
}

/**
 * Where in the input a refused document was: `file.yaml: document 2` (the
 * server's 0-based index; it already names it in the message of a
 * multi-document request).
 */
function errorContext(file: string, err: MeshError): string {
  const doc = err.details?.document;
  if (typeof doc !== 'number' && typeof doc !== 'string') return file;
  return err.message.includes(`document ${doc}`) ? file : `${file}: document ${doc}`;
}

/** Register `apply` on the root program. */
export function registerApplyCommand(program: Command): void {
  program
    .command('apply')
    .description('create or update resources from files, a directory, or stdin')
    .option('-f, --filename <path>', 'file, directory or - for stdin (repeatable)', collect)
    .option('-R, --recursive', 'descend into subdirectories of a -f directory', false)
    .option('--dry-run', 'validate on the server without writing', false)
    .action(async (opts: { filename?: string[]; recursive: boolean; dryRun: boolean }, command: Command) => {
      const inputs = await readInputs(opts.filename ?? [], { recursive: opts.recursive });
      const { client } = await clientFor(command);
      const path = opts.dryRun ? '/api/v1/apply?dryRun=true' : '/api/v1/apply';
      for (const input of inputs) {
        let answer: unknown;
        try {
          answer = await client.request('POST', path, input.text, input.contentType);
        } catch (err) {
          const meshErr = toMeshError(err);
          throw new MeshError(
            meshErr.code,
            `${errorContext(input.name, meshErr)}: ${messageWithField(meshErr)}`,
            {
              ...(meshErr.field === undefined ? {} : { field: meshErr.field }),
              ...(meshErr.details === undefined ? {} : { details: meshErr.details }),
              cause: err,
            },
          );
        }
        for (const result of parseResults(answer)) {
          for (const warning of result.warnings) process.stderr.write(`Warning: ${warningText(warning)}\n`);
          const suffix = opts.dryRun ? ' (dry run)' : '';
          process.stdout.write(
            `${kindRef(result.kind, result.apiVersion)}/${result.name} ${result.action}${suffix}\n`,
          );
        }
      }
    });
}

function messageWithField(err: MeshError): string {
  return err.field && !err.message.includes(err.field) ? `${err.field}: ${err.message}` : err.message;
}
