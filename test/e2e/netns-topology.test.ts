/**
 * cli/demo/netns-topology.ts on its own: bad options are refused naming the
 * field, the loopback fallback runs commands directly, and leftovers of a
 * crashed run (a namespace and a bridge named after a dead pid) are removed
 * while those of live processes stay. The namespace cases need root and
 * `ip netns`; without them they say so loudly and check only the rest.
 */

import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import {
  cleanupNetnsLeftovers,
  createNetnsTopology,
  isNetnsAvailable,
} from '../../cli/demo/netns-topology.js';
import { ErrorCodes, MeshError } from '../../core/errors.js';

const PREFIX = 'mftopo';

async function refused(promise: Promise<unknown>, field: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MeshError);
  expect((err as MeshError).code).toBe(ErrorCodes.INVALID_ARGUMENT);
  expect((err as MeshError).field).toBe(field);
}

/** A pid that is certainly not running: above the kernel's pid_max. */
function deadPid(): number {
  const max = Number(execFileSync('cat', ['/proc/sys/kernel/pid_max'], { encoding: 'utf8' }).trim());
  return max + 1;
}

describe('netns topology', () => {
  test('bad options are refused naming the field', async () => {
    await refused(createNetnsTopology({ prefix: 'Bad-Prefix', zones: ['a'] }), 'prefix');
    await refused(createNetnsTopology({ prefix: 'ok', zones: [] }), 'zones');
    await refused(createNetnsTopology({ prefix: 'ok', zones: ['a', 'a'] }), 'zones[1]');
    await refused(
      createNetnsTopology({ prefix: 'ok', zones: ['a'], allowedPorts: [70000] }),
      'allowedPorts[0]',
    );
  });

  test('loopback fallback: every zone on 127.0.0.1, commands run directly', async () => {
    const topology = await createNetnsTopology({ prefix: PREFIX, zones: ['zone-a'], loopback: true });
    try {
      expect(topology.mode).toBe('loopback');
      expect(topology.zone('zone-a').address).toBe('127.0.0.1');
      expect(topology.wrap('zone-a', 'echo', ['x'])).toEqual(['echo', ['x']]);
      const result = await topology.exec('zone-a', 'echo', ['hello']);
      expect(result).toEqual({ code: 0, stdout: 'hello\n', stderr: '' });
      expect(() => topology.zone('zone-z')).toThrow(/no zone "zone-z".*zone-a/);
    } finally {
      await topology.close();
    }
  });

  test('removes what a crashed run left, keeps what a live one owns', async () => {
    const probe = await isNetnsAvailable();
    if (!probe.available) {
      console.warn(
        `\n*** NETNS LEFTOVER TEST NOT RUN: ${probe.reason ?? ''} (needs root and ip netns) ***\n`,
      );
      return;
    }
    const dead = deadPid();
    const deadNs = `${PREFIX}-${dead}-zone-a`;
    const deadBridge = `${PREFIX}-${dead.toString(36)}-b`;
    const liveNs = `${PREFIX}-${process.pid}-zone-a`;
    try {
      execFileSync('ip', ['netns', 'add', deadNs]);
      execFileSync('ip', ['netns', 'add', liveNs]);
      execFileSync('ip', ['link', 'add', deadBridge, 'type', 'bridge']);
      const removed = await cleanupNetnsLeftovers(PREFIX);
      expect(removed).toEqual(expect.arrayContaining([`netns ${deadNs}`, `link ${deadBridge}`]));
      const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
      expect(namespaces).not.toContain(deadNs);
      expect(namespaces).toContain(liveNs);
      expect(execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })).not.toContain(deadBridge);
    } finally {
      for (const ns of [deadNs, liveNs]) {
        try {
          execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
        } catch {
          // Already removed.
        }
      }
      try {
        execFileSync('ip', ['link', 'del', deadBridge], { stdio: 'ignore' });
      } catch {
        // Already removed.
      }
    }
  });
});
