/**
 * The port picker hands out ports that stay free until bound: outside the
 * kernel's ephemeral range, where outgoing connections take their ports.
 */

import { describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ephemeralPortRange, freePort, pickableSpan } from '../../core/free-port.js';
import { listenLocal } from '../common/ports.js';

describe('freePort', () => {
  it('returns a port outside the ephemeral range that can be bound', async () => {
    const [low, high] = ephemeralPortRange();
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    for (const port of ports) {
      expect(port < low || port > high).toBe(true);
      expect(port).toBeGreaterThanOrEqual(10000);
    }
    const server = await listenLocal(ports[0] ?? 0);
    try {
      expect((server.address() as net.AddressInfo).port).toBe(ports[0]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('reads the range from the kernel file, and falls back to the default on a bad one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'free-port-'));
    try {
      const good = join(dir, 'good');
      await writeFile(good, '40000\t50000\n');
      expect(ephemeralPortRange(good)).toEqual([40000, 50000]);
      const bad = join(dir, 'bad');
      await writeFile(bad, 'sixty\n');
      expect(ephemeralPortRange(bad)).toEqual([32768, 60999]);
      expect(ephemeralPortRange(join(dir, 'missing'))).toEqual([32768, 60999]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('picks the wider span outside the range, or none when neither is wide enough', () => {
    expect(pickableSpan([32768, 60999])).toEqual([10000, 32767]);
    expect(pickableSpan([10500, 60999])).toEqual([61000, 65535]);
    expect(pickableSpan([1024, 65000])).toBeUndefined();
  });
});
