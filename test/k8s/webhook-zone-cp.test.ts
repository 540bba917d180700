/**
 * The injection webhook as `meshfed zone-cp` serves it in Kubernetes mode:
 * a zone CP in-process against the fake API server (real client-node
 * informers), the webhook on a free port with a certificate from meshfed's
 * PKI, real AdmissionReviews POSTed over HTTPS. Namespace labels come from
 * the zone's Namespaces informer: a labelled namespace gets the sidecar, an
 * unlabelled one (even one created after start) does not.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { zoneCpOptionsFrom } from '../../cli/commands/zone-cp.js';
import { PROXY_CONTAINER_NAME } from '../../zone-cp/discovery/discovery.js';
import { startZoneCp } from '../../zone-cp/zone-cp.js';
import type { FakeKubeApiServer } from '../common/fake-kube-apiserver.js';
import { waitFor } from '../common/wait.js';
import { startTestZoneCp, type TestZoneCp } from '../common/zone-cp.js';
import { ClusterWriter, localhostTls, startFake, type TlsMaterial } from './kube-helpers.js';

type Json = Record<string, unknown>;

const REVIEW = JSON.parse(
  readFileSync(new URL('./fixtures/admission-review-pod.json', import.meta.url), 'utf8'),
) as Json;

interface Answer {
  status: number;
  response: { uid: string; allowed: boolean; patchType?: string; patch?: string };
}

function review(namespace: string, uid: string): string {
  const r = structuredClone(REVIEW) as { request: Json & { object: Json & { metadata: Json } } };
  r.request.uid = uid;
  r.request.namespace = namespace;
  r.request.object.metadata.namespace = namespace;
  return JSON.stringify(r);
}

function post(url: string, tls: TlsMaterial, body: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${url}/inject`,
      {
        method: 'POST',
        ca: tls.caPem,
        servername: 'localhost',
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { response: Answer['response'] };
          resolve({ status: res.statusCode ?? 0, response: json.response });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function patchOf(answer: Answer): Array<{ op: string; path: string; value: Json }> {
  return JSON.parse(Buffer.from(answer.response.patch ?? '', 'base64').toString('utf8')) as Array<{
    op: string;
    path: string;
    value: Json;
  }>;
}

describe('zone CP in Kubernetes mode serves the injection webhook', () => {
  let fake: FakeKubeApiServer;
  let writer: ClusterWriter;
  let zone: TestZoneCp;
  let tls: TlsMaterial;
  let dir: string;
  let url: string;

  beforeAll(async () => {
    const started = await startFake();
    fake = started.fake;
    writer = new ClusterWriter(started.kubeConfig);
    await writer.namespace('meshed', { 'meshfed-injection': 'enabled' });
    await writer.namespace('plain', { team: 'shop' });
    tls = localhostTls();
    dir = await mkdtemp(join(tmpdir(), 'meshfed-webhook-'));
    await writeFile(join(dir, 'tls.crt'), tls.certPem);
    await writeFile(join(dir, 'tls.key'), tls.keyPem, { mode: 0o600 });
    zone = await startTestZoneCp({
      zone: 'zone-hook',
      discovery: [{ name: 'kubernetes', options: { retryInitialMs: 50, retryMaxMs: 200 } }],
      kubernetes: { kubeConfig: started.kubeConfig },
      webhook: {
        host: '127.0.0.1',
        port: 0,
        certFile: join(dir, 'tls.crt'),
        keyFile: join(dir, 'tls.key'),
        proxyImage: 'meshfed:0.1.0',
      },
    });
    url = zone.cp.webhookUrl ?? '';
  });

  afterAll(async () => {
    await zone?.close();
    await fake?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('exposes the webhook URL and port on the handle', () => {
    expect(url).toBe(`https://127.0.0.1:${String(zone.cp.webhookPort)}`);
    expect(zone.cp.webhookPort).toBeGreaterThan(0);
  });

  it('patches a pod in a namespace labelled meshfed-injection=enabled with the meshfed-proxy container', async () => {
    const answer = await post(url, tls, review('meshed', 'uid-meshed'));
    expect(answer.status).toBe(200);
    expect(answer.response).toMatchObject({ uid: 'uid-meshed', allowed: true, patchType: 'JSONPatch' });
    const patch = patchOf(answer);
    const sidecar = patch.find((op) => op.path.startsWith('/spec/containers'));
    expect(sidecar).toMatchObject({ op: 'add', path: '/spec/containers/-' });
    expect(sidecar?.value).toMatchObject({ name: PROXY_CONTAINER_NAME, image: 'meshfed:0.1.0' });
    // Sidecars dial the zone CP's Service on the port MDS really listens on, and learn their zone.
    const grpcPort = zone.cp.grpcAddress.split(':').pop() ?? '';
    expect(sidecar?.value.command).toEqual(['meshfed-proxy']);
    expect(sidecar?.value.args).toEqual(['--mds-address', `meshfed-zone-cp.meshfed-system.svc:${grpcPort}`]);
    expect(sidecar?.value.env).toEqual(
      expect.arrayContaining([{ name: 'MESHFED_ZONE', value: 'zone-hook' }]),
    );
    const init = patch.find((op) => op.path.startsWith('/spec/initContainers'));
    // The fixture pod has no init containers: the patch adds the list with meshfed-init in it.
    expect(init).toMatchObject({
      op: 'add',
      path: '/spec/initContainers',
      value: [expect.objectContaining({ name: 'meshfed-init', args: expect.arrayContaining(['capture']) })],
    });
  });

  it('admits a pod in an unlabelled namespace without a patch', async () => {
    const answer = await post(url, tls, review('plain', 'uid-plain'));
    expect(answer.status).toBe(200);
    expect(answer.response).toEqual({ uid: 'uid-plain', allowed: true });
  });

  it('follows namespaces created after start through the informer', async () => {
    await writer.namespace('later');
    // Until the informer sees it the namespace is unknown (the webhook configuration's selector is trusted).
    await waitFor(
      async () => (await post(url, tls, review('later', 'uid-later'))).response.patch === undefined,
      {
        what: 'the new unlabelled namespace to be known as not injected',
      },
    );
  });
});

describe('meshfed zone-cp webhook flags', () => {
  const base = { zone: 'z', discovery: ['kubernetes'] };

  it('maps the flags to the webhook settings', () => {
    expect(
      zoneCpOptionsFrom({
        ...base,
        webhookCert: '/tls/tls.crt',
        webhookKey: '/tls/tls.key',
        webhookPort: 15017,
        proxyImage: 'meshfed:0.1.0',
        webhookZoneCpAddress: 'meshfed-zone-cp.meshfed-system.svc:5678',
      }).webhook,
    ).toEqual({
      certFile: '/tls/tls.crt',
      keyFile: '/tls/tls.key',
      port: 15017,
      proxyImage: 'meshfed:0.1.0',
      zoneCpAddress: 'meshfed-zone-cp.meshfed-system.svc:5678',
    });
    expect(zoneCpOptionsFrom(base).webhook).toBeUndefined();
  });

  it('refuses a half-given certificate/key pair and webhook flags without them, in one line', () => {
    expect(() => zoneCpOptionsFrom({ ...base, webhookCert: '/tls/tls.crt', proxyImage: 'x' })).toThrow(
      /^--webhook-cert and --webhook-key go together: give both or neither$/,
    );
    expect(() => zoneCpOptionsFrom({ ...base, webhookKey: '/tls/tls.key' })).toThrow(/go together/);
    expect(() => zoneCpOptionsFrom({ ...base, webhookPort: 15017, proxyImage: 'x' })).toThrow(
      /^--webhook-port, --proxy-image need --webhook-cert and --webhook-key/,
    );
    expect(() => zoneCpOptionsFrom({ ...base, webhookCert: 'a', webhookKey: 'b' })).toThrow(
      /needs --proxy-image/,
    );
  });

  it('refuses to start when the certificate file is missing, naming it', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'meshfed-webhook-'));
    try {
      await expect(
        startZoneCp({
          zone: 'zone-bad-hook',
          dataDir,
          storeUrl: 'memory://',
          port: 0,
          grpcPort: 0,
          webhook: {
            port: 0,
            certFile: '/nonexistent/tls.crt',
            keyFile: '/nonexistent/tls.key',
            proxyImage: 'x',
          },
        }),
      ).rejects.toThrow(/webhook certificate \/nonexistent\/tls.crt cannot be read/);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
