/**
 * `meshfed inspect proxies` and `meshfed inspect proxy ID [--config]`:
 * what a zone CP knows about its proxies, from the zone REST API (point
 * `--server` at the zone, e.g. http://127.0.0.1:5682).
 */

import { Option, type Command } from 'commander';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { clientFor } from '../connection.js';
import { formatAge, formatTable } from '../output-table.js';

interface ProxyRow {
  id?: unknown;
  kind?: unknown;
  namespace?: unknown;
  workload?: unknown;
  connected?: unknown;
  configVersion?: unknown;
  pendingVersion?: unknown;
  lastAck?: { at?: unknown } | null;
  lastNack?: { at?: unknown; error?: unknown; version?: unknown } | null;
  certificateExpiry?: unknown;
  status?: unknown;
}

function str(value: unknown, fallback = '-'): string {
  return typeof value === 'string' && value !== '' ? value : fallback;
}

function ago(iso: unknown, now: number): string {
  if (typeof iso !== 'string') return '-';
  const at = Date.parse(iso);
  return Number.isNaN(at) ? '-' : `${formatAge(now - at)} ago`;
}

function until(iso: unknown, now: number): string {
  if (typeof iso !== 'string') return '-';
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return '-';
  return at <= now ? 'EXPIRED' : `in ${formatAge(at - now)}`;
}

/** The `inspect proxies` table. */
export function formatProxyTable(proxies: ProxyRow[], now = Date.now()): string {
  const rows = proxies.map((p) => [
    str(p.id),
    str(p.kind),
    p.kind === 'gateway' ? '-' : `${str(p.namespace, '')}/${str(p.workload, '')}`,
    p.connected === true ? 'yes' : 'no',
    str(p.configVersion).slice(0, 12) + (typeof p.pendingVersion === 'string' ? ' (pending)' : ''),
    ago(p.lastAck?.at, now),
    p.lastNack ? `${ago(p.lastNack.at, now)}: ${str(p.lastNack.error)}` : '-',
    until(p.certificateExpiry, now),
    str(p.status),
  ]);
  return formatTable(
    ['ID', 'KIND', 'WORKLOAD', 'CONNECTED', 'VERSION', 'LAST ACK', 'LAST NACK', 'CERT EXPIRES', 'STATUS'],
    rows,
  );
}

/** Register `inspect` on the root program. */
export function registerInspectCommands(program: Command): void {
  const inspect = program
    .command('inspect')
    .description('what a zone control plane pushed to its proxies (--server = the zone API)');

  inspect
    .command('proxies')
    .description('every proxy of the zone: connection, config version, last ACK/NACK, certificate expiry')
    .addOption(
      new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'),
    )
    .action(async (opts: { output: 'table' | 'json' }, command: Command) => {
      const { client } = await clientFor(command);
      const answer = await client.request('GET', '/inspect/proxies');
      const proxies =
        typeof answer === 'object' && answer !== null ? (answer as { proxies?: unknown }).proxies : undefined;
      if (!Array.isArray(proxies))
        throw new MeshError(ErrorCodes.DECODE, 'the zone answered without a proxies list');
      if (opts.output === 'json') {
        process.stdout.write(JSON.stringify(proxies, null, 2) + '\n');
        return;
      }
      if (proxies.length === 0) {
        process.stderr.write('No proxies have connected to this zone.\n');
        return;
      }
      process.stdout.write(formatProxyTable(proxies as ProxyRow[]));
    });

  inspect
    .command('proxy')
    .description('one proxy: its record, or with --config the snapshot compiled for it')
    .argument('<id>', 'proxy id (from `inspect proxies`)')
    .option('--config', 'print the compiled snapshot (JSON)', false)
    .action(async (id: string, opts: { config: boolean }, command: Command) => {
      const { client } = await clientFor(command);
      const path = `/inspect/proxies/${encodeURIComponent(id)}${opts.config ? '/config' : ''}`;
      const answer = await client.request('GET', path);
      process.stdout.write(JSON.stringify(answer, null, 2) + '\n');
    });

  inspect
    .command('errors')
    .description('resources the zone skipped or partly ignored, with the reason')
    .action(async (_opts: unknown, command: Command) => {
      const { client } = await clientFor(command);
      process.stdout.write(JSON.stringify(await client.request('GET', '/inspect/errors'), null, 2) + '\n');
    });
}
