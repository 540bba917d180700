/**
 * The WorkloadGroup's readiness probe, run on the VM with Kubernetes'
 * semantics: after `initialDelaySeconds`, one attempt every `periodSeconds`
 * (default 10) that fails after `timeoutSeconds` (default 1); the state
 * turns passing after `successThreshold` (default 1) successes in a row and
 * failing after `failureThreshold` (default 3) failures in a row. Until
 * then it is `unknown`, which counts as not ready: a new VM gets traffic
 * only once its service answers.
 *
 * Kinds: httpGet (2xx/3xx passes; HTTPS without certificate checks, as
 * Kubernetes does), tcpSocket (a connection is accepted), exec (exit 0).
 */

import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Logger } from '../core/log.js';
import type { ProbeSpec } from './agent-config.js';

export type ProbeState = 'none' | 'unknown' | 'passing' | 'failing';

interface Attempt {
  ok: boolean;
  message: string;
}

function seconds(value: number | undefined, fallback: number, min: number): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= min ? value : fallback;
}

function httpAttempt(spec: NonNullable<ProbeSpec['httpGet']>, timeoutMs: number): Promise<Attempt> {
  const https_ = (spec.scheme ?? 'HTTP').toUpperCase() === 'HTTPS';
  const host = spec.host ?? '127.0.0.1';
  const path = spec.path ?? '/';
  const headers: Record<string, string> = {};
  for (const h of spec.httpHeaders ?? []) headers[h.name] = h.value;
  return new Promise((resolve) => {
    const options = { host, port: spec.port, path, method: 'GET', headers, timeout: timeoutMs };
    const req = https_ ? https.request({ ...options, rejectUnauthorized: false }) : http.request(options);
    const target = `${https_ ? 'https' : 'http'}://${host}:${spec.port}${path}`;
    req.on('response', (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      resolve({
        ok: status >= 200 && status < 400,
        message: `GET ${target}: HTTP ${status}`,
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ ok: false, message: `GET ${target}: ${err.message}` }));
    req.end();
  });
}

function tcpAttempt(spec: NonNullable<ProbeSpec['tcpSocket']>, timeoutMs: number): Promise<Attempt> {
  const host = spec.host ?? '127.0.0.1';
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: spec.port });
    const done = (attempt: Attempt): void => {
      socket.destroy();
      resolve(attempt);
    };
    socket.setTimeout(timeoutMs, () =>
      done({ ok: false, message: `tcp ${host}:${spec.port}: no connection within ${timeoutMs} ms` }),
    );
    socket.once('connect', () => done({ ok: true, message: `tcp ${host}:${spec.port}: connected` }));
    socket.once('error', (err) => done({ ok: false, message: `tcp ${host}:${spec.port}: ${err.message}` }));
  });
}

function execAttempt(spec: NonNullable<ProbeSpec['exec']>, timeoutMs: number): Promise<Attempt> {
  const [file, ...args] = spec.command;
  if (file === undefined) return Promise.resolve({ ok: false, message: 'exec probe has an empty command' });
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 },
      (err, stdout, stderr) => {
        if (err === null) {
          resolve({ ok: true, message: `exec ${file}: exit 0` });
          return;
        }
        const output = `${String(stderr)}${String(stdout)}`.trim().slice(0, 200);
        const code = (err as { code?: unknown }).code;
        const why = err.killed ? `killed after ${timeoutMs} ms` : `exit ${String(code)}`;
        resolve({ ok: false, message: `exec ${file}: ${why}${output === '' ? '' : `: ${output}`}` });
      },
    );
  });
}

/** Events: `change(state, message)` when the state changes. */
export class Prober extends EventEmitter {
  #spec: ProbeSpec | undefined;
  #state: ProbeState;
  #message = '';
  #since = new Date().toISOString();
  #successes = 0;
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #generation = 0;

  constructor(
    spec: ProbeSpec | undefined,
    private readonly logger?: Logger,
  ) {
    super();
    this.#spec = spec;
    this.#state = spec === undefined ? 'none' : 'unknown';
  }

  get state(): ProbeState {
    return this.#state;
  }

  get message(): string {
    return this.#message;
  }

  get since(): string {
    return this.#since;
  }

  /** Ready for traffic: passing, or no probe at all. */
  get healthy(): boolean {
    return this.#state === 'passing' || this.#state === 'none';
  }

  get spec(): ProbeSpec | undefined {
    return this.#spec;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule(seconds(this.#spec?.initialDelaySeconds, 0, 0) * 1000);
  }

  /** Replaces the probe (the WorkloadGroup changed); the state starts over. */
  update(spec: ProbeSpec | undefined): void {
    if (JSON.stringify(spec) === JSON.stringify(this.#spec)) return;
    this.#spec = spec;
    this.#generation++;
    this.#successes = 0;
    this.#failures = 0;
    this.#set(spec === undefined ? 'none' : 'unknown', spec === undefined ? '' : 'probe changed');
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#running) this.#schedule(seconds(spec?.initialDelaySeconds, 0, 0) * 1000);
  }

  stop(): void {
    this.#running = false;
    this.#generation++;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(delayMs: number): void {
    if (!this.#running || this.#spec === undefined) return;
    const generation = this.#generation;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#runOnce(generation);
    }, delayMs);
    this.#timer.unref();
  }

  async #runOnce(generation: number): Promise<void> {
    const spec = this.#spec;
    if (spec === undefined) return;
    const timeoutMs = seconds(spec.timeoutSeconds, 1, 1) * 1000;
    let attempt: Attempt;
    try {
      if (spec.httpGet !== undefined) attempt = await httpAttempt(spec.httpGet, timeoutMs);
      else if (spec.tcpSocket !== undefined) attempt = await tcpAttempt(spec.tcpSocket, timeoutMs);
      else if (spec.exec !== undefined) attempt = await execAttempt(spec.exec, timeoutMs);
      else attempt = { ok: false, message: 'the probe has no httpGet, tcpSocket or exec' };
    } catch (err) {
      attempt = { ok: false, message: (err as Error).message };
    }
    if (generation !== this.#generation) return;
    if (attempt.ok) {
      this.#successes++;
      this.#failures = 0;
      if (this.#successes >= seconds(spec.successThreshold, 1, 1)) this.#set('passing', attempt.message);
    } else {
      this.#failures++;
      this.#successes = 0;
      if (this.#failures >= seconds(spec.failureThreshold, 3, 1)) this.#set('failing', attempt.message);
      else if (this.#state === 'passing') this.#message = attempt.message;
    }
    this.#schedule(seconds(spec.periodSeconds, 10, 1) * 1000);
  }

  #set(state: ProbeState, message: string): void {
    this.#message = message;
    if (state === this.#state) return;
    this.#state = state;
    this.#since = new Date().toISOString();
    this.logger?.info('probe state changed', { state, message });
    this.emit('change', state, message);
  }
}
