/**
 * The last certificate the zone CA issued per workload and per identity,
 * so `/inspect/proxies` can show each proxy's certificate expiry. Bounded:
 * the oldest entries go first.
 */

export interface IssuanceRecord {
  spiffeId: string;
  serial: string;
  notAfter: Date;
  issuedAt: Date;
  /** How the caller authenticated. */
  via: string;
  namespace: string;
  workload?: string;
}

const DEFAULT_CAPACITY = 50_000;

export class IssuanceLog {
  private readonly byWorkload = new Map<string, IssuanceRecord>();
  private readonly bySpiffeId = new Map<string, IssuanceRecord>();

  constructor(private readonly capacity = DEFAULT_CAPACITY) {}

  record(entry: IssuanceRecord): void {
    if (entry.workload !== undefined)
      put(this.byWorkload, `${entry.namespace}/${entry.workload}`, entry, this.capacity);
    put(this.bySpiffeId, entry.spiffeId, entry, this.capacity);
  }

  /** The latest certificate of a workload, else of its identity. */
  latest(namespace: string, workload: string, spiffeId: string): IssuanceRecord | undefined {
    return this.byWorkload.get(`${namespace}/${workload}`) ?? this.bySpiffeId.get(spiffeId);
  }
}

function put(map: Map<string, IssuanceRecord>, key: string, entry: IssuanceRecord, capacity: number): void {
  // Re-inserting moves the key to the end, so iteration order is oldest first.
  map.delete(key);
  map.set(key, entry);
  if (map.size > capacity) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
}
