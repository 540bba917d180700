/**
 * Where everything of the demo listens. With the global API on its
 * documented port (5681) the demo uses fixed, documented ports so the
 * commands it prints work as written; with `--port 0` (tests, a second
 * demo) every port is a free one. Fixed ports are checked up front, so a
 * port in use is one clear line naming it, before anything started.
 */

import { canBind } from '../../core/free-port.js';
import { ErrorCodes, MeshError } from '../../core/errors.js';

export interface WorkloadPorts {
  app: number;
  outbound: number;
  inbound: number;
  admin: number;
  metrics: number;
}

export interface ZonePorts {
  rest: number;
  grpc: number;
  gateway: number;
  gatewayAdmin: number;
}

export interface DemoPortPlan {
  /** False: every 0 below means "a free port". */
  fixed: boolean;
  zones: ZonePorts[];
  workloads: WorkloadPorts[];
}

const FIXED_ZONES: ZonePorts[] = [
  { rest: 5682, grpc: 5678, gateway: 15443, gatewayAdmin: 15021 },
  { rest: 5692, grpc: 5688, gateway: 15444, gatewayAdmin: 15022 },
];

/**
 * Workload `i` of the fixed plan: the first (the frontend) gets the
 * sidecar's documented ports (15001 outbound …), the next ones the same
 * shifted by 100 (15101, 15201 …); apps listen on 8080 + i.
 */
export function fixedWorkload(i: number): WorkloadPorts {
  const shift = 100 * i;
  return {
    app: 8080 + i,
    outbound: 15001 + shift,
    inbound: 15006 + shift,
    admin: 15000 + shift,
    metrics: 15090 + shift,
  };
}

/** The plan for `zones` zones and `workloads` workloads. */
export function planPorts(fixed: boolean, zones: number, workloads: number): DemoPortPlan {
  if (!fixed) {
    return {
      fixed,
      zones: Array.from({ length: zones }, () => ({ rest: 0, grpc: 0, gateway: 0, gatewayAdmin: 0 })),
      workloads: Array.from({ length: workloads }, () => ({
        app: 0,
        outbound: 0,
        inbound: 0,
        admin: 0,
        metrics: 0,
      })),
    };
  }
  return {
    fixed,
    zones: Array.from({ length: zones }, (_, i) => {
      const z = FIXED_ZONES[i];
      if (z === undefined) throw new MeshError(ErrorCodes.INTERNAL, `no fixed ports for zone ${i}`);
      return { ...z };
    }),
    workloads: Array.from({ length: workloads }, (_, i) => fixedWorkload(i)),
  };
}

/**
 * Throws CONFIG naming the first port of `ports` (name → port) that is taken
 * and the flag that avoids it.
 */
export async function checkPortsFree(ports: Array<[string, number]>): Promise<void> {
  for (const [what, port] of ports) {
    if (port === 0) continue;
    if (!(await canBind(port, '127.0.0.1'))) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `port ${port} (${what}) is already in use: stop what listens there (another meshfed demo?), or run meshfed demo --port 0 to put everything on free ports`,
        { details: { port } },
      );
    }
  }
}
