/**
 * The VM agent's public entry (issue #8, docs/vm.md): `joinMesh` enrolls a
 * VM, `runAgent` runs its sidecar and keeps it in the mesh, `leaveMesh`
 * takes it out, `vmStatus` reports. `meshfed vm-agent …` (cli/commands/vm-agent.ts)
 * and the demo call these.
 */

export { joinMesh, joinSummary, defaultAddress, DEFAULT_PORTS } from './agent-join.js';
export type { JoinOptions, JoinResult } from './agent-join.js';
export { runAgent } from './agent-run.js';
export type { AgentHandle, RunOptions } from './agent-run.js';
export { leaveMesh, leaveSummary } from './agent-leave.js';
export type { LeaveOptions, LeaveResult } from './agent-leave.js';
export { vmStatus, formatStatus } from './agent-status.js';
export type { StatusReport } from './agent-status.js';
export { DEFAULT_CONFIG_DIR } from './agent-files.js';
export { DEFAULT_UNIT_DIR, UNIT_NAME, renderUnit, unitTemplate } from './agent-systemd.js';
export type { AgentConfig, ProbeSpec, SidecarPorts } from './agent-config.js';
export { normalizeFingerprint, parseZoneCpUrl } from './zone-client.js';
