import { describe, expect, it } from '@jest/globals';
import { MemoryStore } from '../store/store-memory.js';
import { applyDocuments, replaceDocument, validateDocuments } from './apply.js';

const zone = (enabled: boolean) => ({
  apiVersion: 'meshfed.io/v1alpha1',
  kind: 'Zone',
  metadata: { name: 'zone-a' },
  spec: { enabled },
});

describe('apply', () => {
  it('keeps the status the control plane wrote when a user changes the spec', async () => {
    const store = new MemoryStore();
    try {
      await store.create({ ...zone(true), status: { connected: true, proxies: 12 } });
      const [result] = await applyDocuments(store, validateDocuments([zone(false)]));
      expect(result?.action).toBe('configured');
      const stored = await store.get({ kind: 'Zone', namespace: '', name: 'zone-a' });
      expect(stored?.spec).toEqual({ enabled: false });
      expect(stored?.status).toEqual({ connected: true, proxies: 12 });

      const [doc] = validateDocuments([zone(true)]);
      if (doc === undefined) throw new Error('validation returned nothing');
      const replaced = await replaceDocument(store, doc);
      expect(replaced.status).toEqual({ connected: true, proxies: 12 });
    } finally {
      await store.close();
    }
  });

  it('refuses a stale pinned resourceVersion even when the content is unchanged', async () => {
    const store = new MemoryStore();
    try {
      const created = await store.create(zone(true));
      await store.update({ ...zone(false) });
      const stale = {
        ...zone(false),
        metadata: { name: 'zone-a', resourceVersion: created.metadata.resourceVersion },
      };
      await expect(applyDocuments(store, validateDocuments([stale]))).rejects.toMatchObject({
        code: 'MESHFED_ERR_CONFLICT',
      });
    } finally {
      await store.close();
    }
  });
});
