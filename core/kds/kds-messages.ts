/**
 * The KDS messages as @grpc/proto-loader delivers them (core/grpc/proto.ts
 * options: snake_case fields, uint64 as decimal strings, bytes as Buffers,
 * defaults filled in, `message` naming the oneof member set), and the
 * Changes payload codec. What arrives from a peer is checked here before
 * anything else reads it.
 */

import { gunzip, gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { ErrorCodes, MeshError } from '../errors.js';
import type { Resource } from '../resource/resource.js';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

export interface HelloMessage {
  protocol_version: number;
  min_protocol_version: number;
  capabilities: string[];
  zone: string;
  software_version: string;
  store_id: string;
  /** uint64 as a decimal string. */
  applied_revision: string;
  csr_pem: string;
}

export interface AckMessage {
  nonce: string;
  revision: string;
}

export interface ResourceErrorMessage {
  kind: string;
  namespace: string;
  name: string;
  error: string;
}

export interface NackMessage {
  nonce: string;
  revision: string;
  errors: ResourceErrorMessage[];
}

export interface InventoryMessage {
  json: Buffer;
}

export interface ZoneStatusMessage {
  software_version: string;
  connected_proxies: number;
  errors: string[];
  config_revision: string;
}

export interface CertificateRequestMessage {
  csr_pem: string;
}

/** JSON of core/telemetry ZoneTelemetrySummary. */
export interface ZoneTelemetryMessage {
  json: Buffer;
}

/** Zone → global. Exactly one member is set; `message` names it on receipt. */
export interface ZoneMessage {
  message?: 'hello' | 'ack' | 'nack' | 'inventory' | 'status' | 'csr' | 'telemetry';
  hello?: HelloMessage | null;
  ack?: AckMessage | null;
  nack?: NackMessage | null;
  inventory?: InventoryMessage | null;
  status?: ZoneStatusMessage | null;
  csr?: CertificateRequestMessage | null;
  telemetry?: ZoneTelemetryMessage | null;
}

export interface WelcomeMessage {
  protocol_version: number;
  capabilities: string[];
  software_version: string;
  store_id: string;
  replica: string;
}

export interface ChangesMessage {
  nonce: string;
  full: boolean;
  synced: boolean;
  revision: string;
  encoding: string;
  payload: Buffer;
  count: number;
}

export interface TrustMessage {
  trust_domain: string;
  roots_pem: string[];
  intermediate_chain_pem: string;
  token_public_keys_pem: string[];
  csr_error: string;
  /** Global's revoked, unexpired token ids (the whole set); absent from older globals. */
  revoked_token_ids?: string[];
}

export interface CatalogMessage {
  json: Buffer;
  /** 'gzip' or 'identity'/'' (older globals send plain JSON). */
  encoding: string;
}

/** Global → zone. */
export interface GlobalMessage {
  message?: 'welcome' | 'changes' | 'trust' | 'catalog';
  welcome?: WelcomeMessage | null;
  changes?: ChangesMessage | null;
  trust?: TrustMessage | null;
  catalog?: CatalogMessage | null;
}

/** One upsert in a Changes payload. */
export interface UpsertEntry {
  /** Global revision of this state of the object. */
  revision: number;
  object: Resource;
}

/** One deletion in a Changes payload. */
export interface DeletionEntry {
  revision: number;
  kind: string;
  namespace: string;
  name: string;
}

export interface ChangesPayload {
  upserts: UpsertEntry[];
  deletions: DeletionEntry[];
}

export type PayloadEncoding = 'gzip' | 'identity';

/** Parses a uint64 field (decimal string) into a safe integer; INVALID_ARGUMENT otherwise. */
export function readRevision(value: unknown, field: string): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value !== '' ? Number(value) : 0;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${field} must be a non-negative integer`, { field });
  }
  return n;
}

/**
 * Encodes a Changes payload. The JSON of each object is produced by the
 * caller (`objectJson`) so a server sending the same change to many zones
 * serializes it once.
 */
export async function encodePayload(
  upserts: readonly { revision: number; json: string }[],
  deletions: readonly DeletionEntry[],
  encoding: PayloadEncoding,
): Promise<Buffer> {
  const parts: string[] = [];
  for (const u of upserts) parts.push(`{"revision":${u.revision},"object":${u.json}}`);
  const text = `{"upserts":[${parts.join(',')}],"deletions":${JSON.stringify(deletions)}}`;
  const raw = Buffer.from(text, 'utf8');
  return encoding === 'gzip' ? gzipAsync(raw, { level: 6 }) : raw;
}

/** Upper bound of the JSON bytes one upsert adds to a payload. */
export function upsertSize(json: string): number {
  return json.length + 32;
}

/**
 * Decodes and shape-checks a Changes payload (a zone trusts global, but a
 * truncated or foreign payload must fail with a clear message, not a
 * TypeError deep in the apply loop). Each object is still validated by the
 * zone before it is written.
 */
export async function decodePayload(
  payload: Buffer,
  encoding: string,
  maxBytes: number,
): Promise<ChangesPayload> {
  let raw: Buffer;
  if (encoding === 'gzip') {
    try {
      raw = await gunzipAsync(payload, { maxOutputLength: maxBytes });
    } catch (err) {
      throw new MeshError(ErrorCodes.DECODE, `Changes payload: gzip failed: ${(err as Error).message}`);
    }
  } else if (encoding === 'identity' || encoding === '') {
    raw = payload;
  } else {
    throw new MeshError(ErrorCodes.DECODE, `Changes payload: unknown encoding "${encoding}"`);
  }
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new MeshError(ErrorCodes.DECODE, `Changes payload is not JSON: ${(err as Error).message}`);
  }
  if (!isRecord(value) || !Array.isArray(value.upserts) || !Array.isArray(value.deletions)) {
    throw new MeshError(ErrorCodes.DECODE, 'Changes payload must be {"upserts": [...], "deletions": [...]}');
  }
  const upserts: UpsertEntry[] = [];
  value.upserts.forEach((entry: unknown, i: number) => {
    if (!isRecord(entry) || !isRecord(entry.object) || typeof entry.revision !== 'number') {
      throw new MeshError(ErrorCodes.DECODE, `Changes payload: upserts[${i}] must be {revision, object}`);
    }
    upserts.push({ revision: entry.revision, object: entry.object as unknown as Resource });
  });
  const deletions: DeletionEntry[] = [];
  value.deletions.forEach((entry: unknown, i: number) => {
    if (
      !isRecord(entry) ||
      typeof entry.kind !== 'string' ||
      typeof entry.namespace !== 'string' ||
      typeof entry.name !== 'string'
    ) {
      throw new MeshError(
        ErrorCodes.DECODE,
        `Changes payload: deletions[${i}] must be {revision, kind, namespace, name}`,
      );
    }
    deletions.push({
      revision: typeof entry.revision === 'number' ? entry.revision : 0,
      kind: entry.kind,
      namespace: entry.namespace,
      name: entry.name,
    });
  });
  return { upserts, deletions };
}

/** The catalog JSON of a Catalog message, uncompressed. */
export async function decodeCatalog(json: Buffer, encoding: string): Promise<Buffer> {
  if (encoding === '' || encoding === 'identity') return json;
  if (encoding !== 'gzip') throw new MeshError(ErrorCodes.DECODE, `Catalog: unknown encoding "${encoding}"`);
  try {
    return await gunzipAsync(json, { maxOutputLength: 512 * 1024 * 1024 });
  } catch (err) {
    throw new MeshError(ErrorCodes.DECODE, `Catalog: gzip failed: ${(err as Error).message}`);
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
