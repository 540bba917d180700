/**
 * The CLI's config file (kubeconfig-like YAML at $MESHFED_CONFIG or
 * ~/.meshfed/config) and the resolution of server, token and CA for every
 * client command: flags, then environment, then the current context.
 */

import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseDocument, stringify } from 'yaml';
import { ErrorCodes, MeshError } from '../core/errors.js';

/** Where the CLI talks to when nothing says otherwise. */
export const DEFAULT_SERVER = 'http://127.0.0.1:5681';

export interface ClientContext {
  name: string;
  server: string;
  token?: string;
  tokenFile?: string;
  caFile?: string;
  /** Default namespace for namespaced commands. */
  namespace?: string;
}

export interface ClientConfig {
  currentContext?: string;
  contexts: ClientContext[];
}

/** Connection settings given on the command line (global options). */
export interface ConnectionFlags {
  server?: string;
  token?: string;
  tokenFile?: string;
  caFile?: string;
  context?: string;
}

export interface ResolvedConnection {
  server: string;
  /** Undefined only when the caller did not require one. */
  token?: string;
  /** PEM text of the CA file, if one was configured. */
  ca?: string;
  caFile?: string;
  namespace?: string;
  /** The context used, if the config file contributed anything. */
  contextName?: string;
}

type Env = Record<string, string | undefined>;

/** Path of the config file: $MESHFED_CONFIG or ~/.meshfed/config. */
export function configPath(env: Env = process.env): string {
  const fromEnv = env.MESHFED_CONFIG;
  if (fromEnv) return path.resolve(fromEnv);
  return path.join(env.HOME || os.homedir(), '.meshfed', 'config');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalString(value: unknown, where: string, file: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') {
    throw new MeshError(ErrorCodes.CONFIG, `${file}: ${where} must be a string`, { field: where });
  }
  return value;
}

/** Validate the parsed YAML of a config file. */
export function parseClientConfig(text: string, file: string): ClientConfig {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    throw new MeshError(ErrorCodes.CONFIG, `${file} is not valid YAML: ${doc.errors[0]?.message ?? ''}`);
  }
  const raw: unknown = doc.toJS();
  if (raw === null || raw === undefined) return { contexts: [] };
  if (!isRecord(raw)) throw new MeshError(ErrorCodes.CONFIG, `${file}: expected a mapping at the top level`);
  const contextsRaw = raw.contexts ?? [];
  if (!Array.isArray(contextsRaw)) {
    throw new MeshError(ErrorCodes.CONFIG, `${file}: contexts must be a list`, { field: 'contexts' });
  }
  const contexts = contextsRaw.map((entry: unknown, i): ClientContext => {
    const where = `contexts[${i}]`;
    if (!isRecord(entry) || typeof entry.name !== 'string' || !isRecord(entry.context)) {
      throw new MeshError(ErrorCodes.CONFIG, `${file}: ${where} needs a name and a context mapping`, {
        field: where,
      });
    }
    const c = entry.context;
    const server = optionalString(c.server, `${where}.context.server`, file);
    if (!server) {
      throw new MeshError(ErrorCodes.CONFIG, `${file}: ${where}.context.server is required`, {
        field: `${where}.context.server`,
      });
    }
    const ctx: ClientContext = { name: entry.name, server };
    const token = optionalString(c.token, `${where}.context.token`, file);
    const tokenFile = optionalString(c['token-file'], `${where}.context.token-file`, file);
    const caFile = optionalString(c['ca-file'], `${where}.context.ca-file`, file);
    const namespace = optionalString(c.namespace, `${where}.context.namespace`, file);
    if (token !== undefined) ctx.token = token;
    if (tokenFile !== undefined) ctx.tokenFile = tokenFile;
    if (caFile !== undefined) ctx.caFile = caFile;
    if (namespace !== undefined) ctx.namespace = namespace;
    return ctx;
  });
  const current = optionalString(raw['current-context'], 'current-context', file);
  return { ...(current ? { currentContext: current } : {}), contexts };
}

