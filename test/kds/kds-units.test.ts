import { describe, expect, it } from '@jest/globals';
import { isMeshError } from '../../core/errors.js';
import { parseCatalog, parseInventory } from '../../core/kds/kds-inventory.js';
import { decodePayload, encodePayload, readRevision } from '../../core/kds/kds-messages.js';
import {
  appliesToZone,
  negotiateCapabilities,
  negotiateVersion,
  syncedKinds,
} from '../../core/kds/kds-protocol.js';
import { grpcStatusOf, meshErrorOfStatus } from '../../core/kds/kds-grpc.js';
import { MeshError, ErrorCodes } from '../../core/errors.js';
import { DEFAULT_BACKOFF, backoffDelay } from '../../zone-cp/kds/kds-backoff.js';
import { TokenBucket } from '../../core/token-bucket.js';
import { Semaphore } from '../../global-cp/kds/kds-semaphore.js';
import { resolveKdsSettings } from '../../global-cp/kds/kds-settings.js';

describe('version negotiation', () => {
  it('picks the highest common version', () => {
    expect(negotiateVersion({ min: 1, max: 2 }, { min: 1, max: 2 })).toBe(2);
    expect(negotiateVersion({ min: 1, max: 1 }, { min: 1, max: 2 })).toBe(1);
    expect(negotiateVersion({ min: 1, max: 3 }, { min: 1, max: 2 })).toBe(2);
  });

  it('names the side to upgrade', () => {
    expect(() => negotiateVersion({ min: 1, max: 1 }, { min: 2, max: 3 })).toThrow(
      'no common KDS protocol version: the zone speaks version 1, global speaks versions 2-3; upgrade the zone control plane',
    );
  });

  it('never offers resume on version 1', () => {
    expect(negotiateCapabilities(['resume', 'gzip'], ['resume', 'progress', 'gzip'], 1)).toEqual(['gzip']);
    expect(negotiateCapabilities(['resume', 'gzip'], ['resume', 'progress', 'gzip'], 2)).toEqual([
      'resume',
      'gzip',
    ]);
  });
});

describe('what goes where', () => {
  it('syncs every public kind but Zone', () => {
    expect(syncedKinds()).toContain('Mesh');
    expect(syncedKinds()).toContain('AuthorizationPolicy');
    expect(syncedKinds()).not.toContain('Zone');
  });

  it('scopes labelled resources to their zone', () => {
    const r = (labels?: Record<string, string>) => ({
      apiVersion: 'v',
      kind: 'K',
      metadata: { name: 'n', labels },
      spec: {},
    });
    expect(appliesToZone(r(), 'zone-a')).toBe(true);
    expect(appliesToZone(r({ 'meshfed.io/zone': 'zone-a' }), 'zone-a')).toBe(true);
    expect(appliesToZone(r({ 'meshfed.io/zone': 'zone-b' }), 'zone-a')).toBe(false);
  });
});

describe('Changes payloads', () => {
  it('round-trips through gzip and identity', async () => {
    for (const encoding of ['gzip', 'identity'] as const) {
      const payload = await encodePayload(
        [
          {
            revision: 5,
            json: JSON.stringify({ apiVersion: 'a/v1', kind: 'K', metadata: { name: 'x' }, spec: {} }),
          },
        ],
        [{ revision: 6, kind: 'K', namespace: 'ns', name: 'y' }],
        encoding,
      );
      const decoded = await decodePayload(payload, encoding, 1 << 20);
      expect(decoded.upserts[0]?.revision).toBe(5);
      expect(decoded.upserts[0]?.object.metadata.name).toBe('x');
      expect(decoded.deletions).toEqual([{ revision: 6, kind: 'K', namespace: 'ns', name: 'y' }]);
    }
  });

  it('refuses garbage with a DECODE error', async () => {
    await expect(decodePayload(Buffer.from('not gzip'), 'gzip', 1000)).rejects.toThrow(/gzip failed/);
    await expect(decodePayload(Buffer.from('{"upserts": 1}'), 'identity', 1000)).rejects.toThrow(/must be/);
    await expect(decodePayload(Buffer.from('{}'), 'brotli', 1000)).rejects.toThrow(
      /unknown encoding "brotli"/,
    );
    const bomb = await encodePayload(
      [{ revision: 1, json: JSON.stringify({ pad: 'x'.repeat(100_000) }) }],
      [],
      'gzip',
    );
    await expect(decodePayload(bomb, 'gzip', 10_000)).rejects.toThrow(/gzip failed/);
  });

  it('reads uint64 revisions as safe integers only', () => {
    expect(readRevision('42', 'r')).toBe(42);
    expect(readRevision('', 'r')).toBe(0);
    expect(() => readRevision('18446744073709551615', 'r')).toThrow(/non-negative integer/);
  });
});

