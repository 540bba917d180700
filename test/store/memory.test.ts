import { describe, expect, it } from '@jest/globals';

import { ErrorCodes } from '../../core/errors.js';
import { MemoryStore } from '../../core/store/store-memory.js';
import { createStore } from '../../core/store/store-registry.js';
import { describeStoreContract, expectMeshError, vs } from './store-contract.js';

describeStoreContract('memory', async ({ historySize }) => new MemoryStore({ historySize }));

describe('MemoryStore (volatile)', () => {
  it('reports its backend and rejects bad options', async () => {
    const store = new MemoryStore();
    expect(store.backend).toBe('memory');
    await store.close();
    expect(() => new MemoryStore({ historySize: 0 })).toThrow(/historySize/);
  });

  it('is what memory:// opens', async () => {
    const store = await createStore('memory://');
    expect(store).toBeInstanceOf(MemoryStore);
    await store.create(vs('a', 'ns'));
    expect(await store.currentRevision()).toBe(1);
    await store.close();
  });

  it('rejects a resource without a name', async () => {
    const store = new MemoryStore();
    await expectMeshError(
      store.create({ apiVersion: 'v1', kind: 'VirtualService', metadata: { name: '' }, spec: {} }),
      ErrorCodes.INVALID_ARGUMENT,
    );
    await store.close();
  });
});