/** Read the config file; a missing file is an empty config. */
export async function loadClientConfig(file: string = configPath()): Promise<ClientConfig> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return { contexts: [] };
    throw new MeshError(ErrorCodes.CONFIG, `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseClientConfig(text, file);
}

/** The YAML form of a config (kubeconfig-like keys). */
export function formatClientConfig(config: ClientConfig): string {
  const doc = {
    apiVersion: 'meshfed.io/v1alpha1',
    kind: 'Config',
    'current-context': config.currentContext ?? '',
    contexts: config.contexts.map((c) => ({
      name: c.name,
      context: {
        server: c.server,
        ...(c.token === undefined ? {} : { token: c.token }),
        ...(c.tokenFile === undefined ? {} : { 'token-file': c.tokenFile }),
        ...(c.caFile === undefined ? {} : { 'ca-file': c.caFile }),
        ...(c.namespace === undefined ? {} : { namespace: c.namespace }),
      },
    })),
  };
  return stringify(doc);
}

/**
 * Write the config atomically, readable only by its owner (it may hold
 * tokens): directory 0700, file 0600.
 */
export async function saveClientConfig(config: ClientConfig, file: string = configPath()): Promise<void> {
  const dir = path.dirname(file);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, formatClientConfig(config), { mode: 0o600 });
  await fs.chmod(tmp, 0o600);
  await fs.rename(tmp, file);
}

/** A copy of the config with every inline token replaced by REDACTED. */
export function redactClientConfig(config: ClientConfig): ClientConfig {
  return {
    ...config,
    contexts: config.contexts.map((c) => (c.token === undefined ? { ...c } : { ...c, token: 'REDACTED' })),
  };
}

/**
 * Create or update a context. Fields not given keep their value; giving a
 * token clears the token file and vice versa (one credential per context).
 * The first context created becomes the current one.
 */
export function upsertContext(
  config: ClientConfig,
  name: string,
  fields: Partial<Omit<ClientContext, 'name'>>,
): { config: ClientConfig; created: boolean } {
  const existing = config.contexts.find((c) => c.name === name);
  if (!existing && !fields.server) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `context "${name}" does not exist yet: --server is required`,
    );
  }
  if (fields.token !== undefined && fields.tokenFile !== undefined) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'give either --token or --token-file, not both');
  }
  const next: ClientContext = { ...(existing ?? { name, server: fields.server ?? DEFAULT_SERVER }) };
  if (fields.server !== undefined) next.server = fields.server;
  if (fields.token !== undefined) {
    next.token = fields.token;
    delete next.tokenFile;
  }
  if (fields.tokenFile !== undefined) {
    next.tokenFile = fields.tokenFile;
    delete next.token;
  }
  if (fields.caFile !== undefined) next.caFile = fields.caFile;
  if (fields.namespace !== undefined) next.namespace = fields.namespace;
  const contexts = existing
    ? config.contexts.map((c) => (c.name === name ? next : c))
    : [...config.contexts, next];
  const currentContext = config.currentContext || (existing ? undefined : name);
  return { config: { ...(currentContext ? { currentContext } : {}), contexts }, created: !existing };
}

async function readSecretFile(file: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new MeshError(ErrorCodes.CONFIG, `cannot read ${what} ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const value = text.trim();
  if (!value) throw new MeshError(ErrorCodes.CONFIG, `${what} ${file} is empty`);
  return value;
}

/** The hint printed when no token is configured anywhere. */
export const NO_TOKEN_HINT =
  'no API token: pass --token or --token-file, set MESHFED_TOKEN or MESHFED_TOKEN_FILE, ' +
  'or save one with `meshfed config set-context NAME --server URL --token-file FILE` ' +
  '(the global CP writes its admin token to <data-dir>/admin-token)';

/**
 * Resolve server, token and CA, each independently: command-line flags,
 * then MESHFED_SERVER / MESHFED_TOKEN / MESHFED_TOKEN_FILE / MESHFED_CA_FILE,
 * then the current context (or `--context`). Throws UNAUTHENTICATED with
 * a hint when `requireToken` and no token is found.
 */
export async function resolveConnection(
  flags: ConnectionFlags,
  options: { env?: Env; requireToken?: boolean; config?: ClientConfig } = {},
): Promise<ResolvedConnection> {
  const env = options.env ?? process.env;
  const file = configPath(env);
  const config = options.config ?? (await loadClientConfig(file));
  const contextName = flags.context ?? config.currentContext;
  let ctx: ClientContext | undefined;
  if (contextName) {
    ctx = config.contexts.find((c) => c.name === contextName);
    if (!ctx) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `context "${contextName}" is not in ${file} (known: ${config.contexts.map((c) => c.name).join(', ') || 'none'})`,
      );
    }
  }
  if (flags.token !== undefined && flags.tokenFile !== undefined) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'give either --token or --token-file, not both');
  }

  const server = flags.server || env.MESHFED_SERVER || ctx?.server || DEFAULT_SERVER;

  let token: string | undefined;
  if (flags.token) token = flags.token;
  else if (flags.tokenFile) token = await readSecretFile(flags.tokenFile, 'token file');
  else if (env.MESHFED_TOKEN) token = env.MESHFED_TOKEN;
  else if (env.MESHFED_TOKEN_FILE) token = await readSecretFile(env.MESHFED_TOKEN_FILE, 'token file');
  else if (ctx?.token) token = ctx.token;
  else if (ctx?.tokenFile) token = await readSecretFile(ctx.tokenFile, 'token file');
  if (options.requireToken !== false && !token)
    throw new MeshError(ErrorCodes.UNAUTHENTICATED, NO_TOKEN_HINT);

  const caFile = flags.caFile || env.MESHFED_CA_FILE || ctx?.caFile;
  const ca = caFile ? await readSecretFile(caFile, 'CA file') : undefined;

  return {
    server,
    ...(token ? { token } : {}),
    ...(ca ? { ca } : {}),
    ...(caFile ? { caFile } : {}),
    ...(ctx?.namespace ? { namespace: ctx.namespace } : {}),
    ...(ctx ? { contextName: ctx.name } : {}),
  };
}
