/**
 * The zone's inspect endpoints (read access): what every proxy runs and
 * whether it accepted it, the snapshot compiled for one proxy, what the
 * compiler and discovery skipped, and the inventory reported to global.
 */

import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { Router } from '../../core/http/router.js';
import { sendJson } from '../../core/http/respond.js';
import type { ZoneInventory } from '../../core/mesh/inventory.js';
import type { CompileProblem } from '../compiler/compile-problems.js';
import type { DiscoveryProblem } from '../discovery/discovery.js';
import type { MdsServer } from '../mds/mds-server.js';

export interface InspectSources {
  zone: string;
  mds: MdsServer;
  compileProblems(): CompileProblem[];
  discoveryProblems(): DiscoveryProblem[];
  /** Problems outside the compiler (the CA secret, KDS), as text. */
  otherProblems(): string[];
  inventory(): ZoneInventory;
}

export function registerInspectRoutes(router: Router, sources: InspectSources): void {
  router
    .add('GET', '/inspect/proxies', 'read', (ctx) => {
      const proxies = sources.mds.records();
      sendJson(ctx.res, 200, {
        zone: sources.zone,
        connected: proxies.filter((p) => p.connected).length,
        proxies,
      });
    })
    .add('GET', '/inspect/proxies/:id', 'read', (ctx) => {
      const id = ctx.params.id ?? '';
      const record = sources.mds.record(id);
      if (record === undefined) throw noProxy(id);
      sendJson(ctx.res, 200, record);
    })
    .add('GET', '/inspect/proxies/:id/config', 'read', (ctx) => {
      const id = ctx.params.id ?? '';
      if (sources.mds.record(id) === undefined) throw noProxy(id);
      const snapshot = sources.mds.snapshotOf(id);
      if (snapshot === undefined) {
        throw new MeshError(
          ErrorCodes.NOT_FOUND,
          `proxy ${id} has no config: its workload is not discovered`,
        );
      }
      // The snapshot is already JSON text: send it as compiled, byte for byte.
      ctx.res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(snapshot.json),
        'meshfed-config-version': snapshot.version,
      });
      ctx.res.end(snapshot.json);
    })
    .add('GET', '/inspect/errors', 'read', (ctx) => {
      sendJson(ctx.res, 200, {
        zone: sources.zone,
        resources: sources.compileProblems(),
        discovery: sources.discoveryProblems(),
        other: sources.otherProblems(),
      });
    })
    .add('GET', '/inspect/inventory', 'read', (ctx) => sendJson(ctx.res, 200, sources.inventory()));
}

function noProxy(id: string): MeshError {
  return new MeshError(ErrorCodes.NOT_FOUND, `no proxy with id ${id} is or was connected to this zone`);
}
