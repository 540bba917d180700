/**
 * The Node flags a sidecar process runs with: NODE_OPTIONS of the injected
 * container (zone-cp/webhook), of the VM agent's systemd unit (the agent
 * hosts the VM's sidecar), of the demo's sidecars and of the data-plane
 * benchmark, so that what is measured is what is deployed.
 *
 * --max-semi-space-size=1 caps V8's young generation at 1 MiB semispaces
 * (default: growing to 16 MiB under load). A request's garbage dies young,
 * so the smaller nursery costs more frequent but shorter scavenges: in
 * `npm run bench:proxy`, side by side at 1,000 rps, the added p99 went from
 * 4.8 ms to 0.9 ms, and RSS under load from 92 to 72 MiB, at the same
 * saturation throughput (docs/performance.md).
 */
export const SIDECAR_NODE_OPTIONS = '--max-semi-space-size=1';
