/**
 * An open-loop fixed-rate HTTP load generator, run as its own process:
 * requests leave on a uniform schedule (rate per second) over keep-alive
 * connections, whatever the answers do, and each latency is measured from
 * the request's scheduled time — so a stall shows up in the percentiles
 * instead of quietly lowering the rate (coordinated omission). This is what
 * wrk2 does; wrk2 is not in Debian, and `hey -q` starts all its workers on
 * the same tick, turning 1,000 rps into bursts of 20 every 20 ms.
 *
 * Usage: node fixed-rate-client.js <url> <host|-> <rate> <seconds> [warmupSeconds] [tag]
 * With `tag` = 1 each request's path gets a unique `?n=<i>` (i counts from 0,
 * warm-up included), so that a packet capture can follow it through a chain
 * of proxies (pcap-http-transit.ts).
 * Prints one JSON line: {rps, requests, totalRequests, errors, p50, p90, p99, max} (ms).
 * The warm-up (default 3 s) is sent on the same schedule but not measured: a
 * fresh Node process optimises its own code in its first seconds, and its
 * stalls then landed in every path's tail alike (direct included).
 */

import http from 'node:http';

interface Result {
  rps: number;
  /** Requests measured (after the warm-up). */
  requests: number;
  /** Requests answered, warm-up included: what the proxies' CPU was spent on. */
  totalRequests: number;
  errors: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function run(
  url: string,
  host: string | undefined,
  rate: number,
  seconds: number,
  warmup: number,
  tag: boolean,
): Promise<Result> {
  const target = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256, scheduling: 'lifo' });
  const headers: Record<string, string> = host === undefined ? {} : { host };
  const total = Math.round(rate * (seconds + warmup));
  const warm = Math.round(rate * warmup);
  const latencies = new Float64Array(total - warm);
  let done = 0;
  let errors = 0;
  let measured = 0;
  const interval = 1000 / rate;
  const start = performance.now() + 50;
  let sent = 0;
  await new Promise<void>((resolve) => {
    const send = (i: number, scheduled: number): void => {
      const req = http.request(
        {
          host: target.hostname,
          port: Number(target.port),
          path: tag ? `${target.pathname}?n=${i}` : target.pathname,
          headers,
          agent,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode !== 200) errors++;
            if (i >= warm) latencies[measured++] = performance.now() - scheduled;
            if (++done === total) resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        if (++done === total) resolve();
      });
      req.end();
    };
    const tick = (): void => {
      const now = performance.now();
      while (sent < total) {
        const scheduled = start + sent * interval;
        if (scheduled > now) break;
        send(sent, scheduled);
        sent++;
      }
      // A timer, never a spin: the generator must not take the CPU the proxies need.
      if (sent < total) setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    };
    setTimeout(tick, 50);
  });
  agent.destroy();
  const sorted = latencies.slice(0, measured).sort();
  return {
    rps: rate,
    requests: measured,
    totalRequests: done - errors,
    errors,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? NaN,
  };
}

const [url = '', hostArg = '-', rate = '1000', seconds = '10', warmup = '3', tag = '0'] =
  process.argv.slice(2);
run(
  url,
  hostArg === '-' ? undefined : hostArg,
  Number(rate),
  Number(seconds),
  Number(warmup),
  tag === '1',
).then(
  (result) => process.stdout.write(JSON.stringify(result) + '\n'),
  (err: unknown) => {
    process.stderr.write(`fixed-rate client failed: ${String(err)}\n`);
    process.exit(1);
  },
);
