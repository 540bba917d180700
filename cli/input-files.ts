/**
 * The `-f FILE|DIR|-` inputs of apply and delete: files as given,
 * directories expanded to their *.yaml/*.yml/*.json (sorted; recursive with
 * -R), `-` for stdin. Every input is read before anything is sent, so a
 * missing file fails before the server changes.
 */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ErrorCodes, MeshError } from '../core/errors.js';

export interface InputFile {
  /** As the user will recognise it: the path given or found, or `<stdin>`. */
  name: string;
  text: string;
  contentType: 'application/yaml' | 'application/json';
}

const manifestExtensions = new Set(['.yaml', '.yml', '.json']);

/** Content type from the extension; stdin (and unknown extensions) are sniffed. */
export function contentTypeFor(name: string, text: string): InputFile['contentType'] {
  const ext = path.extname(name).toLowerCase();
  if (ext === '.json') return 'application/json';
  if (ext === '.yaml' || ext === '.yml') return 'application/yaml';
  const first = text.trimStart()[0];
  return first === '{' || first === '[' ? 'application/json' : 'application/yaml';
}

async function listDirectory(dir: string, recursive: boolean): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (recursive) files.push(...(await listDirectory(full, recursive)));
    } else if (manifestExtensions.has(path.extname(entry.name).toLowerCase())) {
      files.push(full);
    }
  }
  return files;
}

async function readStdin(stdin: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** Read every `-f` argument into InputFiles, in the order given. */
export async function readInputs(
  args: string[],
  options: { recursive?: boolean; stdin?: NodeJS.ReadableStream } = {},
): Promise<InputFile[]> {
  if (args.length === 0) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'no input: pass -f FILE, -f DIR or -f - (stdin)');
  }
  const inputs: InputFile[] = [];
  for (const arg of args) {
    if (arg === '-') {
      const text = await readStdin(options.stdin ?? process.stdin);
      inputs.push({ name: '<stdin>', text, contentType: contentTypeFor('', text) });
      continue;
    }
    let stat;
    try {
      stat = await fs.stat(arg);
    } catch (err) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `cannot read ${arg}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const files = stat.isDirectory() ? await listDirectory(arg, options.recursive ?? false) : [arg];
    if (stat.isDirectory() && files.length === 0) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${arg} holds no *.yaml, *.yml or *.json files`);
    }
    for (const file of files) {
      const text = await fs.readFile(file, 'utf8');
      inputs.push({ name: file, text, contentType: contentTypeFor(file, text) });
    }
  }
  return inputs;
}

/** Repeatable-option collector for commander (`-f a -f b`). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
