/**
 * A multi-zone network topology on one Linux host: each zone in its own
 * network namespace, joined by a bridge in the root namespace that plays the
 * "WAN". Used by the end-to-end suite (`test/e2e/`) and `meshfed demo --netns`.
 *
 * ```
 *   root namespace: bridge <prefix>-<pid36>-b  198.18.<n>.1/24  (hostAddress: global CP, operator)
 *        │ veth <prefix>-<pid36>-0          │ veth <prefix>-<pid36>-1
 *   netns <prefix>-<pid>-zone-a         netns <prefix>-<pid>-zone-b
 *   eth0 198.18.<n>.2/24, lo            eth0 198.18.<n>.3/24, lo
 * ```
 *
 * Isolation: iptables in every zone namespace accepts loopback, replies,
 * anything from the host address, and from other zones only the ports passed
 * in `allowedPorts` / `allowPorts()` (a zone's east-west gateway, and the CP
 * ports that must be reachable). Everything else from the WAN subnet is
 * dropped, so the only path between zones is the ports allowed.
 *
 * Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking space), one /24
 * per run not already present on the host. Names carry the prefix and the
 * creating process's pid, so `close()` and `cleanupNetnsLeftovers()` remove
 * exactly what a run made, including what a crashed earlier run left.
 *
 * When the process is not root, or `ip netns`/iptables are unusable,
 * `createNetnsTopology` (unless `requireNetns`) falls back to loopback: every
 * zone's address is 127.0.0.1, commands run directly, and `mode` is
 * `'loopback'` with `fallbackReason` saying why — callers must say so loudly.
 *
 * This module has no test-only imports so the demo can use it.
 */

import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { ErrorCodes, MeshError } from '../../core/errors.js';

/** What `createNetnsTopology` builds. */
export interface NetnsTopologyOptions {
  /** Name prefix: 1–6 of `[a-z0-9]`, starting with a letter (interface names are at most 15 bytes). */
  prefix: string;
  /** Zone names, DNS-1123 labels; one namespace each. At most 50. */
  zones: string[];
  /** TCP ports of a zone that other zones may reach (more with `allowPorts`). Default none. */
  allowedPorts?: number[];
  /** Third octet of the 198.18.<n>.0/24 WAN; default: the first one free on the host from a pid-based start. */
  subnetOctet?: number;
  /** Throw instead of falling back to loopback when namespaces are unavailable. Default false. */
  requireNetns?: boolean;
  /** Build the loopback fallback even where namespaces work (to exercise that path). Default false. */
  loopback?: boolean;
  /** Timeout of each `ip`/`iptables` call. Default 10 s. */
  commandTimeoutMs?: number;
}

/** One zone of the topology. */
export interface TopologyZone {
  /** The zone name as given. */
  readonly name: string;
  /** Its network namespace, or undefined on loopback. */
  readonly netns: string | undefined;
  /** Its address on the WAN (127.0.0.1 on loopback). */
  readonly address: string;
}

/** Result of a command run to completion. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A built topology. Every method accepts a zone by name. */
export interface NetnsTopology {
  /** `netns` when zones are isolated namespaces, `loopback` when everything shares the host's loopback. */
  readonly mode: 'netns' | 'loopback';
  /** Why the topology fell back to loopback (undefined in netns mode). */
  readonly fallbackReason: string | undefined;
  readonly zones: readonly TopologyZone[];
  /** The root namespace's address on the WAN bridge (127.0.0.1 on loopback): bind the global CP here. */
  readonly hostAddress: string;
  /** The WAN subnet in CIDR form (`127.0.0.0/8` on loopback). */
  readonly subnet: string;
  /** The zone of that name; throws MESHFED_ERR_NOT_FOUND naming the known ones. */
  zone(name: string): TopologyZone;
  /** `[command, args]` that run `cmd args` inside the zone's namespace (`ip netns exec …`). */
  wrap(zone: string, cmd: string, args: readonly string[]): [string, string[]];
  /**
   * Start `cmd args` inside the zone as its own process group (kill it with
   * `process.kill(-child.pid, signal)`); `close()` kills whatever is still running.
   */
  spawn(zone: string, cmd: string, args: readonly string[], options?: SpawnOptions): ChildProcess;
  /** Run `cmd args` inside the zone to completion (rejects on timeout, not on a non-zero exit). */
  exec(zone: string, cmd: string, args: readonly string[], timeoutMs?: number): Promise<ExecResult>;
  /** Let other zones reach these TCP ports of the zone (no-op on loopback). */
  allowPorts(zone: string, ports: readonly number[]): Promise<void>;
  /** Kill every process started in the zones, delete namespaces and the bridge. Idempotent. */
  close(): Promise<void>;
}

