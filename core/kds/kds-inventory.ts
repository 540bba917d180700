/**
 * Checks of the inventory a zone reports and of the catalog global sends
 * back. Both cross a trust boundary as JSON: every field is checked and
 * copied, so a malformed report is refused with the path of the first bad
 * field and never reaches the store or another zone. Fields this version
 * does not know are dropped (a newer peer may send more), as protobuf does.
 */

import { ErrorCodes, MeshError } from '../errors.js';
import type {
  EndpointGroup,
  RemoteZone,
  ServiceCatalog,
  ServiceInventory,
  ZoneInventory,
} from '../mesh/inventory.js';
import type { PortProtocol, ServicePort } from '../mesh/snapshot.js';
import { isDns1123Label, isDns1123Subdomain } from '../resource/dns-name.js';
import { isRecord } from './kds-messages.js';

/** Limits that keep one report from costing global unbounded work. */
export const INVENTORY_LIMITS = {
  services: 20_000,
  portsPerService: 256,
  groupsPerService: 1_024,
  labelsPerGroup: 64,
  identitiesPerGroup: 256,
} as const;

const PROTOCOLS: readonly PortProtocol[] = ['http', 'http2', 'grpc', 'tcp'];

function invalid(field: string, message: string): MeshError {
  return new MeshError(ErrorCodes.VALIDATION, `inventory: ${field}: ${message}`, { field });
}

function str(value: unknown, field: string, max = 253): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max) {
    throw invalid(field, `must be a string of 1-${max} characters`);
  }
  return value;
}

function int(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(field, `must be an integer ${min}-${max}`);
  }
  return value;
}

function array(value: unknown, field: string, max: number): unknown[] {
  if (!Array.isArray(value)) throw invalid(field, 'must be an array');
  if (value.length > max) throw invalid(field, `must hold at most ${max} entries`);
  return value;
}

function object(value: unknown, field: string): Record<string, unknown> {
  if (!isRecord(value)) throw invalid(field, 'must be an object');
  return value;
}

function readPort(raw: unknown, field: string): ServicePort {
  const p = object(raw, field);
  const protocol = p.protocol;
  if (typeof protocol !== 'string' || !PROTOCOLS.includes(protocol as PortProtocol)) {
    throw invalid(`${field}.protocol`, `must be one of ${PROTOCOLS.join(', ')}`);
  }
  return {
    name: typeof p.name === 'string' ? p.name.slice(0, 63) : '',
    port: int(p.port, `${field}.port`, 1, 65535),
    protocol: protocol as PortProtocol,
  };
}

function readGroup(raw: unknown, field: string): EndpointGroup {
  const g = object(raw, field);
  const labelsRaw = object(g.labels ?? {}, `${field}.labels`);
  const labelEntries = Object.entries(labelsRaw);
  if (labelEntries.length > INVENTORY_LIMITS.labelsPerGroup) {
    throw invalid(`${field}.labels`, `must hold at most ${INVENTORY_LIMITS.labelsPerGroup} labels`);
  }
  const labels: Record<string, string> = {};
  for (const [k, v] of labelEntries) {
    if (typeof v !== 'string' || k.length > 317 || v.length > 63) {
      throw invalid(`${field}.labels.${k}`, 'must map label names to strings of at most 63 characters');
    }
    Object.defineProperty(labels, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  const total = int(g.total, `${field}.total`, 0, 1_000_000);
  const healthy = int(g.healthy, `${field}.healthy`, 0, total);
  const identities = array(
    g.identities ?? [],
    `${field}.identities`,
    INVENTORY_LIMITS.identitiesPerGroup,
  ).map((id, i) => str(id, `${field}.identities[${i}]`, 2048));
  return {
    labels,
    healthy,
    total,
    identities,
    ...(g.locality === undefined ? {} : { locality: str(g.locality, `${field}.locality`) }),
  };
}

function readService(raw: unknown, field: string): ServiceInventory {
  const s = object(raw, field);
  const name = str(s.name, `${field}.name`);
  if (!isDns1123Subdomain(name)) throw invalid(`${field}.name`, 'must be a DNS-1123 subdomain');
  const namespace = str(s.namespace, `${field}.namespace`, 63);
  if (!isDns1123Label(namespace)) throw invalid(`${field}.namespace`, 'must be a DNS-1123 label');
  return {
    name,
    namespace,
    ports: array(s.ports ?? [], `${field}.ports`, INVENTORY_LIMITS.portsPerService).map((p, i) =>
      readPort(p, `${field}.ports[${i}]`),
    ),
    endpointGroups: array(
      s.endpointGroups ?? [],
      `${field}.endpointGroups`,
      INVENTORY_LIMITS.groupsPerService,
    ).map((g, i) => readGroup(g, `${field}.endpointGroups[${i}]`)),
  };
}

/** Checks and copies one zone's inventory (without the `zone` check; see parseInventory). */
export function readInventory(raw: unknown, field = ''): ZoneInventory {
  const prefix = field === '' ? '' : `${field}.`;
  const inv = object(raw, field === '' ? '(root)' : field);
  const zone = str(inv.zone, `${prefix}zone`, 63);
  let gateway: ZoneInventory['gateway'];
  if (inv.gateway !== undefined && inv.gateway !== null) {
    const g = object(inv.gateway, `${prefix}gateway`);
    gateway = {
      address: str(g.address, `${prefix}gateway.address`),
      port: int(g.port, `${prefix}gateway.port`, 1, 65535),
    };
  }
  const services = array(inv.services ?? [], `${prefix}services`, INVENTORY_LIMITS.services).map((s, i) =>
    readService(s, `${prefix}services[${i}]`),
  );
  const seen = new Set<string>();
  for (const [i, s] of services.entries()) {
    const id = `${s.namespace}/${s.name}`;
    if (seen.has(id)) throw invalid(`${prefix}services[${i}]`, `service ${id} is listed twice`);
    seen.add(id);
  }
  return { zone, ...(gateway === undefined ? {} : { gateway }), services };
}

/**
 * Parses the Inventory JSON a zone sent on its stream. FORBIDDEN when it
 * names another zone (a zone writes only under its own name); VALIDATION
 * with the field path for anything malformed.
 */
export function parseInventory(json: Buffer, streamZone: string): ZoneInventory {
  let value: unknown;
  try {
    value = JSON.parse(json.toString('utf8'));
  } catch (err) {
    throw new MeshError(ErrorCodes.DECODE, `inventory is not JSON: ${(err as Error).message}`);
  }
  if (isRecord(value) && typeof value.zone === 'string' && value.zone !== streamZone) {
    throw new MeshError(
      ErrorCodes.FORBIDDEN,
      `inventory names zone "${value.zone}" but this stream is authenticated as zone "${streamZone}"; a zone reports only its own inventory`,
      { field: 'zone' },
    );
  }
  return readInventory(value);
}

/** Parses the catalog global sent (zone side). */
export function parseCatalog(json: Buffer): ServiceCatalog {
  let value: unknown;
  try {
    value = JSON.parse(json.toString('utf8'));
  } catch (err) {
    throw new MeshError(ErrorCodes.DECODE, `catalog is not JSON: ${(err as Error).message}`);
  }
  const catalog = object(value, 'catalog');
  const zones: RemoteZone[] = array(catalog.zones ?? [], 'zones', 10_000).map((raw, i) => {
    const z = object(raw, `zones[${i}]`);
    return {
      ...readInventory(z, `zones[${i}]`),
      connected: z.connected === true,
      lastSeen: typeof z.lastSeen === 'string' ? z.lastSeen : '',
    };
  });
  return { zones };
}
