/**
 * A private redis-server for one test file: a free port, a temp dir, no
 * snapshots (unless `persistent`), stopped in teardown. Never the system
 * service.
 */

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { freePort } from '../../core/free-port.js';
import { waitFor } from './wait.js';

export interface RedisServerOptions {
  /** Keep data across `restart()` with an fsync-always AOF. Default false. */
  persistent?: boolean;
}

export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Stops the process (SIGTERM, then SIGKILL) and starts it again on the same port and dir. */
  restart(): Promise<void>;
  /** Stops the process without removing the dir (for "Redis is down" tests). */
  kill(): Promise<void>;
  /** Stops the process and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

function redisServerPath(): string {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const bin = found.stdout.trim();
  if (found.status !== 0 || bin === '') {
    throw new Error(
      'redis-server is not installed. `.ci/run` installs it (apt-get install redis-server); ' +
        'the Redis store tests start their own redis-server on a free port.',
    );
  }
  return bin;
}

/** Sends PING on a raw socket; true on +PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    const finish = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => finish(false));
    sock.once('error', () => finish(false));
    sock.on('data', (chunk) => {
      data += chunk.toString();
      if (data.includes('\r\n')) finish(data.startsWith('+PONG'));
    });
    sock.once('connect', () => sock.write('PING\r\n'));
  });
}

/** Starts redis-server on a free port and resolves once it answers PING. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const bin = redisServerPath();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshfed-redis-'));
  const port = await freePort();
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--daemonize',
    'no',
    '--logfile',
    path.join(dir, 'redis.log'),
    ...(options.persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
  ];
  let child: ChildProcess | undefined;
  let stopped = false;

  const launch = async (): Promise<void> => {
    const proc = spawn(bin, args, { stdio: 'ignore' });
    child = proc;
    let exited = false;
    proc.once('exit', () => {
      exited = true;
    });
    // An exit ends the wait at once rather than as a timeout.
    const state = await waitFor(async () => (exited ? 'exited' : (await ping(port)) && 'ready'), {
      timeoutMs: 10_000,
      intervalMs: 20,
      what: `redis-server on port ${port}`,
    });
    if (state === 'exited') {
      throw new Error(`redis-server exited at start; see ${path.join(dir, 'redis.log')}`);
    }
  };

  const halt = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(timer);
  };

  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async restart() {
      await halt();
      await launch();
    },
    kill: halt,
    async stop() {
      if (stopped) return;
      stopped = true;
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
