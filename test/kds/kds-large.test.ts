import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Resource } from '../../core/resource/resource.js';
import { waitFor } from '../common/wait.js';
import {
  changesOf,
  hello,
  metricValue,
  openRawStream,
  startBareKds,
  startTestZone,
  type BareKds,
} from './kds-harness.js';

const COUNT = 10_000;

function policy(i: number): Resource {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: `policy-${i}`, namespace: `ns-${i % 50}`, labels: { app: `app-${i % 200}` } },
    spec: {
      selector: { matchLabels: { app: `app-${i % 200}`, version: `v${i % 3}` } },
      action: 'ALLOW',
      rules: [
        {
          from: [{ source: { principals: [`cluster.local/ns/ns-${i % 50}/sa/caller-${i % 17}`] } }],
          to: [{ operation: { methods: ['GET', 'POST'], paths: [`/api/v1/items/${i}/*`] } }],
        },
      ],
    },
  };
}

describe('KDS with 10,000 policies', () => {
  let kds: BareKds;

  beforeAll(async () => {
    kds = await startBareKds();
    for (let i = 0; i < COUNT; i++) await kds.store.create(policy(i));
  }, 60_000);

  afterAll(async () => {
    await kds?.close();
  });

  it('sends them in gzip-compressed chunks far below the 4 MB gRPC message limit', async () => {
    const { token } = await kds.zoneToken('zone-raw');
    const stream = openRawStream(kds, token);
    try {
      stream.write(hello('zone-raw'));
      await waitFor(() => stream.messages.some((m) => m.changes?.synced), {
        what: 'full resync',
        timeoutMs: 30_000,
      });
      const chunks = stream.messages.flatMap((m) => (m.changes ? [m.changes] : []));
      expect(chunks.length).toBeGreaterThan(5);
      for (const chunk of chunks) {
        expect(chunk.encoding).toBe('gzip');
        expect(chunk.payload.length).toBeLessThan(1024 * 1024);
      }
      const decoded = await changesOf(stream);
      const names = new Set(decoded.flatMap((c) => c.payload.upserts.map((u) => u.object.metadata.name)));
      expect(names.size).toBe(COUNT);
      // Only the last chunk of the resync may be recorded as a resume point.
      const full = decoded.filter((c) => c.full);
      expect(full.length).toBe(chunks.filter((c) => c.full).length);
      expect(full.filter((c) => c.synced)).toHaveLength(1);
      expect(full.at(-1)?.synced).toBe(true);
      expect(full.slice(0, -1).every((c) => c.revision === 0)).toBe(true);
      const payloadBytes = (await metricValue(kds.metrics, 'meshfed_kds_payload_bytes_sent_total')) ?? 0;
      const rawBytes = decoded.reduce((sum, c) => sum + JSON.stringify(c.payload).length, 0);
      expect(payloadBytes).toBeLessThan(rawBytes / 4);
    } finally {
      stream.close();
    }
  }, 60_000);

  it('a zone client applies all of them and then follows a single change', async () => {
    const zone = await startTestZone('zone-big', kds);
    try {
      await zone.client.ready();
      expect((await zone.synced('AuthorizationPolicy')).length).toBe(COUNT);
      const changed = policy(42);
      changed.spec = { ...changed.spec, action: 'DENY' };
      await kds.store.update(changed);
      await waitFor(
        async () => {
          const stored = await zone.store.get({
            kind: 'AuthorizationPolicy',
            namespace: 'ns-42',
            name: 'policy-42',
          });
          return stored?.spec.action === 'DENY';
        },
        { what: 'the change in the zone' },
      );
    } finally {
      await zone.close();
    }
  }, 60_000);
});
