/**
 * Plumbing of the end-to-end suite: fixtures transpiled to runnable ES
 * modules, processes started inside a zone's namespace (the built CLI or a
 * fixture) with their output kept, and HTTP requests made from inside a zone
 * through its relay agent.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { canBind } from '../../core/free-port.js';
import type { NetnsTopology } from '../../cli/demo/netns-topology.js';
import { SIDECAR_ENV } from '../../core/sidecar-node-options.js';
import { CLI_MAIN, SIDECAR_BUNDLE, cliEnv } from '../common/cli.js';
import { waitFor } from '../common/wait.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');

/** Transpile the fixtures (they import only node builtins) into `dir` as .mjs; returns name → path. */
export async function buildFixtures(dir: string): Promise<Record<'app' | 'agent' | 'loadgen', string>> {
  await mkdir(dir, { recursive: true });
  const out: Record<string, string> = {};
  for (const name of ['app', 'agent', 'loadgen']) {
    const source = await readFile(path.join(FIXTURES, `e2e-${name}.ts`), 'utf8');
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const file = path.join(dir, `e2e-${name}.mjs`);
    await writeFile(file, js);
    out[name] = file;
  }
  return out as Record<'app' | 'agent' | 'loadgen', string>;
}

/** A process of the suite, in a zone or on the host. */
export interface E2eProcess {
  readonly label: string;
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  alive(): boolean;
  /** Signal the process group and wait for the exit (SIGKILL after 5 s). */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Everything started, so afterAll can kill what a failed test left. */
export const started = new Set<E2eProcess>();

/** Start `node <script> args` in `zone` (undefined = the host) as its own process group. */
export function startNode(
  topology: NetnsTopology,
  zone: string | undefined,
  label: string,
  script: string,
  args: string[],
  env: Record<string, string | undefined> = {},
): E2eProcess {
  const spawnOptions = { env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'] };
  const child =
    zone === undefined
      ? spawn(process.execPath, [script, ...args], { ...spawnOptions, detached: true })
      : topology.spawn(zone, process.execPath, [script, ...args], spawnOptions);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const proc: E2eProcess = {
    label,
    child,
    stdout: () => out,
    stderr: () => err,
    alive,
    async stop(signal = 'SIGTERM') {
      started.delete(proc);
      if (!alive() || child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        child.kill(signal);
      }
      const timer = setTimeout(() => {
        if (alive() && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      }, 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  started.add(proc);
  return proc;
}

/**
 * Start a sidecar as the webhook deploys it: the built bundle
 * (`meshfed-proxy <args>`, dist/cli/meshfed-proxy.cjs) in the sidecar's
 * environment (core/sidecar-node-options.ts).
 */
export function startSidecar(
  topology: NetnsTopology,
  zone: string,
  label: string,
  args: string[],
): E2eProcess {
  return startNode(topology, zone, label, SIDECAR_BUNDLE, args, { ...SIDECAR_ENV });
}

/** Start the built CLI (`meshfed <args>`) in a zone. */
export function startMeshfed(
  topology: NetnsTopology,
  zone: string,
  label: string,
  args: string[],
): E2eProcess {
  return startNode(topology, zone, label, CLI_MAIN, args);
}

/** Wait for a line of the process's output containing `text`; fail early if it exits. */
export async function waitForOutput(proc: E2eProcess, text: string, timeoutMs = 20_000): Promise<string> {
  const found = await waitFor(
    () => {
      const line = (proc.stdout() + proc.stderr()).split('\n').find((l) => l.includes(text));
      if (line !== undefined) return { line };
      return proc.alive() ? undefined : { exited: true as const };
    },
    { timeoutMs, what: `${proc.label}: "${text}"`, intervalMs: 50 },
  );
  if ('exited' in found) throw new Error(`${proc.label} exited:\n${proc.stderr().slice(-3000)}`);
  return found.line;
}

/** One answer relayed by an agent. */
export type AgentResult =
  { status: number; headers: Record<string, string>; body: string } | { error: string };

/** What an agent needs to relay a request. */
export interface AgentRequest {
  url: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  count?: number;
  timeoutMs?: number;
}

/** Make `count` requests from inside the zone whose agent listens at `agentUrl`. */
export async function agentFetch(agentUrl: string, request: AgentRequest): Promise<AgentResult[]> {
  const answer = await fetch(`${agentUrl}/fetch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(request),
  });
  if (answer.status !== 200) throw new Error(`agent answered ${answer.status}: ${await answer.text()}`);
  return ((await answer.json()) as { results: AgentResult[] }).results;
}

/** One request relayed by an agent; throws on a transport error. */
export async function agentFetchOne(
  agentUrl: string,
  request: AgentRequest,
): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const [result] = await agentFetch(agentUrl, { ...request, count: 1 });
  if (result === undefined || 'error' in result) {
    throw new Error(`${request.url}: ${result === undefined ? 'no answer' : result.error}`);
  }
  return result;
}

const usedPorts = new Set<number>();
let nextPort = 20_000 + (process.pid % 500) * 20;

/**
 * A port for a listener of the suite, below the kernel's ephemeral range
 * (32768+): inside a zone, processes' outgoing connections to loopback take
 * ephemeral ports, so a port that was free on the host a moment ago could be
 * taken there. Unique within the run and free on the host (loopback mode).
 */
export async function allocPort(): Promise<number> {
  for (let tries = 0; tries < 2000; tries++) {
    const port = nextPort;
    nextPort = nextPort >= 32_000 ? 20_000 : nextPort + 1;
    if (usedPorts.has(port)) continue;
    if (await canBind(port, '0.0.0.0')) {
      usedPorts.add(port);
      return port;
    }
  }
  throw new Error('no free port left in 20000-32000');
}