/** Whether this process can build a namespace topology, and if not why. */
export interface NetnsProbe {
  available: boolean;
  reason?: string;
}

const PREFIX_RE = /^[a-z][a-z0-9]{0,5}$/;
const ZONE_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const ALLOW_CHAIN = 'MESHFED-ALLOW';

function run(cmd: string, args: readonly string[], timeoutMs = 10_000): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, [...args], { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        // Spawn failure or timeout: no exit code to report.
        reject(
          new MeshError(ErrorCodes.UNAVAILABLE, `${cmd} ${args.join(' ')}: ${err.message}`, { cause: err }),
        );
        return;
      }
      resolve({ code: err && typeof err.code === 'number' ? err.code : 0, stdout, stderr });
    });
  });
}

async function must(cmd: string, args: readonly string[], timeoutMs?: number): Promise<string> {
  const result = await run(cmd, args, timeoutMs);
  if (result.code !== 0) {
    throw new MeshError(
      ErrorCodes.UNAVAILABLE,
      `${cmd} ${args.join(' ')} exited ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`,
    );
  }
  return result.stdout;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive but someone else's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Can this process create network namespaces with iptables inside? Tries it:
 * root, `ip netns add`, `iptables -L` in the namespace, delete.
 */
export async function isNetnsAvailable(): Promise<NetnsProbe> {
  if (process.platform !== 'linux') return { available: false, reason: `platform is ${process.platform}` };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { available: false, reason: 'not running as root' };
  }
  const name = `mfprobe-${process.pid}-${Date.now().toString(36)}`;
  try {
    await must('ip', ['netns', 'add', name]);
  } catch (err) {
    return { available: false, reason: `ip netns add failed: ${(err as Error).message}` };
  }
  try {
    const ipt = await run('ip', ['netns', 'exec', name, 'iptables', '-w', '-L', 'INPUT', '-n']);
    if (ipt.code !== 0) return { available: false, reason: `iptables unusable: ${ipt.stderr.trim()}` };
    return { available: true };
  } catch (err) {
    return { available: false, reason: `iptables unusable: ${(err as Error).message}` };
  } finally {
    await run('ip', ['netns', 'del', name]).catch(() => undefined);
  }
}

/** Kill every process inside a namespace (by pid, as `ip netns pids` lists them). */
async function killNetnsPids(netns: string): Promise<void> {
  const listed = await run('ip', ['netns', 'pids', netns]).catch(() => undefined);
  for (const line of listed?.stdout.split('\n') ?? []) {
    const pid = Number(line.trim());
    if (Number.isInteger(pid) && pid > 1) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
}

/**
 * Remove namespaces and bridges a crashed earlier run with this prefix left
 * behind (their creating pid is no longer alive). Returns what was removed.
 * Topologies of live processes (a concurrent run) are left alone.
 */
export async function cleanupNetnsLeftovers(prefix: string): Promise<string[]> {
  if (!PREFIX_RE.test(prefix)) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `prefix "${prefix}" must match ${PREFIX_RE.source}`, {
      field: 'prefix',
    });
  }
  const removed: string[] = [];
  const nsList = await run('ip', ['netns', 'list']).catch(() => undefined);
  const nsRe = new RegExp(`^${prefix}-(\\d+)-\\S+`);
  for (const line of nsList?.stdout.split('\n') ?? []) {
    const name = line.trim().split(/\s+/)[0] ?? '';
    const match = nsRe.exec(name);
    if (!match || pidAlive(Number(match[1]))) continue;
    await killNetnsPids(name);
    const del = await run('ip', ['netns', 'del', name]).catch(() => undefined);
    if (del?.code === 0) removed.push(`netns ${name}`);
  }
  const links = await run('ip', ['-o', 'link', 'show']).catch(() => undefined);
  const linkRe = new RegExp(`^\\d+:\\s+(${prefix}-([0-9a-z]+)-(?:b|\\d+))[@:]`);
  for (const line of links?.stdout.split('\n') ?? []) {
    const match = linkRe.exec(line);
    if (!match?.[1] || !match[2]) continue;
    if (pidAlive(parseInt(match[2], 36))) continue;
    const del = await run('ip', ['link', 'del', match[1]]).catch(() => undefined);
    if (del?.code === 0) removed.push(`link ${match[1]}`);
  }
  return removed;
}

