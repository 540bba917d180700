/** `meshfed get KIND [NAME] [-n NS | -A] [-o yaml|json|table|name] [-l selector] [-w]`. */

import { Option, type Command } from 'commander';
import { stringify } from 'yaml';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { KindInfo } from '../../core/resource/kind.js';
import { clientFor, lookupKind, resourcePath } from '../connection.js';
import {
  formatResourceTable,
  objectRef,
  sortObjects,
  tableRows,
  valueAt,
  type ApiObject,
} from '../output-table.js';

/** Output formats of `get`. */
export const OUTPUT_FORMATS = ['table', 'yaml', 'json', 'name'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

interface GetOptions {
  namespace?: string;
  allNamespaces: boolean;
  output: OutputFormat;
  selector?: string;
  watch: boolean;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function listItems(answer: unknown): ApiObject[] {
  const items = isRecord(answer) ? answer.items : undefined;
  if (!Array.isArray(items)) throw new MeshError(ErrorCodes.DECODE, 'the list answer has no items');
  return items.filter(isRecord);
}

/** Print objects in the chosen format. `single` prints one object rather than a List. */
export function renderObjects(
  objects: ApiObject[],
  info: KindInfo,
  format: OutputFormat,
  options: { single: boolean; withNamespace: boolean; list?: Record<string, unknown> },
): string {
  switch (format) {
    case 'json':
      return (
        JSON.stringify(options.single ? objects[0] : listDocument(objects, options.list), null, 2) + '\n'
      );
    case 'yaml':
      return stringify(options.single ? objects[0] : listDocument(objects, options.list));
    case 'name':
      return objects.map((o) => objectRef(o) + '\n').join('');
    case 'table':
      return formatResourceTable(objects, { kind: info.kind, withNamespace: options.withNamespace });
  }
}

function listDocument(
  objects: ApiObject[],
  list: Record<string, unknown> | undefined,
): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'List',
    metadata: isRecord(list?.metadata) ? list.metadata : {},
    items: objects,
  };
}

/** Register `get` on the root program. */
export function registerGetCommand(program: Command): void {
  program
    .command('get')
    .description('list resources of a kind, or show one')
    .argument('<kind>', 'kind, plural or short name (vs, dr, pa, ...), case-insensitive')
    .argument('[name]', 'one object')
    .option('-n, --namespace <ns>', 'namespace (default: the context\'s, else "default")')
    .option('-A, --all-namespaces', 'every namespace', false)
    .addOption(new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('table'))
    .option('-l, --selector <selector>', 'label selector: app=web,tier!=db')
    .option('-w, --watch', 'after listing, follow changes', false)
    .action(async (kindName: string, name: string | undefined, opts: GetOptions, command: Command) => {
      const info = lookupKind(kindName);
      if (opts.allNamespaces && name !== undefined) {
        throw new MeshError(
          ErrorCodes.INVALID_ARGUMENT,
          'a resource cannot be fetched by name across all namespaces',
        );
      }
      if (opts.allNamespaces && opts.namespace !== undefined) {
        throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'give either -n/--namespace or -A/--all-namespaces');
      }
      const { client, contextNamespace } = await clientFor(command);
      const namespace =
        info.namespaced && !opts.allNamespaces
          ? (opts.namespace ?? contextNamespace ?? 'default')
          : undefined;
      const withNamespace = info.namespaced && opts.allNamespaces;
      const query = opts.selector ? `labelSelector=${encodeURIComponent(opts.selector)}` : '';

      if (opts.watch) {
        await watchObjects(client, info, { namespace, name, query, output: opts.output, withNamespace });
        return;
      }
      if (name !== undefined) {
        const obj = await client.request('GET', resourcePath(info, { namespace, name }));
        if (!isRecord(obj)) throw new MeshError(ErrorCodes.DECODE, 'the answer is not an object');
        process.stdout.write(renderObjects([obj], info, opts.output, { single: true, withNamespace }));
        return;
      }
      const list = await client.request(
        'GET',
        resourcePath(info, { namespace }) + (query ? `?${query}` : ''),
      );
      const objects = sortObjects(listItems(list));
      if (objects.length === 0 && opts.output === 'table') {
        const where = namespace ? ` in ${namespace} namespace` : '';
        process.stderr.write(`No resources found${where}.\n`);
        return;
      }
      process.stdout.write(
        renderObjects(objects, info, opts.output, {
          single: false,
          withNamespace,
          list: isRecord(list) ? list : {},
        }),
      );
    });
}

async function watchObjects(
  client: Awaited<ReturnType<typeof clientFor>>['client'],
  info: KindInfo,
  opts: { namespace?: string; name?: string; query: string; output: OutputFormat; withNamespace: boolean },
): Promise<void> {
  const query = ['watch=true', opts.query].filter(Boolean).join('&');
  const path = resourcePath(info, { namespace: opts.namespace }) + `?${query}`;
  let headerPrinted = false;
  // Column widths are fixed by the first rows seen; later rows may push a column wider.
  let widths: number[] = [];
  await client.watch(path, (event) => {
    const obj = event.object;
    if (opts.name !== undefined && valueAt(obj, 'metadata.name') !== opts.name) return;
    switch (opts.output) {
      case 'json':
        process.stdout.write(JSON.stringify({ type: event.type, object: obj }) + '\n');
        return;
      case 'yaml':
        process.stdout.write(stringify({ type: event.type, object: obj }) + '---\n');
        return;
      case 'name':
        process.stdout.write(`${event.type} ${objectRef(obj)}\n`);
        return;
      case 'table': {
        const { headers, rows } = tableRows([obj], { kind: info.kind, withNamespace: opts.withNamespace });
        const cells = ['EVENT', ...headers];
        const row = [event.type, ...(rows[0] ?? [])];
        widths = cells.map((h, i) =>
          Math.max(widths[i] ?? 0, h.length, (row[i] ?? '').length, i === 0 ? 8 : 0),
        );
        const line = (values: string[]): string =>
          values
            .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i] ?? v.length)))
            .join('   ')
            .trimEnd() + '\n';
        if (!headerPrinted) {
          process.stdout.write(line(cells));
          headerPrinted = true;
        }
        process.stdout.write(line(row));
        return;
      }
    }
  });
}
