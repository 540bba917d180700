/**
 * nginx processes for the data-plane benchmark, each single-process
 * (`master_process off`, one worker's worth of work, like one Node proxy):
 *   - the app: `return 200` on keep-alive HTTP/1.1;
 *   - the C baseline chain: a client nginx (plain HTTP in, mTLS out with a
 *     client certificate, verifying the server against the mesh root, TLS
 *     session reuse, upstream keep-alive) and a server nginx (mTLS in with
 *     `ssl_verify_client on`, keep-alive to the app).
 * The same certificates the meshfed proxies use, so both chains do the
 * same cryptography.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort } from '../../core/free-port.js';

export interface NginxProcess {
  pid: number;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

export interface ChainCertificates {
  rootPem: string;
  client: { certChainPem: string; keyPem: string };
  /** Must carry the DNS SAN `serverName` (nginx checks the name). */
  server: { certChainPem: string; keyPem: string };
  serverName: string;
}

function waitListening(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`nothing listens on ${port}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

const COMMON = `
daemon off;
master_process off;
worker_processes 1;
error_log stderr error;
pid nginx.pid;
events { worker_connections 4096; }
`;

const HTTP_COMMON = `
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path tmp/body;
  proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi;
  scgi_temp_path tmp/scgi;
`;

async function startNginx(dir: string, name: string, http: string, port: number): Promise<NginxProcess> {
  const prefix = path.join(dir, name);
  mkdirSync(path.join(prefix, 'tmp'), { recursive: true });
  writeFileSync(path.join(prefix, 'nginx.conf'), `${COMMON}\nhttp {\n${HTTP_COMMON}\n${http}\n}\n`);
  const child = spawn('nginx', ['-p', prefix, '-c', path.join(prefix, 'nginx.conf')], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  await waitListening(port);
  return {
    pid: child.pid ?? 0,
    port,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) {
          resolve();
          return;
        }
        child.once('exit', () => resolve());
        child.kill('SIGQUIT');
        setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      }),
  };
}

/** The benchmark's app: 200 with a 2-byte body. */
export async function startNginxApp(dir: string): Promise<NginxProcess> {
  const port = await freePort();
  return startNginx(
    dir,
    'app',
    `  server {
    listen 127.0.0.1:${port} reuseport backlog=4096;
    location / { default_type text/plain; return 200 "ok"; }
  }`,
    port,
  );
}

export interface NginxChain {
  client: NginxProcess;
  server: NginxProcess;
  stop(): Promise<void>;
}

/** client nginx :clientPort → mTLS → server nginx → app. */
export async function startNginxChain(
  dir: string,
  appPort: number,
  certs: ChainCertificates,
): Promise<NginxChain> {
  const files = path.join(dir, 'certs');
  mkdirSync(files, { recursive: true });
  const file = (name: string, content: string): string => {
    const p = path.join(files, name);
    writeFileSync(p, content);
    return p;
  };
  const root = file('root.pem', certs.rootPem);
  const clientCert = file('client.pem', certs.client.certChainPem);
  const clientKey = file('client-key.pem', certs.client.keyPem);
  const serverCert = file('server.pem', certs.server.certChainPem);
  const serverKey = file('server-key.pem', certs.server.keyPem);
  const serverPort = await freePort();
  const clientPort = await freePort();
  const server = await startNginx(
    dir,
    'chain-server',
    `  upstream app { server 127.0.0.1:${appPort}; keepalive 256; }
  server {
    listen 127.0.0.1:${serverPort} ssl backlog=4096;
    ssl_certificate ${serverCert};
    ssl_certificate_key ${serverKey};
    ssl_client_certificate ${root};
    ssl_verify_client on;
    ssl_verify_depth 4;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`,
    serverPort,
  );
  const client = await startNginx(
    dir,
    'chain-client',
    `  upstream mesh { server 127.0.0.1:${serverPort}; keepalive 256; }
  server {
    listen 127.0.0.1:${clientPort} backlog=4096;
    location / {
      proxy_pass https://mesh;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_certificate ${clientCert};
      proxy_ssl_certificate_key ${clientKey};
      proxy_ssl_trusted_certificate ${root};
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 4;
      proxy_ssl_name ${certs.serverName};
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
    }
  }`,
    clientPort,
  );
  return {
    client,
    server,
    async stop() {
      await client.stop();
      await server.stop();
    },
  };
}
