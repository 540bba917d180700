/**
 * `meshfed inspect proxies`, `meshfed inspect proxy ID [--config]` and
 * `meshfed inspect service NAME` (per zone endpoints and failover order):
 * what a zone CP knows about its proxies, from the zone REST API (point
 * `--server` at the zone, e.g. http://127.0.0.1:5682).
 */

import { Option, type Command } from 'commander';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { clientFor } from '../connection.js';
import { formatAge, formatTable } from '../output-table.js';
import type { ServiceInspection } from '../../zone-cp/api/inspect-service-routes.js';

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

/** The `inspect service` table: per zone, endpoints or the zone's gateway, health and the caller's priority. */
export function formatServiceInspection(answer: ServiceInspection): string {
  const caller =
    answer.caller.workload ??
    (answer.caller.proxy === undefined ? `any proxy in ${answer.zone}` : answer.caller.proxy);
  const policy = answer.policy;
  const lines = [
    `Service:  ${answer.service} (${answer.host})`,
    `Caller:   ${caller} (zone ${answer.caller.zone}${answer.caller.locality === '' ? '' : `, locality ${answer.caller.locality}`})`,
    `Policy:   ${policy.destinationRule === undefined ? 'no DestinationRule' : `DestinationRule ${policy.destinationRule}`}; ` +
      `${policy.mode}; preferLocalZone=${String(policy.preferLocalZone)}; pinnedToZone=${String(policy.pinnedToZone)}`,
  ];
  if (policy.localityLbSetting !== undefined)
    lines.push(`Locality: ${JSON.stringify(policy.localityLbSetting)}`);
  lines.push(
    answer.active < 0
      ? 'Traffic:  no healthy endpoint the caller may use: calls fail with 503 (no healthy upstream, flag UH)'
      : policy.mode === 'distribute'
        ? 'Traffic:  shared by weight among the groups with a healthy endpoint'
        : `Traffic:  goes to priority ${answer.active} now`,
    '',
  );
  const rows: string[][] = [];
  for (const zone of answer.zones) {
    const zoneName = zone.local ? `${zone.zone} (local)` : zone.zone;
    if (zone.endpoints.length === 0) {
      rows.push([
        zoneName,
        zone.gateway ?? '-',
        zone.local ? '-' : 'gateway',
        `${zone.healthy}/${zone.total}`,
        '-',
        zone.excluded === undefined ? '-' : `excluded: ${zone.excluded}`,
      ]);
      continue;
    }
    for (const e of zone.endpoints) {
      const healthy = e.via === 'gateway' ? `${zone.healthy}/${zone.total}` : e.healthy ? 'yes' : 'no';
      const priority =
        e.priority === undefined
          ? `excluded${zone.excluded === undefined ? '' : `: ${zone.excluded}`}`
          : e.share === undefined
            ? String(e.priority)
            : `${e.share}%`;
      rows.push([
        zoneName,
        e.address,
        e.via === 'gateway' ? 'gateway' : `${e.via} ${e.workload}`,
        healthy,
        String(e.weight),
        priority,
      ]);
    }
  }
  return (
    lines.join('\n') +
    '\n' +
    formatTable(
      ['ZONE', 'ENDPOINT', 'VIA', 'HEALTHY', 'WEIGHT', policy.mode === 'distribute' ? 'SHARE' : 'PRIORITY'],
      rows,
    )
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
    .command('service')
    .description(
      'one service per zone (endpoints, gateways, health) and the failover order a proxy would use',
    )
    .argument('<name>', 'service: name.namespace, the FQDN, or a name with --namespace')
    .option('-n, --namespace <ns>', "the service's namespace")
    .option(
      '--zone <zone>',
      'the zone the server must be (a guard against pointing --server at the wrong zone)',
    )
    .option('--from-proxy <id>', 'plan for this proxy (an id from `inspect proxies`)')
    .option('--from-workload <ns/name>', 'plan for a proxy of this workload')
    .addOption(
      new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'),
    )
    .action(
      async (
        name: string,
        opts: {
          namespace?: string;
          zone?: string;
          fromProxy?: string;
          fromWorkload?: string;
          output: 'table' | 'json';
        },
        command: Command,
      ) => {
        if (opts.fromProxy !== undefined && opts.fromWorkload !== undefined) {
          throw new MeshError(ErrorCodes.VALIDATION, 'give --from-proxy or --from-workload, not both', {
            field: 'from-proxy',
          });
        }
        const { client } = await clientFor(command);
        const query = new URLSearchParams();
        if (opts.namespace !== undefined) query.set('namespace', opts.namespace);
        if (opts.fromProxy !== undefined) query.set('proxy', opts.fromProxy);
        if (opts.fromWorkload !== undefined) query.set('workload', opts.fromWorkload);
        const qs = query.toString();
        const answer = await client.request(
          'GET',
          `/inspect/services/${encodeURIComponent(name)}${qs === '' ? '' : `?${qs}`}`,
        );
        if (
          typeof answer !== 'object' ||
          answer === null ||
          !Array.isArray((answer as { zones?: unknown }).zones)
        )
          throw new MeshError(
            ErrorCodes.DECODE,
            'the server answered without a zones list (is --server a zone API?)',
          );
        const inspection = answer as ServiceInspection;
        if (opts.zone !== undefined && inspection.zone !== opts.zone) {
          throw new MeshError(
            ErrorCodes.VALIDATION,
            `the server is zone ${inspection.zone}, not ${opts.zone}: point --server at ${opts.zone}'s API`,
            { field: 'zone' },
          );
        }
        if (opts.output === 'json') {
          process.stdout.write(JSON.stringify(inspection, null, 2) + '\n');
          return;
        }
        process.stdout.write(formatServiceInspection(inspection));
      },
    );

  inspect
    .command('errors')
    .description('resources the zone skipped or partly ignored, with the reason')
    .action(async (_opts: unknown, command: Command) => {
      const { client } = await clientFor(command);
      process.stdout.write(JSON.stringify(await client.request('GET', '/inspect/errors'), null, 2) + '\n');
    });
}
