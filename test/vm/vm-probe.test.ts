/**
 * The WorkloadGroup probe as the VM agent runs it: httpGet, tcpSocket and
 * exec against real targets, with Kubernetes' thresholds (a state changes
 * only after `successThreshold` / `failureThreshold` results in a row) and
 * `unknown` — not ready — until the first verdict.
 */

import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from '@jest/globals';
import { Prober, type ProbeState } from '../../vm-agent/agent-probe.js';
import { freePort } from '../../core/free-port.js';
import { waitFor } from '../common/wait.js';

const probers: Prober[] = [];
const servers: Array<http.Server | net.Server> = [];

afterEach(() => {
  for (const p of probers.splice(0)) p.stop();
  for (const s of servers.splice(0)) s.close();
});

function track(prober: Prober): { prober: Prober; states: ProbeState[] } {
  const states: ProbeState[] = [];
  prober.on('change', (state: ProbeState) => states.push(state));
  probers.push(prober);
  prober.start();
  return { prober, states };
}

async function listen(server: http.Server | net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return (server.address() as AddressInfo).port;
}

describe('the VM probe', () => {
  it('httpGet: passes on 2xx/3xx, fails after failureThreshold errors in a row, sends the headers', async () => {
    let status = 200;
    const seen: string[] = [];
    const port = await listen(
      http.createServer((req, res) => {
        seen.push(`${req.url ?? ''} ${String(req.headers['x-probe'])}`);
        res.writeHead(status);
        res.end();
      }),
    );
    const { prober, states } = track(
      new Prober({
        periodSeconds: 1,
        failureThreshold: 2,
        httpGet: { port, path: '/ready', httpHeaders: [{ name: 'x-probe', value: 'vm' }] },
      }),
    );
    expect(prober.state).toBe('unknown');
    expect(prober.healthy).toBe(false);
    await waitFor(() => prober.state === 'passing', { what: 'the probe to pass' });
    expect(seen[0]).toBe('/ready vm');
    status = 503;
    const failuresBefore = seen.length;
    await waitFor(() => prober.state === 'failing', { what: 'the probe to fail', timeoutMs: 5000 });
    // Two failing answers in a row were needed, not one.
    expect(seen.length - failuresBefore).toBeGreaterThanOrEqual(2);
    expect(prober.message).toContain('HTTP 503');
    expect(states).toEqual(['passing', 'failing']);
  }, 15_000);

  it('tcpSocket: passes while something accepts connections', async () => {
    const port = await listen(net.createServer((socket) => socket.destroy()));
    const { prober } = track(new Prober({ periodSeconds: 1, failureThreshold: 1, tcpSocket: { port } }));
    await waitFor(() => prober.state === 'passing', { what: 'the tcp probe to pass' });
    const closed = await freePort();
    const { prober: down } = track(
      new Prober({ periodSeconds: 1, failureThreshold: 1, tcpSocket: { port: closed } }),
    );
    await waitFor(() => down.state === 'failing', { what: 'the tcp probe to fail' });
    expect(down.message).toContain('ECONNREFUSED');
  });

  it('exec: exit 0 passes, anything else fails with its output, a hang is cut at the timeout', async () => {
    const { prober: ok } = track(new Prober({ periodSeconds: 1, exec: { command: ['true'] } }));
    await waitFor(() => ok.state === 'passing', { what: 'exec true to pass' });
    const { prober: bad } = track(
      new Prober({
        periodSeconds: 1,
        failureThreshold: 1,
        exec: { command: ['sh', '-c', 'echo not ready >&2; exit 3'] },
      }),
    );
    await waitFor(() => bad.state === 'failing', { what: 'exec exit 3 to fail' });
    expect(bad.message).toBe('exec sh: exit 3: not ready');
    const { prober: slow } = track(
      new Prober({
        periodSeconds: 1,
        timeoutSeconds: 1,
        failureThreshold: 1,
        exec: { command: ['sleep', '30'] },
      }),
    );
    await waitFor(() => slow.state === 'failing', { what: 'a hanging exec to fail', timeoutMs: 5000 });
    expect(slow.message).toContain('killed after 1000 ms');
  }, 15_000);

  it('starts over when the group changes its probe, and is healthy with none', async () => {
    const { prober } = track(new Prober({ periodSeconds: 1, exec: { command: ['true'] } }));
    await waitFor(() => prober.state === 'passing', { what: 'the first probe to pass' });
    prober.update({ periodSeconds: 1, failureThreshold: 1, exec: { command: ['false'] } });
    expect(prober.state).toBe('unknown');
    await waitFor(() => prober.state === 'failing', { what: 'the new probe to fail' });
    prober.update(undefined);
    expect(prober.state).toBe('none');
    expect(prober.healthy).toBe(true);
  });
});
