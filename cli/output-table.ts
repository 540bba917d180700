/**
 * kubectl-like output: aligned tables with kind-specific columns, ages
 * (`5m30s`, `3d`), and `kind.group/name` references.
 */

/** A resource as the API returns it; only the envelope is relied on. */
export interface ApiObject {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: unknown;
  spec?: unknown;
  [key: string]: unknown;
}

interface Column {
  header: string;
  /** `now` is the table's reference time, for age-like cells. */
  value(obj: ApiObject, now: number): string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Value at a dotted path (`spec.mtls.mode`), or undefined. */
export function valueAt(obj: unknown, dotted: string): unknown {
  let current: unknown = obj;
  for (const part of dotted.split('.')) {
    if (!isRecord(current)) return undefined;
    current = current[part];
  }
  return current;
}

function text(value: unknown, fallback = '<none>'): string {
  if (value === undefined || value === null || value === '') return fallback;
  if (Array.isArray(value)) return value.length === 0 ? fallback : value.map((v) => text(v, '')).join(',');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function field(header: string, dotted: string, fallback?: string): Column {
  return { header, value: (obj) => text(valueAt(obj, dotted), fallback) };
}

/** Kind-specific columns between NAME and AGE, keyed by canonical kind. */
const kindColumns: Record<string, Column[]> = {
  VirtualService: [field('GATEWAYS', 'spec.gateways'), field('HOSTS', 'spec.hosts')],
  DestinationRule: [
    field('HOST', 'spec.host'),
    {
      header: 'SUBSETS',
      value: (obj) => {
        const subsets = valueAt(obj, 'spec.subsets');
        return Array.isArray(subsets) ? text(subsets.map((s) => valueAt(s, 'name'))) : '<none>';
      },
    },
  ],
  ServiceEntry: [
    field('HOSTS', 'spec.hosts'),
    field('LOCATION', 'spec.location', 'MESH_EXTERNAL'),
    field('RESOLUTION', 'spec.resolution', 'NONE'),
  ],
  WorkloadEntry: [field('ADDRESS', 'spec.address'), field('NETWORK', 'spec.network')],
  WorkloadGroup: [field('SERVICE-ACCOUNT', 'spec.template.serviceAccount')],
  PeerAuthentication: [field('MODE', 'spec.mtls.mode', 'UNSET')],
  AuthorizationPolicy: [field('ACTION', 'spec.action', 'ALLOW')],
  Mesh: [
    field('TRUST-DOMAIN', 'spec.trustDomain', 'cluster.local'),
    field('MTLS', 'spec.mtls.mode', '<none>'),
  ],
  Zone: [
    {
      header: 'ENABLED',
      value: (obj) => {
        const enabled = valueAt(obj, 'spec.enabled');
        return enabled === false ? 'false' : 'true';
      },
    },
    // Written by global's KDS server (docs/kds.md): the zone's stream and sync progress.
    {
      header: 'CONNECTED',
      value: (obj) => {
        const connected = valueAt(obj, 'status.connected');
        return typeof connected === 'boolean' ? String(connected) : '<unknown>';
      },
    },
    {
      header: 'LAST-SYNC',
      value: (obj, now) => {
        const at = Date.parse(text(valueAt(obj, 'status.lastSync'), ''));
        return Number.isNaN(at) ? '<never>' : `${formatAge(now - at)} ago`;
      },
    },
    field('REVISION', 'status.appliedRevision'),
    field('PROXIES', 'status.proxies'),
    field('VERSION', 'status.version'),
  ],
};

/**
 * Human duration like kubectl's: `45s`, `5m30s`, `45m`, `5h30m`, `40h`,
 * `3d5h`, `200d`, `3y`.
 */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const d = Math.floor(h / 24);
  if (s < 120) return `${s}s`;
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (h < 3) return `${m}m`;
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  if (d < 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (d < 365 * 2) return `${d}d`;
  return `${Math.floor(d / 365)}y`;
}

/** Lay out rows in columns separated by three spaces, like kubectl. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? cell.length)))
      .join('   ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

export interface TableOptions {
  /** Canonical kind (decides the extra columns). */
  kind: string;
  /** Add a NAMESPACE column (get -A). */
  withNamespace: boolean;
  /** Reference time for AGE; default now. */
  now?: number;
}

/** Header row and cell rows for a list of one kind. */
export function tableRows(
  objects: ApiObject[],
  options: TableOptions,
): { headers: string[]; rows: string[][] } {
  const now = options.now ?? Date.now();
  const extra = kindColumns[options.kind] ?? [];
  const headers = [
    ...(options.withNamespace ? ['NAMESPACE'] : []),
    'NAME',
    ...extra.map((c) => c.header),
    'AGE',
  ];
  const rows = objects.map((obj) => {
    const created = Date.parse(text(valueAt(obj, 'metadata.creationTimestamp'), ''));
    return [
      ...(options.withNamespace ? [text(valueAt(obj, 'metadata.namespace'), '')] : []),
      text(valueAt(obj, 'metadata.name'), ''),
      ...extra.map((c) => c.value(obj, now)),
      Number.isNaN(created) ? '<unknown>' : formatAge(now - created),
    ];
  });
  return { headers, rows };
}

/** The table `meshfed get` prints. */
export function formatResourceTable(objects: ApiObject[], options: TableOptions): string {
  const { headers, rows } = tableRows(objects, options);
  return formatTable(headers, rows);
}

/**
 * `virtualservice.networking.istio.io` for a kind and apiVersion, the
 * resource-type prefix kubectl prints (the group is omitted for core `v1`).
 */
export function kindRef(kind: string, apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  const group = slash === -1 ? '' : apiVersion.slice(0, slash);
  return group ? `${kind.toLowerCase()}.${group}` : kind.toLowerCase();
}

/** `virtualservice.networking.istio.io/reviews` for an object. */
export function objectRef(obj: ApiObject): string {
  return `${kindRef(text(obj.kind, ''), text(obj.apiVersion, ''))}/${text(valueAt(obj, 'metadata.name'), '')}`;
}

/** Sort by namespace, then name, so output is stable whatever the store's order. */
export function sortObjects(objects: ApiObject[]): ApiObject[] {
  const key = (o: ApiObject): string =>
    `${text(valueAt(o, 'metadata.namespace'), '')}\u0000${text(valueAt(o, 'metadata.name'), '')}`;
  return [...objects].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}
