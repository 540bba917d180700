/**
 * Glue every client command shares: the global connection options, an
 * ApiClient built from them, kind lookup with a helpful error, and the REST
 * paths of docs/api.md.
 */

import type { Command } from 'commander';
import { ErrorCodes, MeshError } from '../core/errors.js';
import type { KindInfo } from '../core/resource/kind.js';
import { allKinds, findKind } from '../core/resource/kinds.js';
import { ApiClient } from './api-client.js';
import { resolveConnection, type ConnectionFlags } from './client-config.js';

export interface CommandClient {
  client: ApiClient;
  /** Namespace from the current context, if it sets one. */
  contextNamespace?: string;
}

function stringOption(options: Record<string, unknown>, key: string): string | undefined {
  const value = options[key];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The root program's connection flags, as seen from any subcommand. */
export function connectionFlags(command: Command): ConnectionFlags {
  const all: Record<string, unknown> = command.optsWithGlobals();
  const flags: ConnectionFlags = {};
  const server = stringOption(all, 'server');
  const token = stringOption(all, 'token');
  const tokenFile = stringOption(all, 'tokenFile');
  const caFile = stringOption(all, 'caFile');
  const context = stringOption(all, 'context');
  if (server !== undefined) flags.server = server;
  if (token !== undefined) flags.token = token;
  if (tokenFile !== undefined) flags.tokenFile = tokenFile;
  if (caFile !== undefined) flags.caFile = caFile;
  if (context !== undefined) flags.context = context;
  return flags;
}

/** An authenticated ApiClient for a client command (flags, env, config file). */
export async function clientFor(command: Command): Promise<CommandClient> {
  const connection = await resolveConnection(connectionFlags(command), { requireToken: true });
  const client = new ApiClient({
    server: connection.server,
    ...(connection.token === undefined ? {} : { token: connection.token }),
    ...(connection.ca === undefined ? {} : { ca: connection.ca }),
  });
  return { client, ...(connection.namespace ? { contextNamespace: connection.namespace } : {}) };
}

/** Kind by name, plural or short name (case-insensitive), or UNKNOWN_KIND listing valid names. */
export function lookupKind(name: string): KindInfo {
  const info = findKind(name);
  if (info) return info;
  const names = allKinds().map((k) => (k.shortNames[0] ? `${k.plural} (${k.shortNames[0]})` : k.plural));
  throw new MeshError(
    ErrorCodes.UNKNOWN_KIND,
    `unknown resource type "${name}"; try one of: ${names.join(', ')}`,
  );
}

/**
 * REST path of a kind's collection or of one object:
 * `/apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}]`. A
 * namespaced kind without a namespace addresses every namespace.
 */
export function resourcePath(info: KindInfo, target: { namespace?: string; name?: string } = {}): string {
  const group = info.groups[0] ?? '';
  let path = `/apis/${encodeURIComponent(group)}/${encodeURIComponent(info.storageVersion)}`;
  if (info.namespaced && target.namespace) path += `/namespaces/${encodeURIComponent(target.namespace)}`;
  path += `/${encodeURIComponent(info.plural)}`;
  if (target.name !== undefined) path += `/${encodeURIComponent(target.name)}`;
  return path;
}
