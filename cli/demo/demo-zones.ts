/**
 * The demo's zones: a zone CP in universal mode wired to the global CP over
 * KDS (zone token from global, intermediate CA signed by global, policies
 * and the catalog from global), and its east-west gateway, which takes its
 * routing table from the zone over MDS with a gateway token the zone issued.
 */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { GatewayHandle } from '../../eastwest-gateway/index.js';
import type { GlobalCpHandle } from '../../global-cp/options.js';
import type { ZoneCpHandle } from '../../zone-cp/options.js';
import { pollUntil, requestJson, requestOk, waitForHttpOk } from './demo-http.js';
import type { ZonePorts } from './demo-ports.js';

export interface DemoZone {
  readonly name: string;
  readonly cp: ZoneCpHandle;
  /** host:port other zones' proxies dial (the gateway's listener). */
  readonly gatewayAddress: string;
  gateway?: GatewayHandle;
}

/** Read the admin token global wrote; the zones accept it too. */
export async function readAdminToken(global: GlobalCpHandle): Promise<string> {
  return (await fs.readFile(global.adminTokenFile, 'utf8')).trim();
}

/**
 * Start one zone CP connected to `global`. `ports.gateway` is what the zone
 * announces as its gateway address (the gateway starts after the zone,
 * since it needs the zone's MDS).
 */
export async function startDemoZone(
  global: GlobalCpHandle,
  adminToken: string,
  dataDir: string,
  zone: string,
  ports: ZonePorts,
): Promise<DemoZone> {
  const issued = await requestJson('POST', `${global.url}/api/v1/tokens`, adminToken, {
    kind: 'zone',
    zone,
    name: zone,
  });
  if (issued.status !== 201 || typeof issued.json.token !== 'string') {
    throw new MeshError(
      ErrorCodes.INTERNAL,
      `global refused a token for ${zone}: ${String(issued.json.message)}`,
    );
  }
  const gatewayAddress = `127.0.0.1:${ports.gateway}`;
  const { startZoneCp } = await import('../../zone-cp/zone-cp.js');
  const cp = await startZoneCp({
    zone,
    dataDir: path.join(dataDir, zone),
    port: ports.rest,
    grpcPort: ports.grpc,
    discovery: [{ name: 'universal' }],
    gatewayAddress,
    pushDebounceMs: 50,
    global: { addresses: [global.kdsAddress], caPem: global.caCertPem, token: issued.json.token },
  });
  try {
    await cp.ready();
    await waitForHttpOk(`${cp.restUrl}/readyz`);
  } catch (err) {
    await cp.close();
    throw err;
  }
  return { name: zone, cp, gatewayAddress };
}

/** Start the zone's east-west gateway on `ports.gateway`, fed by the zone's MDS. */
export async function startDemoGateway(
  zone: DemoZone,
  adminToken: string,
  dataDir: string,
  ports: ZonePorts,
  logger: Logger,
): Promise<GatewayHandle> {
  const issued = await requestOk(
    `a gateway token from ${zone.name}`,
    'POST',
    `${zone.cp.restUrl}/api/v1/tokens`,
    adminToken,
    {
      kind: 'proxy',
      workload: 'eastwest-gateway',
      namespace: 'istio-system',
      serviceAccount: 'eastwest-gateway',
      role: 'gateway',
    },
  );
  const tokenFile = path.join(dataDir, zone.name, 'gateway-token');
  await fs.writeFile(tokenFile, String(issued.token), { mode: 0o600 });
  const { startGateway } = await import('../../eastwest-gateway/index.js');
  const gateway = await startGateway({
    host: '127.0.0.1',
    port: ports.gateway,
    adminPort: ports.gatewayAdmin,
    processMetrics: false,
    mds: {
      address: zone.cp.grpcAddress,
      caPem: zone.cp.caPem,
      tokenFile,
      proxyId: `eastwest-gateway-${zone.name}`,
    },
    logger,
  });
  zone.gateway = gateway;
  return gateway;
}

/** Resolves once the gateway applied its first table from the zone. */
export async function waitForGatewayReady(zone: DemoZone, gateway: GatewayHandle): Promise<void> {
  await pollUntil(`the ${zone.name} gateway's first table`, () =>
    Promise.resolve(gateway.notReadyReason() === undefined ? true : undefined),
  );
}

/** Waits until global's KDS server lists every zone as connected, so the summary tells the truth. */
export async function waitForZonesConnected(
  global: GlobalCpHandle,
  adminToken: string,
  zones: string[],
): Promise<void> {
  await pollUntil(`zones ${zones.join(', ')} connecting to global`, async () => {
    const answer = await requestJson('GET', `${global.url}/api/v1/kds`, adminToken);
    const connected = JSON.stringify(answer.json.connectedZones ?? []);
    return zones.every((zone) => connected.includes(`"${zone}"`)) ? true : undefined;
  });
}
