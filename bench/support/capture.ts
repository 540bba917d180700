/**
 * Loopback packet captures for the benchmarks' in-path figures: tcpdump
 * (Debian: `apt-get install tcpdump`; capturing needs root) writing a pcap
 * file with nanosecond kernel timestamps, read back with pcap.ts.
 */

import { spawn, spawnSync } from 'node:child_process';

/** How long the kernel may hold a partly filled block of captured packets (tcpdump's read timeout). */
const TPACKET_BLOCK_TIMEOUT_MS = 1000;

export interface Capture {
  /** Stop capturing and wait for the file; fails if the kernel dropped packets. */
  stop(): Promise<void>;
}

export function tcpdumpAvailable(): boolean {
  return spawnSync('tcpdump', ['--version']).status === 0;
}

/**
 * Capture the given TCP ports on loopback into `file`, keeping `snapLength`
 * bytes of each packet (headers plus the start of the payload). Resolves
 * once tcpdump is capturing.
 */
export async function startCapture(file: string, ports: number[], snapLength: number): Promise<Capture> {
  const filter = ports.map((p) => `tcp port ${p}`).join(' or ');
  const child = spawn(
    'tcpdump',
    ['-i', 'lo', '-s', String(snapLength), '-B', '32768', '--time-stamp-precision=nano', '-w', file, filter],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  await new Promise<void>((done, fail) => {
    child.stderr?.on('data', () => {
      if (err.includes('listening on')) done();
    });
    child.once('exit', (code) => fail(new Error(`tcpdump exited ${code}: ${err.trim()}`)));
  });
  return {
    async stop() {
      // The kernel hands packets over in blocks, a partly filled one after
      // tcpdump's 1 s timeout: stopping at once lost the last ~40 ms of traffic.
      await new Promise((resolve) => setTimeout(resolve, TPACKET_BLOCK_TIMEOUT_MS + 200));
      // SIGINT makes tcpdump flush its buffer, write the file out and print its counts.
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      const dropped = Number(/(\d+) packets? dropped by kernel/.exec(err)?.[1] ?? 0);
      if (dropped > 0) throw new Error(`tcpdump dropped ${dropped} packets: in-path figures would be wrong`);
    },
  };
}
