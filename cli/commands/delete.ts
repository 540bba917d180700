/** `meshfed delete KIND NAME [-n NS]` and `meshfed delete -f FILE`. */

import type { Command } from 'commander';
import { ErrorCodes, MeshError, isMeshError } from '../../core/errors.js';
import type { KindInfo } from '../../core/resource/kind.js';
import { decodeDocuments } from '../../core/resource/decode.js';
import { resolveKind } from '../../core/resource/kinds.js';
import type { ApiClient } from '../api-client.js';
import { clientFor, lookupKind, resourcePath } from '../connection.js';
import { collect, readInputs } from '../input-files.js';
import { kindRef } from '../output-table.js';

interface DeleteOptions {
  namespace?: string;
  filename?: string[];
  recursive: boolean;
  ignoreNotFound: boolean;
}

interface Target {
  info: KindInfo;
  namespace: string | undefined;
  name: string;
  /** Where it came from, for errors: `file.yaml: document 2`. */
  origin?: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Flatten `List` documents so that a `get -o yaml` output deletes what it lists. */
function flatten(docs: unknown[]): unknown[] {
  return docs.flatMap((doc) =>
    isRecord(doc) && doc.kind === 'List' && Array.isArray(doc.items) ? flatten(doc.items) : [doc],
  );
}

/** The objects a manifest names, resolved to kinds; a document without kind or name is an error. */
export function targetsOf(
  text: string,
  contentType: string,
  file: string,
  defaultNamespace: string,
): Target[] {
  const docs = flatten(decodeDocuments(text, contentType)).filter((d) => d !== null && d !== undefined);
  return docs.map((doc, index) => {
    const origin = `${file}: document ${index}`;
    if (!isRecord(doc) || typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string') {
      throw new MeshError(ErrorCodes.VALIDATION, `${origin}: apiVersion and kind are required`);
    }
    const info = resolveKind(doc.apiVersion, doc.kind);
    if (!info) {
      throw new MeshError(ErrorCodes.UNKNOWN_KIND, `${origin}: unknown kind ${doc.apiVersion}/${doc.kind}`);
    }
    const meta = isRecord(doc.metadata) ? doc.metadata : {};
    if (typeof meta.name !== 'string' || meta.name === '') {
      throw new MeshError(ErrorCodes.VALIDATION, `${origin}: metadata.name is required`, {
        field: 'metadata.name',
      });
    }
    const namespace = info.namespaced
      ? typeof meta.namespace === 'string' && meta.namespace
        ? meta.namespace
        : defaultNamespace
      : undefined;
    return { info, namespace, name: meta.name, origin };
  });
}

async function deleteOne(client: ApiClient, target: Target, ignoreNotFound: boolean): Promise<void> {
  const ref = `${kindRef(target.info.kind, `${target.info.groups[0] ?? ''}/${target.info.storageVersion}`)}`;
  try {
    await client.request('DELETE', resourcePath(target.info, target));
  } catch (err) {
    if (isMeshError(err, ErrorCodes.NOT_FOUND)) {
      if (ignoreNotFound) return;
      const where = target.namespace ? ` in namespace ${target.namespace}` : '';
      throw new MeshError(
        ErrorCodes.NOT_FOUND,
        `${target.origin ? `${target.origin}: ` : ''}${ref} "${target.name}" not found${where}`,
        { cause: err },
      );
    }
    throw err;
  }
  process.stdout.write(`${ref} "${target.name}" deleted\n`);
}

/** Register `delete` on the root program. */
export function registerDeleteCommand(program: Command): void {
  program
    .command('delete')
    .description('delete a resource by kind and name, or every resource a file names')
    .argument('[kind]', 'kind, plural or short name')
    .argument('[name]', 'name of the object')
    .option('-n, --namespace <ns>', 'namespace (default: the context\'s, else "default")')
    .option('-f, --filename <path>', 'delete what this file, directory or - names (repeatable)', collect)
    .option('-R, --recursive', 'descend into subdirectories of a -f directory', false)
    .option('--ignore-not-found', 'treat "not found" as deleted', false)
    .action(
      async (kind: string | undefined, name: string | undefined, opts: DeleteOptions, command: Command) => {
        const files = opts.filename ?? [];
        if (files.length > 0 && kind !== undefined) {
          throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'give either KIND NAME or -f FILE, not both');
        }
        if (files.length === 0 && (kind === undefined || name === undefined)) {
          throw new MeshError(
            ErrorCodes.INVALID_ARGUMENT,
            'usage: meshfed delete KIND NAME [-n NS] | meshfed delete -f FILE',
          );
        }
        let targets: Target[] = [];
        let namespace = opts.namespace;
        if (files.length > 0) {
          const inputs = await readInputs(files, { recursive: opts.recursive });
          const { client, contextNamespace } = await clientFor(command);
          namespace ??= contextNamespace ?? 'default';
          for (const input of inputs)
            targets.push(...targetsOf(input.text, input.contentType, input.name, namespace));
          await deleteAll(client, targets, opts.ignoreNotFound);
          return;
        }
        const info = lookupKind(kind ?? '');
        const { client, contextNamespace } = await clientFor(command);
        namespace ??= contextNamespace ?? 'default';
        targets = [{ info, namespace: info.namespaced ? namespace : undefined, name: name ?? '' }];
        await deleteAll(client, targets, opts.ignoreNotFound);
      },
    );
}

/** Delete every target; keep going past failures, then report the first one. */
async function deleteAll(client: ApiClient, targets: Target[], ignoreNotFound: boolean): Promise<void> {
  let first: unknown;
  for (const target of targets) {
    try {
      await deleteOne(client, target, ignoreNotFound);
    } catch (err) {
      // A server that is unreachable or refuses the token fails every delete the same way: stop.
      if (!isMeshError(err, ErrorCodes.NOT_FOUND)) throw err;
      first ??= err;
    }
  }
  if (first !== undefined) throw first;
}
