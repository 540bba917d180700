/**
 * How a sidecar process is started: the environment of the injected
 * container (zone-cp/webhook), of the VM agent's systemd unit (the agent
 * hosts the VM's sidecar), of the demo's sidecars and of the data-plane
 * benchmark, so that what is measured is what is deployed.
 */

/**
 * --max-semi-space-size=1 caps V8's young generation at 1 MiB semispaces
 * (default: growing to 16 MiB under load). A request's garbage dies young,
 * so the smaller nursery costs more frequent but shorter scavenges: in
 * `npm run bench:proxy`, side by side at 1,000 rps, the added p99 went from
 * 4.8 ms to 0.9 ms, and RSS under load from 92 to 72 MiB, at the same
 * saturation throughput (docs/performance.md).
 */
export const SIDECAR_NODE_OPTIONS = '--max-semi-space-size=1';

/**
 * The sidecar's environment: NODE_OPTIONS above, and MALLOC_ARENA_MAX=2.
 * glibc gives each thread that allocates its own malloc arena (up to eight
 * per core), and V8's compiler and GC threads and libuv's pool each keep
 * pages of theirs; two arenas shared by all took 0.5 MiB off a sidecar's
 * RSS idle and under load, side by side (docs/performance.md, session 12).
 */
export const SIDECAR_ENV: Readonly<Record<string, string>> = {
  NODE_OPTIONS: SIDECAR_NODE_OPTIONS,
  MALLOC_ARENA_MAX: '2',
};
