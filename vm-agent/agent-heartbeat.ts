/**
 * The VM's heartbeat to its zone (`POST /api/v1/vm/heartbeat`, signed with
 * the current certificate): every `heartbeatIntervalSeconds`, and at once
 * when the probe changes, so an unhealthy VM leaves the endpoints within a
 * probe period plus the zone's push time. While the zone is away it retries
 * with exponential backoff (1 s doubling, at most the interval), so a zone
 * coming back hears from every VM within one interval.
 */

import { EventEmitter } from 'node:events';
import type { Logger } from '../core/log.js';
import type { AgentConfig, ProbeSpec } from './agent-config.js';
import { zoneRequest, type Proof, type ZoneTarget } from './zone-client.js';

export interface HeartbeatOptions {
  target: ZoneTarget;
  config: () => AgentConfig;
  /** The current certificate and key. */
  proof: () => Proof;
  /** The probe's verdict now. */
  health: () => { healthy: boolean; message: string };
  logger?: Logger;
  /** First retry delay after a failure. Default 1 s. */
  retryMs?: number;
}

/** What the zone answered. */
export interface HeartbeatResult {
  healthy: boolean;
  heartbeatIntervalSeconds: number;
  probe: ProbeSpec | null;
  recreated: boolean;
}

/** Events: `ok(result)`, `failed(error)`. */
export class Heartbeater extends EventEmitter {
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #inflight: Promise<void> | undefined;
  #again = false;
  #failures = 0;

  constructor(private readonly options: HeartbeatOptions) {
    super();
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.beatNow();
  }

  /** Sends a heartbeat now (one in flight at a time; a request during one sends another right after). */
  beatNow(): void {
    if (!this.#running) return;
    if (this.#inflight !== undefined) {
      this.#again = true;
      return;
    }
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#inflight = this.#beat().finally(() => {
      this.#inflight = undefined;
      if (this.#again && this.#running) {
        this.#again = false;
        this.beatNow();
      }
    });
  }

  /** One last heartbeat reporting `healthy: false` (graceful stop: traffic drains before the sidecar closes). */
  async sayGoodbye(timeoutMs: number): Promise<void> {
    try {
      await this.#send(false, 'the VM agent is stopping', timeoutMs);
    } catch (err) {
      this.options.logger?.debug('goodbye heartbeat failed', { err });
    }
  }

  stop(): void {
    this.#running = false;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #beat(): Promise<void> {
    const { healthy, message } = this.options.health();
    const intervalMs = this.options.config().heartbeatIntervalSeconds * 1000;
    try {
      const result = await this.#send(healthy, message, 10_000);
      this.#failures = 0;
      this.emit('ok', result);
      this.#schedule(result.heartbeatIntervalSeconds * 1000);
    } catch (err) {
      this.#failures++;
      this.emit('failed', err);
      const retry = (this.options.retryMs ?? 1000) * 2 ** Math.min(this.#failures - 1, 10);
      this.#schedule(Math.min(retry, intervalMs) * (0.8 + Math.random() * 0.4));
    }
  }

  async #send(healthy: boolean, message: string, timeoutMs: number): Promise<HeartbeatResult> {
    const config = this.options.config();
    const answer = await zoneRequest(this.options.target, 'POST', '/api/v1/vm/heartbeat', {
      json: {
        workloadEntry: config.workloadEntry,
        namespace: config.namespace,
        workloadGroup: config.workloadGroup,
        healthy,
        ...(message === '' ? {} : { message: message.slice(0, 1024) }),
        joinedAt: config.joinedAt,
        keyFingerprint: config.keyFingerprint,
        registration: {
          address: config.address,
          inboundPort: config.ports.inbound,
          labels: config.labels,
          ...(config.servicePort === undefined ? {} : { servicePort: config.servicePort }),
          ...(config.hostname === undefined ? {} : { hostname: config.hostname }),
        },
      },
      proof: this.options.proof(),
      timeoutMs,
    });
    const body = (answer.body ?? {}) as Partial<HeartbeatResult>;
    return {
      healthy: body.healthy === true,
      heartbeatIntervalSeconds:
        typeof body.heartbeatIntervalSeconds === 'number' && body.heartbeatIntervalSeconds > 0
          ? body.heartbeatIntervalSeconds
          : config.heartbeatIntervalSeconds,
      probe: body.probe ?? null,
      recreated: body.recreated === true,
    };
  }

  #schedule(delayMs: number): void {
    if (!this.#running) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.beatNow();
    }, clampHeartbeatDelay(delayMs));
  }
}

/** setTimeout's longest delay (about 24.8 days); Node fires a longer one after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The shortest pause between beats, whatever the zone answers: never a tight loop. */
const MIN_HEARTBEAT_MS = 100;

/**
 * The delay before the next beat, within what a timer can wait. The interval
 * comes from the zone's answer: one that is not a positive number, or one
 * past setTimeout's range, must not turn into a beat every millisecond.
 */
export function clampHeartbeatDelay(delayMs: number): number {
  if (!Number.isFinite(delayMs)) return Number.isNaN(delayMs) ? MIN_HEARTBEAT_MS : MAX_TIMER_MS;
  return Math.min(Math.max(delayMs, MIN_HEARTBEAT_MS), MAX_TIMER_MS);
}
