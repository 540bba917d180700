/**
 * The gateway's MDS wiring: subscribe to the zone CP as a proxy of kind
 * `gateway` and feed every snapshot to `applySnapshot` (a throw NACKs it and
 * the last good table stays). The token is read from its file at each
 * (re)connect, so rotating the file is enough to rotate the credential.
 */

import { readFileSync } from 'node:fs';
import os from 'node:os';
import { ErrorCodes, MeshError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { MdsClient } from '../core/mds/mds-client.js';
import { GATEWAY_SNAPSHOT_TYPE } from '../core/mesh/snapshot.js';
import type { GatewayMdsOptions } from './gateway-options.js';

export interface SnapshotSink {
  applySnapshot(json: unknown, version?: string): void;
}

function readToken(file: string): string {
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `cannot read the gateway token file ${file}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  if (!token) throw new MeshError(ErrorCodes.CONFIG, `the gateway token file ${file} is empty`);
  return token;
}

/** Start following the zone CP's gateway snapshots. The caller closes the returned client. */
export function startGatewayMds(options: GatewayMdsOptions, sink: SnapshotSink, logger: Logger): MdsClient {
  // Fail at start on a missing token rather than in the reconnect loop.
  readToken(options.tokenFile);
  const client = new MdsClient({
    address: options.address,
    caPem: options.caPem,
    credential: () => ({ token: readToken(options.tokenFile) }),
    hello: {
      proxyId: options.proxyId ?? `gateway-${os.hostname()}-${process.pid}`,
      kind: 'gateway',
      workload: '',
      namespace: '',
    },
    onSnapshot: ({ version, type, json }) => {
      if (type !== GATEWAY_SNAPSHOT_TYPE) {
        throw new MeshError(
          ErrorCodes.VALIDATION,
          `snapshot type ${JSON.stringify(type)} is not ${GATEWAY_SNAPSHOT_TYPE}: is this stream a gateway's?`,
        );
      }
      sink.applySnapshot(json, version);
    },
    logger: logger.child('mds'),
  });
  client.on('connected', () =>
    logger.info('connected to the zone control plane', { address: options.address }),
  );
  client.start();
  return client;
}