async function pickSubnetOctet(preferred: number | undefined): Promise<number> {
  const addrs = (await run('ip', ['-4', '-o', 'addr', 'show']).catch(() => undefined))?.stdout ?? '';
  const taken = (n: number): boolean => addrs.includes(` 198.18.${n}.`);
  if (preferred !== undefined) {
    if (!Number.isInteger(preferred) || preferred < 0 || preferred > 255) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `subnetOctet ${preferred} must be 0-255`, {
        field: 'subnetOctet',
      });
    }
    if (taken(preferred)) {
      throw new MeshError(
        ErrorCodes.ALREADY_EXISTS,
        `198.18.${preferred}.0/24 is already in use on this host`,
        {
          field: 'subnetOctet',
        },
      );
    }
    return preferred;
  }
  const start = 16 + (process.pid % 200);
  for (let i = 0; i < 230; i++) {
    const n = 16 + ((start - 16 + i) % 230);
    if (!taken(n)) return n;
  }
  throw new MeshError(ErrorCodes.RESOURCE_EXHAUSTED, 'no free /24 left in 198.18.16.0-198.18.245.0');
}

function validate(options: NetnsTopologyOptions): void {
  if (!PREFIX_RE.test(options.prefix)) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `prefix "${options.prefix}" must be 1-6 of [a-z0-9] starting with a letter`,
      { field: 'prefix' },
    );
  }
  if (options.zones.length === 0 || options.zones.length > 50) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'zones must list 1 to 50 zone names', {
      field: 'zones',
    });
  }
  const seen = new Set<string>();
  for (const [i, zone] of options.zones.entries()) {
    if (!ZONE_RE.test(zone) || seen.has(zone)) {
      throw new MeshError(
        ErrorCodes.INVALID_ARGUMENT,
        `zones[${i}] "${zone}" is not a unique DNS-1123 label`,
        {
          field: `zones[${i}]`,
        },
      );
    }
    seen.add(zone);
  }
  for (const [i, port] of (options.allowedPorts ?? []).entries()) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `allowedPorts[${i}] ${port} is not a TCP port`, {
        field: `allowedPorts[${i}]`,
      });
    }
  }
}

/**
 * Build the topology (see the module comment). On failure half-way, whatever
 * was created is removed again before the error is thrown.
 */
