/**
 * Closes HTTP/2 connections that have had no open stream for `idleMs`, by
 * one timer per owner (a server, a pool) that runs only while the owner has
 * connections. Not a socket timeout per connection: arming one each time a
 * connection goes from busy to idle costs a timer list update per request,
 * which in sequential requests through two sidecars was 50–100 µs of
 * latency (docs/performance.md, session 15).
 */

import { monotonicMs } from '../clock.js';
import type { H2Session } from './h2-session.js';

function sweepSessions(sweep: IdleSweep): void {
  sweep.sweep();
}

export class IdleSweep {
  readonly #idleMs: number;
  readonly #sessions: () => Iterable<H2Session>;
  #timer: NodeJS.Timeout | undefined;

  /** `sessions`: the owner's current connections, read at each sweep. */
  constructor(idleMs: number, sessions: () => Iterable<H2Session>) {
    this.#idleMs = idleMs;
    this.#sessions = sessions;
  }

  /** A connection was added: the sweep runs (if connections can idle out at all). */
  start(): void {
    if (this.#timer !== undefined || this.#idleMs <= 0) return;
    this.#timer = setInterval(sweepSessions, Math.max(50, Math.min(1000, this.#idleMs / 4)), this);
    this.#timer.unref();
  }

  sweep(): void {
    const now = monotonicMs();
    let any = false;
    for (const session of this.#sessions()) {
      any = true;
      if (session.active === 0 && now - session.idleSince >= this.#idleMs) session.idle();
    }
    if (!any) this.stop();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
