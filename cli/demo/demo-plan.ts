/** What the demo runs: its zones and its sample workloads (the VM comes on top, in zone-b). */

import type { DemoWorkloadSpec } from './demo-workloads.js';

export const DEMO_ZONES = ['zone-a', 'zone-b'];

/** The sample workloads besides the VM: [zone index, spec]. */
export const DEMO_WORKLOADS: Array<[number, DemoWorkloadSpec]> = [
  [
    0,
    {
      name: 'frontend',
      app: 'frontend',
      version: 'v1',
      serviceAccount: 'frontend',
      upstream: 'backend.demo',
    },
  ],
  [0, { name: 'backend-v1', app: 'backend', version: 'v1', serviceAccount: 'backend' }],
  [1, { name: 'backend-v2', app: 'backend', version: 'v2', serviceAccount: 'backend' }],
];

/** The zone the VM (backend v1) is enrolled in. */
export const VM_ZONE_INDEX = 1;
