import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { createRootCa } from '../../core/pki/ca.js';
import { SERVICE_CATALOG_KIND } from '../../core/auth/internal-kinds.js';
import { checkGlobalIdentity } from '../../zone-cp/kds/kds-client-tls.js';
import { http } from '../common/http.js';
import { waitFor } from '../common/wait.js';
import {
  changesOf,
  hello,
  inventoryWith,
  openRawStream,
  peerAuthentication,
  startTestGlobal,
  startTestZone,
  type TestGlobal,
} from './kds-harness.js';

describe('KDS authentication and refusals', () => {
  let global: TestGlobal;

  beforeAll(async () => {
    global = await startTestGlobal({}, { gracePeriodMs: 60_000, maxMessagesPerSecond: 20, messageBurst: 40 });
  });

  afterAll(async () => {
    await global?.close();
  });

  it('refuses a stream without a token, naming what to send', async () => {
    const stream = openRawStream(global, undefined);
    stream.write(hello('zone-a'));
    const status = await stream.status;
    expect(status.code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect(status.meshCode).toBe('MESHFED_ERR_UNAUTHENTICATED');
    expect(status.details).toMatch(/missing zone token/);
  });

  it('refuses a token of another kind and a forged one', async () => {
    const readonly = await http(`${global.cp.url}/api/v1/tokens`, {
      method: 'POST',
      token: global.admin,
      body: JSON.stringify({ kind: 'readonly' }),
      contentType: 'application/json',
    });
    const stream = openRawStream(global, (readonly.json as { token: string }).token);
    stream.write(hello('zone-a'));
    const status = await stream.status;
    expect(status.code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect(status.details).toMatch(
      /MESHFED_ERR_TOKEN_INVALID: wrong token kind: expected zone, got readonly/,
    );

    const { token } = await global.zoneToken('zone-a');
    const forged = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    const second = openRawStream(global, forged);
    second.write(hello('zone-a'));
    expect((await second.status).details).toMatch(/MESHFED_ERR_TOKEN_INVALID/);
  });

  it('refuses a zone-a token used by a stream claiming to be zone-b', async () => {
    const { token } = await global.zoneToken('zone-a');
    const stream = openRawStream(global, token);
    stream.write(hello('zone-b'));
    const status = await stream.status;
    expect(status.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(status.details).toBe(
      'MESHFED_ERR_FORBIDDEN: the token is for zone "zone-a" but the stream says it is zone "zone-b"; a zone token works only for its own zone',
    );
  });

  it('refuses a zone token request without a valid zone name', async () => {
    const answer = await http(`${global.cp.url}/api/v1/tokens`, {
      method: 'POST',
      token: global.admin,
      body: JSON.stringify({ kind: 'zone', zone: 'Not_A_Zone' }),
      contentType: 'application/json',
    });
    expect(answer.status).toBe(400);
    expect(answer.json).toMatchObject({ code: 'MESHFED_ERR_INVALID_ARGUMENT', field: 'zone' });
  });

  it('ends an open stream when its token is revoked, and refuses it afterwards', async () => {
    const { token, id } = await global.zoneToken('zone-r');
    const zone = await startTestZone('zone-r', global, { token });
    try {
      await zone.client.ready();
      await waitFor(() => zone.client.connected, { what: 'zone-r connected' });
      await global.remove(`/api/v1/tokens/${id}`);
      await waitFor(() => zone.client.lastError?.code === 'MESHFED_ERR_TOKEN_INVALID', {
        what: 'stream ended by revocation',
      });
      expect(zone.client.lastError?.message).toMatch(/revoked/);
      // Reconnects keep being refused.
      const stream = openRawStream(global, token);
      stream.write(hello('zone-r'));
      const status = await stream.status;
      expect(status.code).toBe(GrpcStatus.UNAUTHENTICATED);
      expect(status.details).toMatch(/token .* is revoked/);
      expect(zone.client.connected).toBe(false);
    } finally {
      await zone.close();
    }
  });

  it('ends a stream when its token expires', async () => {
    const { token } = await global.zoneToken('zone-x', '1s');
    const stream = openRawStream(global, token);
    stream.write(hello('zone-x'));
    const status = await stream.status;
    expect(status.code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect(status.details).toMatch(/expired/);
  });

  it('refuses a disabled zone, withdraws its services from other catalogs at once, and lets it back when enabled', async () => {
    const d = await startTestZone('zone-d', global);
    const watcher = await startTestZone('zone-w', global);
    try {
      d.setInventory(inventoryWith('payments', 2));
      const catalogZones = async () =>
        (
          (await watcher.store.get({ kind: SERVICE_CATALOG_KIND, namespace: '', name: 'catalog' }))?.spec as
            { zones: Array<{ zone: string }> } | undefined
        )?.zones.map((z) => z.zone) ?? [];
      await waitFor(async () => (await catalogZones()).includes('zone-d'), { what: 'zone-d in the catalog' });
      await global.apply(
        'apiVersion: meshfed.io/v1alpha1\nkind: Zone\nmetadata: {name: zone-d}\nspec: {enabled: false}\n',
      );
      await waitFor(() => d.client.lastError?.code === 'MESHFED_ERR_FORBIDDEN', { what: 'zone-d refused' });
      expect(d.client.lastError?.message).toMatch(/zone "zone-d" (was disabled|is disabled)/);
      // Withdrawn without waiting for the 60 s grace period.
      await waitFor(async () => !(await catalogZones()).includes('zone-d'), {
        what: 'zone-d withdrawn',
        timeoutMs: 5000,
      });
      const status = await global.get('/apis/meshfed.io/v1alpha1/zones/zone-d');
      expect((status.json as { status: { connected: boolean } }).status.connected).toBe(false);

      await global.apply(
        'apiVersion: meshfed.io/v1alpha1\nkind: Zone\nmetadata: {name: zone-d}\nspec: {enabled: true}\n',
      );
      await waitFor(() => d.client.connected, { what: 'zone-d back', timeoutMs: 10_000 });
      await waitFor(async () => (await catalogZones()).includes('zone-d'), {
        what: 'zone-d back in the catalog',
      });
    } finally {
      await d.close();
      await watcher.close();
    }
  });

  it('forgets a deleted zone: its services leave other catalogs without waiting for the grace period', async () => {
    const gone = await startTestZone('zone-del', global);
    const watcher = await startTestZone('zone-w2', global);
    try {
      gone.setInventory(inventoryWith('cart', 1));
      const catalogZones = async () =>
        (
          (await watcher.store.get({ kind: SERVICE_CATALOG_KIND, namespace: '', name: 'catalog' }))?.spec as
            { zones: Array<{ zone: string; connected: boolean }> } | undefined
        )?.zones ?? [];
      await waitFor(async () => (await catalogZones()).some((z) => z.zone === 'zone-del'), {
        what: 'zone-del in catalog',
      });
      await gone.client.close();
      // Disconnected but inside the 60 s grace period: still listed, marked disconnected.
      await waitFor(async () => (await catalogZones()).some((z) => z.zone === 'zone-del' && !z.connected), {
        what: 'zone-del listed as disconnected',
      });
      await global.remove('/apis/meshfed.io/v1alpha1/zones/zone-del');
      await waitFor(async () => !(await catalogZones()).some((z) => z.zone === 'zone-del'), {
        what: 'deleted zone withdrawn',
        timeoutMs: 5000,
      });
      expect((await global.get('/apis/meshfed.io/v1alpha1/zones/zone-del')).status).toBe(404);
    } finally {
      await gone.close();
      await watcher.close();
    }
  });

  it('ends the stream of a zone deleted while connected', async () => {
    const { token } = await global.zoneToken('zone-del2');
    const stream = openRawStream(global, token);
    stream.write(hello('zone-del2'));
    await waitFor(() => stream.messages.some((m) => m.changes?.synced));
    await global.remove('/apis/meshfed.io/v1alpha1/zones/zone-del2');
    const status = await stream.status;
    expect(status.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(status.details).toMatch(/zone "zone-del2" was deleted/);
  });

  it('speaks to an older zone (protocol 1) with a full resync and live changes', async () => {
    await global.apply(peerAuthentication('for-old-zones'));
    const { token } = await global.zoneToken('zone-old');
    const stream = openRawStream(global, token);
    stream.write(hello('zone-old', { protocol_version: 1, min_protocol_version: 1, capabilities: [] }));
    try {
      const welcome = await waitFor(() => stream.messages.find((m) => m.welcome)?.welcome, {
        what: 'Welcome',
      });
      expect(welcome?.protocol_version).toBe(1);
      expect(welcome?.capabilities).toEqual([]);
      const first = await waitFor(async () => (await changesOf(stream)).find((c) => c.synced), {
        what: 'full resync',
      });
      expect(first.full).toBe(true);
      expect(first.payload.upserts.map((u) => u.object.metadata.name)).toContain('for-old-zones');
      // Without "gzip" the payload is plain JSON.
      const raw = stream.messages.find((m) => m.changes)?.changes;
      expect(raw?.encoding).toBe('identity');
      await global.apply(peerAuthentication('later'));
      await waitFor(
        async () =>
          (await changesOf(stream)).some((c) =>
            c.payload.upserts.some((u) => u.object.metadata.name === 'later'),
          ),
        {
          what: 'live change to a v1 zone',
        },
      );
    } finally {
      stream.close();
    }
  });

  it('refuses a zone that speaks only newer versions, naming both ranges', async () => {
    const { token } = await global.zoneToken('zone-new');
    const stream = openRawStream(global, token);
    stream.write(hello('zone-new', { protocol_version: 4, min_protocol_version: 3 }));
    const status = await stream.status;
    expect(status.code).toBe(GrpcStatus.FAILED_PRECONDITION);
    expect(status.details).toBe(
      'MESHFED_ERR_UNSUPPORTED_VERSION: no common KDS protocol version: the zone speaks versions 3-4, global speaks versions 1-2; upgrade the global control plane',
    );
  });

  it('refuses a stream whose first message is not Hello', async () => {
    const { token } = await global.zoneToken('zone-a');
    const stream = openRawStream(global, token);
    stream.write({ ack: { nonce: '1', revision: '0' } });
    const status = await stream.status;
    expect(status.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(status.details).toMatch(/first message on a KDS stream must be Hello, got ack/);
  });

  it('refuses inventory for another zone and malformed inventory, naming the field', async () => {
    const { token } = await global.zoneToken('zone-i');
    const stream = openRawStream(global, token);
    stream.write(hello('zone-i'));
    await waitFor(() => stream.messages.some((m) => m.welcome));
    stream.write({ inventory: { json: Buffer.from(JSON.stringify({ zone: 'zone-b', services: [] })) } });
    const status = await stream.status;
    expect(status.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(status.details).toMatch(
      /inventory names zone "zone-b" but this stream is authenticated as zone "zone-i"/,
    );
    const inventory = await global.get('/apis/meshfed.io/v1alpha1/zones/zone-b');
    expect(inventory.status).toBe(404);

    const second = openRawStream(global, token);
    second.write(hello('zone-i'));
    await waitFor(() => second.messages.some((m) => m.welcome));
    const bad = {
      zone: 'zone-i',
      services: [
        { name: 'web', namespace: 'demo', ports: [{ name: 'http', port: 70000, protocol: 'http' }] },
      ],
    };
    second.write({ inventory: { json: Buffer.from(JSON.stringify(bad)) } });
    const badStatus = await second.status;
    expect(badStatus.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(badStatus.details).toBe(
      'MESHFED_ERR_VALIDATION: inventory: services[0].ports[0].port: must be an integer 1-65535',
    );
  });

  it('stores no more of a zone than it needs: a long software version is cut, a NACK of nothing sent ignored', async () => {
    const { token } = await global.zoneToken('zone-v');
    const stream = openRawStream(global, token);
    try {
      stream.write(hello('zone-v', { software_version: 'v'.repeat(100_000) }));
      await waitFor(() => stream.messages.some((m) => m.welcome));
      stream.write({
        nack: {
          nonce: 'never-sent',
          revision: '0',
          errors: Array.from({ length: 50 }, (_, i) => ({
            kind: 'Invented',
            namespace: 'x',
            name: `n${i}-${'k'.repeat(1000)}`,
            error: 'e'.repeat(2000),
          })),
        },
      });
      type ZoneStatus = { status?: { version?: string; errors?: string[] } };
      const zone = await waitFor(
        async () => {
          const answer = await global.get('/apis/meshfed.io/v1alpha1/zones/zone-v');
          const status = (answer.json as ZoneStatus).status;
          return status?.version === undefined ? undefined : status;
        },
        { what: 'the zone to be recorded' },
      );
      expect(zone.version).toBe('v'.repeat(100));
      // The NACK has been read by now if the stream is still open after a later message.
      stream.write({
        status: {
          connected_proxies: 0,
          software_version: 'w'.repeat(5000),
          errors: [],
          config_revision: '0',
        },
      });
      await waitFor(
        async () =>
          ((await global.get('/apis/meshfed.io/v1alpha1/zones/zone-v')).json as ZoneStatus).status
            ?.version === 'w'.repeat(100) || undefined,
        { what: 'the status message to be applied' },
      );
      const after = (await global.get('/apis/meshfed.io/v1alpha1/zones/zone-v')).json as ZoneStatus;
      expect(after.status?.errors ?? []).toEqual([]);
    } finally {
      stream.close();
    }
  });

  it('cuts off a zone flooding messages without disturbing another zone', async () => {
    const calm = await startTestZone('zone-calm', global);
    try {
      await calm.client.ready();
      const { token } = await global.zoneToken('zone-flood');
      const stream = openRawStream(global, token);
      stream.write(hello('zone-flood'));
      await waitFor(() => stream.messages.some((m) => m.welcome));
      for (let i = 0; i < 200; i++) {
        stream.write({
          inventory: {
            json: Buffer.from(
              JSON.stringify({
                zone: 'zone-flood',
                services: [],
                gateway: { address: '10.0.0.1', port: 1000 + i },
              }),
            ),
          },
        });
      }
      const status = await stream.status;
      expect(status.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
      expect(status.details).toMatch(/zone zone-flood sent more than 20 messages\/s \(burst 40\)/);
      // The flood was coalesced: its inventory was written a handful of times, not 200.
      await global.apply(peerAuthentication('after-flood'));
      await waitFor(async () => (await calm.synced('PeerAuthentication')).includes('demo/after-flood'), {
        what: 'calm zone still synced',
      });
      expect(calm.client.connected).toBe(true);
      const stored = await global.get(`/apis/meshfed.io/v1alpha1/zones/zone-flood`);
      expect(stored.status).toBe(200);
    } finally {
      await calm.close();
    }
  });

  it('is refused by a zone that pins another CA, and checks the SPIFFE ID rather than the hostname', async () => {
    const other = createRootCa({ trustDomain: 'cluster.local' });
    const { token } = await global.zoneToken('zone-a');
    const stream = openRawStream(global, token, { caPem: other.certPem });
    stream.write(hello('zone-a'));
    const status = await stream.status;
    expect(status.code).toBe(GrpcStatus.UNAVAILABLE);
    const peer = {
      subjectaltname: 'DNS:localhost, URI:spiffe://cluster.local/ns/default/sa/web',
    } as Parameters<typeof checkGlobalIdentity>[0];
    expect(checkGlobalIdentity(peer, 'cluster.local')?.message).toMatch(
      /names spiffe:\/\/cluster.local\/ns\/default\/sa\/web, want spiffe:\/\/cluster.local\/ns\/meshfed-system\/sa\/global-cp/,
    );
    const good = {
      subjectaltname: 'DNS:localhost, URI:spiffe://cluster.local/ns/meshfed-system/sa/global-cp',
    } as Parameters<typeof checkGlobalIdentity>[0];
    expect(checkGlobalIdentity(good, 'cluster.local')).toBeUndefined();
    expect(checkGlobalIdentity(good, 'other.domain')).toBeDefined();
  });
});
