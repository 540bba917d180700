/**
 * The VM heartbeat's timing bounds: the zone refuses settings that would mark
 * every VM unhealthy between two of its beats, and the agent never turns an
 * interval from the zone's answer into a tight loop (setTimeout fires a delay
 * past 2^31 - 1 ms after 1 ms).
 */

import { describe, expect, it } from '@jest/globals';
import { clampHeartbeatDelay } from '../../vm-agent/agent-heartbeat.js';
import { resolveVmSettings } from '../../zone-cp/vm/vm-model.js';

describe('VM heartbeat timing bounds', () => {
  it('the agent keeps every delay within what a timer can wait', () => {
    expect(clampHeartbeatDelay(10_000)).toBe(10_000);
    expect(clampHeartbeatDelay(30 * 86_400_000)).toBe(2 ** 31 - 1);
    expect(clampHeartbeatDelay(Number.POSITIVE_INFINITY)).toBe(2 ** 31 - 1);
    expect(clampHeartbeatDelay(0)).toBe(100);
    expect(clampHeartbeatDelay(-5)).toBe(100);
    expect(clampHeartbeatDelay(Number.NaN)).toBe(100);
  });

  it('the zone refuses a heartbeat interval as long as the unhealthy deadline', () => {
    expect(resolveVmSettings({ heartbeatIntervalSeconds: 10, unhealthyAfterMs: 30_000 })).toMatchObject({
      heartbeatIntervalSeconds: 10,
    });
    expect(() => resolveVmSettings({ heartbeatIntervalSeconds: 30, unhealthyAfterMs: 30_000 })).toThrow(
      /vm.heartbeatIntervalSeconds \(30 s\) must be shorter than vm.unhealthyAfterMs \(30000 ms\)/,
    );
    expect(() => resolveVmSettings({ heartbeatIntervalSeconds: 40 * 86_400 })).toThrow(/must be shorter/);
  });
});
