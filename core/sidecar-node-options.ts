/**
 * How a sidecar process is started: the environment of the injected
 * container (zone-cp/webhook), of the VM agent's systemd unit (the agent
 * hosts the VM's sidecar), of the demo's sidecars and of the data-plane
 * benchmark, so that what is measured is what is deployed.
 */

/**
 * V8's heap sizing for a sidecar: a small young generation, and an old
 * generation that grows in small steps.
 *
 * - --max-semi-space-size=2 caps the young generation at 2 MiB semispaces
 *   (default: growing to 16 MiB under load). A request's garbage dies young,
 *   so a small nursery costs more frequent but shorter scavenges: at 1 MiB
 *   (sessions 4–14) the added p99 at 1,000 rps went from 4.8 to 0.9 ms and
 *   RSS under load from 92 to 72 MiB against the default. Since HTTP/2
 *   carries all requests between two sidecars (session 15), a server proxy
 *   takes them in bursts from one connection, and at 1 MiB a burst's
 *   objects outlived two scavenges: once the first full collection had run,
 *   three quarters of what survived a scavenge was promoted, 47 MB/s of
 *   garbage into the old generation and a full collection every 350 ms
 *   (RSS 82–85 MiB). At 2 MiB they die young again.
 * - --max-old-space-size=512 also sets how far V8 lets the old generation
 *   grow past what a full collection kept: for heaps limited to 256 MiB–2 GiB
 *   it scales that factor from 1.3 to 2.0, above it uses up to 4.0 (V8's
 *   heap controller). A sidecar's live heap is ~7 MiB (with thousands of
 *   services, tens); 512 MiB leaves room and keeps the factor near 1.4.
 *   Both flags are among those Node accepts in NODE_OPTIONS.
 */
export const SIDECAR_NODE_OPTIONS = '--max-semi-space-size=2 --max-old-space-size=512';

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
