/**
 * Runs the real built CLI (`node dist/cli/main.js`) as a child process, the
 * way a user does. `npm test` builds first; `assertCliBuilt()` in beforeAll
 * fails with instructions when dist is missing.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SIDECAR_BUNDLE_FILE } from '../../cli/sidecar-entry.js';

/** Absolute path of the built CLI entry. */
export const CLI_MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli/main.js');

/** The built sidecar bundle beside it (scripts/bundle-sidecar.ts), and its source map. */
export const SIDECAR_BUNDLE = path.join(path.dirname(CLI_MAIN), SIDECAR_BUNDLE_FILE);
export const SIDECAR_BUNDLE_MAP = `${SIDECAR_BUNDLE}.map`;

/**
 * Throw a clear error when the CLI has not been built, or when the sidecar
 * bundle is older than the modules it is made from (tsc alone rebuilt them).
 */
export function assertCliBuilt(): void {
  for (const file of [CLI_MAIN, SIDECAR_BUNDLE]) {
    if (!existsSync(file))
      throw new Error(`${file} is missing: build first with \`npm run build\` (npm test does)`);
  }
  const bundledFrom = path.join(path.dirname(CLI_MAIN), 'proxy-main.js');
  if (statSync(SIDECAR_BUNDLE).mtimeMs < statSync(bundledFrom).mtimeMs) {
    throw new Error(`${SIDECAR_BUNDLE} is older than ${bundledFrom}: rebuild with \`npm run build\``);
  }
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Added to the environment (undefined removes a variable). */
  env?: Record<string, string | undefined>;
  /** Written to stdin, then stdin is closed. */
  input?: string;
  cwd?: string;
  /** Kill the child after this long. Default 20 s. */
  timeoutMs?: number;
}

/**
 * The child's environment: the test process's, minus every MESHFED_*
 * variable and NODE_OPTIONS (jest's VM-modules flag), plus `extra`.
 * MESHFED_CONFIG defaults to a path that does not exist so a developer's
 * own ~/.meshfed/config never leaks into a test.
 */
export function cliEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('MESHFED_') || key === 'NODE_OPTIONS') continue;
    env[key] = value;
  }
  env.MESHFED_CONFIG = path.join(path.dirname(CLI_MAIN), 'no-such-dir', 'config');
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

export interface RunningCli {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when the child exits. */
  exited: Promise<CliResult>;
}

/** Start the CLI and return at once (for long-running commands: global-cp, demo, get -w). */
export function startCli(args: string[], options: CliOptions = {}): RunningCli {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], {
    env: cliEnv(options.env),
    cwd: options.cwd ?? process.cwd(),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  if (options.input !== undefined) child.stdin?.end(options.input);
  else child.stdin?.end();
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Run the CLI to completion. */
export async function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const running = startCli(args, options);
  const timeoutMs = options.timeoutMs ?? 20_000;
  const timer = setTimeout(() => running.child.kill('SIGKILL'), timeoutMs);
  try {
    const result = await running.exited;
    if (result.signal === 'SIGKILL') {
      throw new Error(`meshfed ${args.join(' ')} did not finish within ${timeoutMs} ms\n${result.stderr}`);
    }
    return result;
  } finally {
    clearTimeout(timer);
  }
}
