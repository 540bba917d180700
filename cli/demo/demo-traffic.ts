/**
 * Light traffic through the mesh: the demo calls the frontend app a few
 * times a second (the frontend calls backend through its sidecar), and
 * prints one line every report period saying where the calls landed, so
 * the canary split and a failover are visible in the terminal.
 */

import http from 'node:http';
import type { DemoAppAnswer } from './demo-app.js';

export interface TrafficOptions {
  /** The frontend app's URL. */
  url: string;
  /** Pause between calls. Default 250 ms. */
  intervalMs?: number;
  /** One summary line per period. Default 10 s; 0 = never. */
  reportEveryMs?: number;
  report: (line: string) => void;
}

export interface Traffic {
  /** Calls made and their outcome by `version zone` of the backend that answered. */
  totals(): { calls: number; failed: number; byBackend: Record<string, number> };
  close(): void;
}

function callOnce(url: string): Promise<{ status: number; backend?: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => {
        let backend: string | undefined;
        try {
          const answer = JSON.parse(text) as DemoAppAnswer;
          const up = answer.upstream?.body;
          if (typeof up === 'object') backend = `${up.version} ${up.zone}${up.vm ? ' (VM)' : ''}`;
        } catch {
          // Counted as failed below.
        }
        resolve({ status: res.statusCode ?? 0, ...(backend === undefined ? {} : { backend }) });
      });
    });
    req.setTimeout(5000, () => req.destroy());
    req.on('error', () => resolve({ status: 0 }));
  });
}

function describe(counts: Map<string, number>): string {
  return [...counts.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ');
}

/** Start calling; stop with close(). */
export function startTraffic(options: TrafficOptions): Traffic {
  const interval = options.intervalMs ?? 250;
  const reportEvery = options.reportEveryMs ?? 10_000;
  let calls = 0;
  let failed = 0;
  const byBackend = new Map<string, number>();
  let window = { calls: 0, failed: 0, byBackend: new Map<string, number>() };
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const loop = async (): Promise<void> => {
    if (stopped) return;
    const answer = await callOnce(options.url);
    calls++;
    window.calls++;
    if (answer.status === 200 && answer.backend !== undefined) {
      byBackend.set(answer.backend, (byBackend.get(answer.backend) ?? 0) + 1);
      window.byBackend.set(answer.backend, (window.byBackend.get(answer.backend) ?? 0) + 1);
    } else {
      failed++;
      window.failed++;
    }
    if (!stopped) timer = setTimeout(() => void loop(), interval);
  };
  void loop();
  const reporter =
    reportEvery > 0
      ? setInterval(() => {
          const w = window;
          window = { calls: 0, failed: 0, byBackend: new Map() };
          options.report(
            `traffic, last ${reportEvery / 1000} s: ${w.calls} calls frontend → backend; answered by ${describe(w.byBackend) || 'nobody'}; failed: ${w.failed}`,
          );
        }, reportEvery)
      : undefined;
  return {
    totals: () => ({ calls, failed, byBackend: Object.fromEntries(byBackend) }),
    close() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      if (reporter !== undefined) clearInterval(reporter);
    },
  };
}