describe('inventory checks', () => {
  const inventory = {
    zone: 'zone-a',
    gateway: { address: '10.0.0.1', port: 15443 },
    services: [
      {
        name: 'web',
        namespace: 'demo',
        ports: [{ name: 'http', port: 80, protocol: 'http' }],
        endpointGroups: [
          {
            labels: { app: 'web' },
            healthy: 2,
            total: 3,
            identities: ['spiffe://cluster.local/ns/demo/sa/web'],
          },
        ],
      },
    ],
  };

  it('accepts a good inventory and drops fields it does not know', () => {
    const parsed = parseInventory(Buffer.from(JSON.stringify({ ...inventory, extra: 1 })), 'zone-a');
    expect(parsed).toEqual(inventory);
  });

  it.each([
    [
      'a bad service name',
      { ...inventory, services: [{ ...inventory.services[0], name: 'Bad_Name' }] },
      'services[0].name: must be a DNS-1123 subdomain',
    ],
    [
      'more healthy than total endpoints',
      {
        ...inventory,
        services: [
          {
            ...inventory.services[0],
            endpointGroups: [{ labels: {}, healthy: 5, total: 3, identities: [] }],
          },
        ],
      },
      'services[0].endpointGroups[0].healthy: must be an integer 0-3',
    ],
    [
      'an empty gateway address',
      { ...inventory, gateway: { address: '', port: 1 } },
      'gateway.address: must be a string of 1-253 characters',
    ],
    [
      'a service listed twice',
      { ...inventory, services: [inventory.services[0], inventory.services[0]] },
      'services[1]: service demo/web is listed twice',
    ],
  ])('refuses %s, naming the field', (_what, bad, message) => {
    expect(() => parseInventory(Buffer.from(JSON.stringify(bad)), 'zone-a')).toThrow(`inventory: ${message}`);
  });

  it('refuses inventory for another zone as FORBIDDEN', () => {
    try {
      parseInventory(Buffer.from(JSON.stringify({ ...inventory, zone: 'zone-b' })), 'zone-a');
      throw new Error('no error');
    } catch (err) {
      expect(isMeshError(err, 'MESHFED_ERR_FORBIDDEN')).toBe(true);
    }
  });

  it('parses a catalog of remote zones', () => {
    const catalog = parseCatalog(
      Buffer.from(JSON.stringify({ zones: [{ ...inventory, connected: true, lastSeen: 'now' }] })),
    );
    expect(catalog.zones[0]?.connected).toBe(true);
    expect(catalog.zones[0]?.services[0]?.name).toBe('web');
  });
});

describe('gRPC statuses', () => {
  it('carry the MESHFED code both ways', () => {
    const status = grpcStatusOf(new MeshError(ErrorCodes.FORBIDDEN, 'zone-x is disabled'));
    expect(status.code).toBe(7);
    expect(status.details).toBe('MESHFED_ERR_FORBIDDEN: zone-x is disabled');
    const back = meshErrorOfStatus(status);
    expect(back.code).toBe('MESHFED_ERR_FORBIDDEN');
    expect(back.message).toBe('zone-x is disabled');
    expect(meshErrorOfStatus({ code: 14, details: 'No connection established' }).code).toBe(
      'MESHFED_ERR_UNAVAILABLE',
    );
  });
});

describe('backoff, rate limit, permits, settings', () => {
  it('backs off exponentially with jitter within [half, whole] of the step, capped', () => {
    const options = { initialMs: 500, maxMs: 30_000 };
    expect(backoffDelay(1, options, () => 0)).toBe(250);
    expect(backoffDelay(1, options, () => 1)).toBe(500);
    expect(backoffDelay(4, options, () => 1)).toBe(4000);
    expect(backoffDelay(40, options, () => 0)).toBe(15_000);
    expect(backoffDelay(40, options, () => 1)).toBe(30_000);
    // The default ceiling: a zone retries a restarted global at least every 10 s.
    expect(backoffDelay(40, DEFAULT_BACKOFF, () => 1)).toBe(10_000);
  });

  it('lets a burst through, then the sustained rate', () => {
    let now = 0;
    const bucket = new TokenBucket(10, 3, () => now);
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
    now += 100;
    expect([bucket.take(), bucket.take()]).toEqual([true, false]);
  });

  it('hands out at most N permits', async () => {
    const permits = new Semaphore(1);
    const first = await permits.acquire();
    let second = false;
    const waiting = permits.acquire().then((release) => {
      second = true;
      release();
    });
    await Promise.resolve();
    expect(second).toBe(false);
    first();
    first();
    await waiting;
    expect(second).toBe(true);
  });

  it('refuses settings that are not positive integers, naming them', () => {
    expect(() => resolveKdsSettings({ chunkBytes: 0 })).toThrow(
      'KDS setting chunkBytes must be a positive integer, got 0',
    );
    expect(resolveKdsSettings({ gracePeriodMs: 0 }).gracePeriodMs).toBe(0);
  });
});
