/**
 * The zone's link to global (KDS): the KDS client syncs policies, the zone
 * CA, the trust bundle, global's token keys and the cross-zone catalog
 * into the zone store, and reports this zone's inventory and status. The
 * zone CP reads all of it from the store, so it works the same while
 * global is away.
 */

import { readFile } from 'node:fs/promises';
import { ErrorCodes, MeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { ZoneInventory } from '../core/mesh/inventory.js';
import type { ZoneTelemetrySummary } from '../core/telemetry/telemetry-report.js';
import type { Store } from '../core/store/store.js';
import { KdsClient } from './kds/kds-client.js';
import type { GlobalConnection } from './options.js';

export interface KdsLink {
  notifyInventoryChanged(): void;
  /** Resolves after the first complete sync (or at once from a previous one kept in the store). */
  ready(): Promise<void>;
  readonly connected: boolean;
  /** Problems of the link, for /inspect/errors. */
  errors(): string[];
  close(): Promise<void>;
}

export interface KdsLinkOptions {
  zone: string;
  global: GlobalConnection;
  store: Store;
  logger: Logger;
  inventory: () => ZoneInventory;
  status: () => { connectedProxies: number; errors: string[] };
  /** The zone's telemetry summary since the previous call, for global's dashboard. */
  telemetry?: (zone: string) => ZoneTelemetrySummary;
}

export async function startKdsLink(options: KdsLinkOptions): Promise<KdsLink> {
  const { global } = options;
  const caPem = global.caPem ?? (await readSetting(global.caFile, 'global CA'));
  const token = global.token ?? (await readSetting(global.tokenFile, 'zone token'));
  const client = new KdsClient({
    zone: options.zone,
    globalAddresses: global.addresses,
    globalCaPem: caPem,
    token,
    store: options.store,
    inventory: options.inventory,
    status: options.status,
    ...(options.telemetry === undefined ? {} : { telemetry: options.telemetry }),
    logger: options.logger,
  });
  client.start();
  return {
    notifyInventoryChanged: () => client.notifyInventoryChanged(),
    ready: () => client.ready(),
    get connected() {
      return client.connected;
    },
    errors: () => {
      const err = client.lastError;
      return err === undefined || client.connected ? [] : [`KDS: ${err.message}`];
    },
    close: () => client.close(),
  };
}

async function readSetting(file: string | undefined, what: string): Promise<string> {
  if (file === undefined) {
    throw new MeshError(ErrorCodes.CONFIG, `connecting to global needs the ${what} (a file or the value)`);
  }
  try {
    const text = (await readFile(file, 'utf8')).trim();
    if (text === '') throw new Error('the file is empty');
    return what === 'global CA' ? text + '\n' : text;
  } catch (err) {
    throw new MeshError(ErrorCodes.CONFIG, `cannot read the ${what} file ${file}: ${(err as Error).message}`);
  }
}
