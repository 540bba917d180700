import { afterEach, describe, expect, it } from '@jest/globals';
import { KDS_STATE_KIND, KDS_STATE_NAME } from '../../core/kds/kds-internal-kinds.js';
import { MemoryStore } from '../../core/store/store-memory.js';
import { waitFor } from '../common/wait.js';
import {
  changesOf,
  hello,
  metricValue,
  openRawStream,
  pa,
  startBareKds,
  startTestZone,
  type BareKds,
  type RawStream,
} from './kds-harness.js';

describe('KDS resume: delta after a reconnect, full resync when too far behind', () => {
  let kds: BareKds | undefined;
  const streams: RawStream[] = [];

  afterEach(async () => {
    for (const s of streams.splice(0)) s.close();
    await kds?.close();
    kds = undefined;
  });

  async function firstSync(
    bare: BareKds,
    zone: string,
  ): Promise<{ storeId: string; revision: number; token: string }> {
    const { token } = await bare.zoneToken(zone);
    const stream = openRawStream(bare, token);
    streams.push(stream);
    stream.write(hello(zone));
    const synced = await waitFor(async () => (await changesOf(stream)).find((c) => c.synced), {
      what: 'first sync',
    });
    const storeId = stream.messages.find((m) => m.welcome)?.welcome?.store_id ?? '';
    stream.close();
    return { storeId, revision: synced.revision, token };
  }

  it('sends only the changes after the revision the zone holds', async () => {
    kds = await startBareKds();
    await kds.put(pa('keep'));
    await kds.put(pa('change-me'));
    await kds.put(pa('delete-me'));
    const first = await firstSync(kds, 'zone-a');
    expect(first.revision).toBeGreaterThan(0);

    await kds.put(pa('change-me', 'PERMISSIVE'));
    await kds.remove('PeerAuthentication', 'demo', 'delete-me');
    const last = await kds.put(pa('new-one'));

    const stream = openRawStream(kds, first.token);
    streams.push(stream);
    stream.write(hello('zone-a', { store_id: first.storeId, applied_revision: String(first.revision) }));
    const synced = await waitFor(async () => (await changesOf(stream)).find((c) => c.synced), {
      what: 'delta',
    });
    const all = await changesOf(stream);
    expect(all.every((c) => !c.full)).toBe(true);
    const upserts = all.flatMap((c) =>
      c.payload.upserts.map(
        (u) => `${u.object.metadata.name}:${String((u.object.spec as { mtls: { mode: string } }).mtls.mode)}`,
      ),
    );
    const deletions = all.flatMap((c) => c.payload.deletions.map((d) => d.name));
    expect(upserts.sort()).toEqual(['change-me:PERMISSIVE', 'new-one:STRICT']);
    expect(deletions).toEqual(['delete-me']);
    expect(synced.revision).toBeGreaterThanOrEqual(last);
    expect(await metricValue(kds.metrics, 'meshfed_kds_syncs_total', { mode: 'delta' })).toBe(1);
  });

  it('answers a zone that is already current with an empty synced message', async () => {
    kds = await startBareKds();
    await kds.put(pa('only'));
    const first = await firstSync(kds, 'zone-a');
    const stream = openRawStream(kds, first.token);
    streams.push(stream);
    stream.write(hello('zone-a', { store_id: first.storeId, applied_revision: String(first.revision) }));
    const synced = await waitFor(async () => (await changesOf(stream)).find((c) => c.synced), {
      what: 'synced',
    });
    expect(synced.full).toBe(false);
    expect(synced.payload.upserts).toEqual([]);
    expect(synced.payload.deletions).toEqual([]);
  });

  it('falls back to a full resync when the revision is older than the history', async () => {
    kds = await startBareKds({ historySize: 30 });
    await kds.put(pa('doomed'));
    const first = await firstSync(kds, 'zone-a');
    await kds.remove('PeerAuthentication', 'demo', 'doomed');
    for (let i = 0; i < 40; i++) await kds.put(pa(`p${i}`));

    const stream = openRawStream(kds, first.token);
    streams.push(stream);
    stream.write(hello('zone-a', { store_id: first.storeId, applied_revision: String(first.revision) }));
    await waitFor(async () => (await changesOf(stream)).find((c) => c.synced), { what: 'full resync' });
    const all = await changesOf(stream);
    expect(all.every((c) => c.full)).toBe(true);
    const names = all.flatMap((c) => c.payload.upserts.map((u) => u.object.metadata.name));
    expect(names).toHaveLength(40);
    expect(names).not.toContain('doomed');
    expect(await metricValue(kds.metrics, 'meshfed_kds_syncs_total', { mode: 'full' })).toBe(2);
  });

  it('resyncs in full when the zone names another store or a revision this store never reached', async () => {
    kds = await startBareKds();
    await kds.put(pa('x'));
    const first = await firstSync(kds, 'zone-a');
    for (const overrides of [
      { store_id: 'some-other-store', applied_revision: String(first.revision) },
      { store_id: first.storeId, applied_revision: String(first.revision + 1000) },
    ]) {
      const stream = openRawStream(kds, first.token);
      streams.push(stream);
      stream.write(hello('zone-a', overrides));
      const synced = await waitFor(async () => (await changesOf(stream)).find((c) => c.synced), {
        what: 'sync',
      });
      expect(synced.full).toBe(true);
      stream.close();
    }
  });

  it('a zone client deletes objects global deleted while it was away, via the full resync', async () => {
    kds = await startBareKds({ historySize: 30 });
    await kds.put(pa('old-a'));
    await kds.put(pa('old-b'));
    const store = new MemoryStore();
    const zone = await startTestZone('zone-a', kds, { store, keepStore: true });
    await zone.client.ready();
    expect(await zone.synced('PeerAuthentication')).toEqual(['demo/old-a', 'demo/old-b']);
    await zone.close();

    await kds.remove('PeerAuthentication', 'demo', 'old-a');
    for (let i = 0; i < 40; i++) await kds.put(pa(`n${i}`, i % 2 === 0 ? 'STRICT' : 'PERMISSIVE'));
    const again = await startTestZone('zone-a', kds, { store });
    try {
      await waitFor(async () => (await again.synced('PeerAuthentication')).length === 41, {
        what: '41 objects',
      });
      const names = await again.synced('PeerAuthentication');
      expect(names).toContain('demo/old-b');
      expect(names).not.toContain('demo/old-a');
      expect(await metricValue(kds.metrics, 'meshfed_kds_syncs_total', { mode: 'full' })).toBe(2);
    } finally {
      await again.close();
    }
  });

  it('a zone client resumes with a delta after a reconnect', async () => {
    kds = await startBareKds();
    await kds.put(pa('a'));
    const store = new MemoryStore();
    const zone = await startTestZone('zone-a', kds, { store, keepStore: true });
    await zone.client.ready();
    await zone.close();
    await kds.put(pa('b'));
    const again = await startTestZone('zone-a', kds, { store });
    try {
      await waitFor(async () => (await again.synced('PeerAuthentication')).join() === 'demo/a,demo/b', {
        what: 'a and b',
      });
      expect(await metricValue(kds.metrics, 'meshfed_kds_syncs_total', { mode: 'delta' })).toBe(1);
      expect(await metricValue(kds.metrics, 'meshfed_kds_syncs_total', { mode: 'full' })).toBe(1);
    } finally {
      await again.close();
    }
  });

  it("moves an idle zone's revision past unrelated writes, so its resume point stays in history", async () => {
    kds = await startBareKds();
    await kds.put(pa('a'));
    const zone = await startTestZone('zone-a', kds);
    try {
      await zone.client.ready();
      // Writes of kinds KDS does not send (here a Zone, as status updates are).
      let revision = 0;
      for (let i = 0; i < 5; i++) {
        revision = await kds.put({
          apiVersion: 'meshfed.io/v1alpha1',
          kind: 'Zone',
          metadata: { name: `z${i}` },
          spec: {},
        });
      }
      await waitFor(
        async () => {
          const state = await zone.store.get({ kind: KDS_STATE_KIND, namespace: '', name: KDS_STATE_NAME });
          return typeof state?.spec.revision === 'number' && state.spec.revision >= revision;
        },
        { what: 'progress mark applied' },
      );
    } finally {
      await zone.close();
    }
  });
});
