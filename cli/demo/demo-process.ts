/**
 * The demo's child processes (the sample apps). Each runs in its own
 * process group so that stopping it reaches anything it started, and holds
 * a stdin pipe from the demo, so it exits by itself if the demo dies.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import type { DemoAppOptions } from './demo-app.js';

export interface DemoChild {
  readonly pid: number;
  /** The port the app bound. */
  readonly port: number;
  /** True once the process has exited (killed by a user, or crashed). */
  readonly exited: boolean;
  /** Called once when the process exits on its own (not through stop()). */
  onExit(listener: (code: number | null, signal: NodeJS.Signals | null) => void): void;
  /** SIGTERM the process group, SIGKILL after `graceMs`; resolves once it exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

/** Where a compiled entry (`demo-app-main.js`, `demo-relay-main.js`) lives: next to this module. */
function entryPath(name: string): string {
  const entry = fileURLToPath(new URL(`./${name}`, import.meta.url));
  if (!existsSync(entry)) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `${entry} is missing: build first with npm run build (npm start does)`,
    );
  }
  return entry;
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * Start one sample app as a child process and resolve once it listens.
 * `prefix` runs it under another command (e.g. `ip netns exec ns`).
 */
export function spawnDemoApp(options: DemoAppOptions, prefix: string[] = []): Promise<DemoChild> {
  return spawnDemoChild(
    'demo-app-main.js',
    { MESHFED_DEMO_APP: JSON.stringify(options) },
    `sample app ${options.service}`,
    prefix,
  );
}

/**
 * Start `entry` (a script next to this module that prints `{"port":…}` once
 * listening and exits when its stdin closes) and resolve once it listens.
 */
export async function spawnDemoChild(
  entry: string,
  env: Record<string, string>,
  label: string,
  prefix: string[] = [],
): Promise<DemoChild> {
  const argv = [...prefix, process.execPath, entryPath(entry)];
  const [command, ...args] = argv;
  const child = spawn(command ?? process.execPath, args, {
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...env, NODE_OPTIONS: '' },
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  let exited = false;
  let stopping = false;
  const exitListeners: Array<(code: number | null, signal: NodeJS.Signals | null) => void> = [];
  const exitedPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      if (!stopping) for (const listener of exitListeners) listener(code, signal);
      resolve();
    });
  });
  const bound = await new Promise<{ port: number; pid: number }>((resolve, reject) => {
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const line = out.split('\n')[0];
      if (out.includes('\n') && line !== undefined) {
        try {
          resolve(JSON.parse(line) as { port: number; pid: number });
        } catch {
          reject(new MeshError(ErrorCodes.INTERNAL, `${label}: unexpected output ${line}`));
        }
      }
    });
    child.once('error', (err) =>
      reject(new MeshError(ErrorCodes.INTERNAL, `cannot start ${label}: ${err.message}`)),
    );
    child.once('exit', () =>
      reject(
        new MeshError(ErrorCodes.CONFIG, stderr.trim().replace(/^error: /, '') || `${label} exited at start`),
      ),
    );
  });
  let stopped: Promise<void> | undefined;
  return {
    pid: child.pid ?? bound.pid,
    port: bound.port,
    get exited() {
      return exited;
    },
    onExit(listener) {
      exitListeners.push(listener);
    },
    stop(graceMs = 2000) {
      stopped ??= (async () => {
        stopping = true;
        if (exited) return;
        killGroup(child, 'SIGTERM');
        child.stdin?.destroy();
        const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
        await exitedPromise;
        clearTimeout(timer);
      })();
      return stopped;
    },
  };
}
