/**
 * A sample workload's registration in its zone (universal mode): POST
 * /api/v1/workloads with the workload's proxy token, then heartbeats. The
 * demo plays the workload's health checker: it probes the app every second
 * and reports a dead app as unhealthy at once, so the zone takes it out of
 * the endpoints (and the sidecars that call it fail over).
 */

import http from 'node:http';
import type { Logger } from '../../core/log.js';
import { requestJson, requestOk } from './demo-http.js';
import type { DemoChild } from './demo-process.js';

export interface RegistrationOptions {
  /** The zone's REST API base URL as the demo reaches it. */
  zoneApi: string;
  zone: string;
  namespace: string;
  /** Workload name (the proxy token binds it). */
  name: string;
  proxyToken: string;
  labels: Record<string, string>;
  /** The address peers and the gateway of its zone reach the sidecar at. */
  address: string;
  inboundPort: number;
  app: DemoChild;
  /** Where the demo probes the app (its host as seen from the demo). */
  probeHost: string;
  logger: Logger;
  /** Told when the app exits by itself (a user killed it). */
  onAppExit: (code: number | null, signal: NodeJS.Signals | null) => void;
}

export interface Registration {
  /** Stop probing and beating. Idempotent. */
  stop(): void;
}

/** GET http://host:port/healthz → true on 200 within a second. */
export function probeApp(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/healthz', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.setTimeout(1000, () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** Register the workload (idempotent) and keep its health reported. */
export async function registerWorkload(options: RegistrationOptions): Promise<Registration> {
  const { zoneApi, proxyToken, app } = options;
  const register = (): Promise<Record<string, unknown>> =>
    requestOk(
      `registering ${options.name} in ${options.zone}`,
      'POST',
      `${zoneApi}/api/v1/workloads`,
      proxyToken,
      {
        address: options.address,
        ports: { http: app.port },
        labels: options.labels,
        inboundPort: options.inboundPort,
        healthy: true,
      },
    );
  await register();

  // Report a change at once, and beat every 5 s regardless (the zone's grace is 30 s).
  let reported = true;
  let lastBeat = Date.now();
  let busy = false;
  const beat = async (healthy: boolean): Promise<void> => {
    const answer = await requestJson(
      'POST',
      `${zoneApi}/api/v1/workloads/${options.namespace}/${options.name}/heartbeat`,
      proxyToken,
      { healthy },
    );
    // The entry is gone (deleted by hand, or the zone's store was wiped): register again.
    if (answer.status === 404 && healthy) await register();
    reported = healthy;
    lastBeat = Date.now();
  };
  const tick = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      const healthy = !app.exited && (await probeApp(options.probeHost, app.port));
      if (healthy !== reported || Date.now() - lastBeat >= 5000) await beat(healthy);
    } catch (err) {
      options.logger.warn('heartbeat failed', {
        workload: options.name,
        zone: options.zone,
        error: String(err),
      });
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), 1000);
  timer.unref();
  app.onExit((code, signal) => {
    options.onAppExit(code, signal);
    void tick();
  });
  return { stop: () => clearInterval(timer) };
}