export async function createNetnsTopology(options: NetnsTopologyOptions): Promise<NetnsTopology> {
  validate(options);
  if (options.loopback === true) return loopbackTopology(options.zones, 'loopback requested by the caller');
  const probe = await isNetnsAvailable();
  if (!probe.available) {
    if (options.requireNetns === true) {
      throw new MeshError(
        ErrorCodes.UNAVAILABLE,
        `network namespaces unavailable: ${probe.reason ?? 'unknown'}`,
      );
    }
    return loopbackTopology(options.zones, probe.reason ?? 'network namespaces unavailable');
  }
  await cleanupNetnsLeftovers(options.prefix);
  const timeout = options.commandTimeoutMs ?? 10_000;
  const octet = await pickSubnetOctet(options.subnetOctet);
  const pid36 = process.pid.toString(36);
  const bridge = `${options.prefix}-${pid36}-b`;
  const hostAddress = `198.18.${octet}.1`;
  const subnet = `198.18.${octet}.0/24`;
  const zones: TopologyZone[] = options.zones.map((name, i) => ({
    name,
    netns: `${options.prefix}-${process.pid}-${name}`,
    address: `198.18.${octet}.${i + 2}`,
  }));
  const created: { bridge: boolean; netns: string[] } = { bridge: false, netns: [] };
  const children = new Set<ChildProcess>();

  const teardown = async (): Promise<void> => {
    for (const child of children) killGroup(child);
    children.clear();
    for (const netns of created.netns) {
      await killNetnsPids(netns);
      await run('ip', ['netns', 'del', netns], timeout).catch(() => undefined);
    }
    created.netns = [];
    if (created.bridge) await run('ip', ['link', 'del', bridge], timeout).catch(() => undefined);
    created.bridge = false;
  };

  const nsRun = (netns: string, args: string[]): Promise<string> =>
    must('ip', ['netns', 'exec', netns, ...args], timeout);

  try {
    await must('ip', ['link', 'add', bridge, 'type', 'bridge'], timeout);
    created.bridge = true;
    await must('ip', ['addr', 'add', `${hostAddress}/24`, 'dev', bridge], timeout);
    await must('ip', ['link', 'set', bridge, 'up'], timeout);
    for (const [i, zone] of zones.entries()) {
      const netns = zone.netns ?? '';
      await must('ip', ['netns', 'add', netns], timeout);
      created.netns.push(netns);
      const hostSide = `${options.prefix}-${pid36}-${i}`;
      await must(
        'ip',
        ['link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns],
        timeout,
      );
      await must('ip', ['link', 'set', hostSide, 'master', bridge], timeout);
      await must('ip', ['link', 'set', hostSide, 'up'], timeout);
      await nsRun(netns, ['ip', 'link', 'set', 'lo', 'up']);
      await nsRun(netns, ['ip', 'addr', 'add', `${zone.address}/24`, 'dev', 'eth0']);
      await nsRun(netns, ['ip', 'link', 'set', 'eth0', 'up']);
      // Isolation: replies and the host pass; other zones reach only the allowed ports.
      const ipt = (...args: string[]): Promise<string> => nsRun(netns, ['iptables', '-w', ...args]);
      await ipt('-N', ALLOW_CHAIN);
      await ipt('-A', 'INPUT', '-i', 'lo', '-j', 'ACCEPT');
      await ipt('-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT');
      await ipt('-A', 'INPUT', '-s', `${hostAddress}/32`, '-j', 'ACCEPT');
      await ipt('-A', 'INPUT', '-j', ALLOW_CHAIN);
      await ipt('-A', 'INPUT', '-s', subnet, '-j', 'DROP');
      for (const port of options.allowedPorts ?? []) {
        await ipt('-A', ALLOW_CHAIN, '-p', 'tcp', '--dport', String(port), '-j', 'ACCEPT');
      }
    }
  } catch (err) {
    await teardown();
    throw err;
  }

  const byName = new Map(zones.map((z) => [z.name, z]));
  const zoneOf = (name: string): TopologyZone => {
    const zone = byName.get(name);
    if (!zone) {
      throw new MeshError(
        ErrorCodes.NOT_FOUND,
        `no zone "${name}" in the topology (zones: ${[...byName.keys()].join(', ')})`,
      );
    }
    return zone;
  };
  const wrap = (name: string, cmd: string, args: readonly string[]): [string, string[]] => [
    'ip',
    ['netns', 'exec', zoneOf(name).netns ?? '', cmd, ...args],
  ];
  let closing: Promise<void> | undefined;
  return {
    mode: 'netns',
    fallbackReason: undefined,
    zones,
    hostAddress,
    subnet,
    zone: zoneOf,
    wrap,
    spawn(name, cmd, args, spawnOptions = {}) {
      const [command, wrapped] = wrap(name, cmd, args);
      return track(children, spawn(command, wrapped, { ...spawnOptions, detached: true }));
    },
    exec(name, cmd, args, timeoutMs) {
      const [command, wrapped] = wrap(name, cmd, args);
      return run(command, wrapped, timeoutMs ?? timeout);
    },
    async allowPorts(name, ports) {
      const netns = zoneOf(name).netns ?? '';
      for (const port of ports) {
        await nsRun(netns, [
          'iptables',
          '-w',
          '-A',
          ALLOW_CHAIN,
          '-p',
          'tcp',
          '--dport',
          String(port),
          '-j',
          'ACCEPT',
        ]);
      }
    },
    close() {
      closing ??= teardown();
      return closing;
    },
  };
}

function track(children: Set<ChildProcess>, child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** SIGKILL a child's process group (it was spawned detached, so it leads one). */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    try {
      child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** Every zone on 127.0.0.1, commands run directly: the fallback when namespaces are unavailable. */
function loopbackTopology(names: string[], reason: string): NetnsTopology {
  const zones: TopologyZone[] = names.map((name) => ({ name, netns: undefined, address: '127.0.0.1' }));
  const byName = new Map(zones.map((z) => [z.name, z]));
  const children = new Set<ChildProcess>();
  const zoneOf = (name: string): TopologyZone => {
    const zone = byName.get(name);
    if (!zone) {
      throw new MeshError(
        ErrorCodes.NOT_FOUND,
        `no zone "${name}" in the topology (zones: ${names.join(', ')})`,
      );
    }
    return zone;
  };
  return {
    mode: 'loopback',
    fallbackReason: reason,
    zones,
    hostAddress: '127.0.0.1',
    subnet: '127.0.0.0/8',
    zone: zoneOf,
    wrap(name, cmd, args) {
      zoneOf(name);
      return [cmd, [...args]];
    },
    spawn(name, cmd, args, spawnOptions = {}) {
      zoneOf(name);
      return track(children, spawn(cmd, [...args], { ...spawnOptions, detached: true }));
    },
    exec(name, cmd, args, timeoutMs) {
      zoneOf(name);
      return run(cmd, args, timeoutMs);
    },
    async allowPorts(name) {
      zoneOf(name);
    },
    async close() {
      for (const child of children) killGroup(child);
      children.clear();
    },
  };
}
