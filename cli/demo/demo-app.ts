/**
 * The demo's sample application: a tiny node:http server that answers with
 * its service, version and zone and the caller identity its sidecar
 * forwarded (`x-forwarded-client-cert`). Given an `upstream`, `GET /` also
 * calls that service through its sidecar's outbound listener (as an app
 * with `HTTP_PROXY` set would) and includes the answer, so one curl to the
 * frontend shows the whole mesh path.
 */

import http from 'node:http';
import { hostname } from 'node:os';

export interface DemoAppOptions {
  service: string;
  version: string;
  zone: string;
  /** Listen port; 0 picks a free one. */
  port: number;
  /** Listen address. Default 127.0.0.1 (the sidecar reaches the app on loopback). */
  host?: string;
  /** True for the workload enrolled through vm-agent join (shown in the answer). */
  vm?: boolean;
  /** Service to call on `GET /`, e.g. `backend.demo`. */
  upstream?: string;
  /** The sidecar's outbound listener, host:port; required with `upstream`. */
  outbound?: string;
}

/** What the app answers with; the backend's answer is nested under `upstream` in the frontend's. */
export interface DemoAppAnswer {
  service: string;
  version: string;
  zone: string;
  host: string;
  vm: boolean;
  /** The caller's SPIFFE ID as the sidecar forwarded it ('' when called directly). */
  peer: string;
  upstream?: { status: number; body: DemoAppAnswer | string };
}

export interface DemoApp {
  readonly port: number;
  close(): Promise<void>;
}

/** The `URI=` of the last element of an XFCC header: the immediate caller. */
export function peerOf(xfcc: string | string[] | undefined): string {
  const value = Array.isArray(xfcc) ? xfcc.join(',') : (xfcc ?? '');
  const match = /URI=([^;,]+)/g;
  let last = '';
  for (let m = match.exec(value); m !== null; m = match.exec(value)) last = m[1] ?? '';
  return last;
}

function callUpstream(
  outbound: string,
  upstream: string,
  path: string,
): Promise<{ status: number; body: DemoAppAnswer | string }> {
  const [host, port] = [
    outbound.slice(0, outbound.lastIndexOf(':')),
    outbound.slice(outbound.lastIndexOf(':') + 1),
  ];
  return new Promise((resolve) => {
    const req = http.request(
      {
        host,
        port: Number(port),
        method: 'GET',
        path: `http://${upstream}${path}`,
        headers: { host: upstream },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: DemoAppAnswer | string = text;
          try {
            body = JSON.parse(text) as DemoAppAnswer;
          } catch {
            // Not JSON: a sidecar's own error text (404 NR, 503 UH, 403 RBAC); passed on as is.
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', () => resolve({ status: 0, body: 'upstream response aborted' }));
      },
    );
    req.setTimeout(5000, () => req.destroy(new Error('timed out after 5 s')));
    req.on('error', (err) =>
      resolve({ status: 0, body: `cannot reach the sidecar at ${outbound}: ${err.message}` }),
    );
    req.end();
  });
}

/** Start the sample app. */
export async function startDemoApp(options: DemoAppOptions): Promise<DemoApp> {
  const host = hostname();
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    const answer: DemoAppAnswer = {
      service: options.service,
      version: options.version,
      zone: options.zone,
      host,
      vm: options.vm === true,
      peer: peerOf(req.headers['x-forwarded-client-cert']),
    };
    const reply = (status: number): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(answer) + '\n');
    };
    if (options.upstream === undefined || options.outbound === undefined) {
      reply(200);
      return;
    }
    void callUpstream(options.outbound, options.upstream, req.url ?? '/').then((upstream) => {
      answer.upstream = upstream;
      // A failed upstream call is a failed call for whoever called us.
      reply(upstream.status === 200 ? 200 : 502);
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
