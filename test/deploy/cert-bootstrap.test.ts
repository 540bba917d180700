/**
 * deploy/scripts/cert-bootstrap.sh, the Job that makes the webhook's and the
 * control planes' serving certificates, run for real (bash, openssl, curl,
 * jq) against the fake Kubernetes API server over HTTPS, with the settings
 * of the Job manifests in deploy/. The proof that the result works is the
 * API server's view: the real injection webhook serves the certificate from
 * the Secret, and a TLS client trusting only the caBundle written into the
 * MutatingWebhookConfiguration gets an AdmissionReview answer from it.
 */

import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { startWebhookServer } from '../../zone-cp/webhook/webhook-server.js';
import { FakeKubeApiServer } from '../common/fake-kube-apiserver.js';
import { REPO_ROOT, describeWithTools, isObj, loadYamlFile, type Json } from './deploy-helpers.js';

const SCRIPT = path.join(REPO_ROOT, 'deploy/scripts/cert-bootstrap.sh');
const TOKEN = 'bootstrap-job-token';
const NS = 'meshfed-system';

interface JobSettings {
  env: Record<string, string>;
}

/** The env of the cert-bootstrap container of a Job manifest. */
function jobSettings(file: string): JobSettings {
  const job = loadYamlFile(file).find((d) => d.kind === 'Job');
  const spec = isObj(job?.spec) && isObj(job.spec.template) ? job.spec.template.spec : undefined;
  const containers = isObj(spec) && Array.isArray(spec.containers) ? spec.containers : [];
  const container: unknown = containers[0];
  const env: Record<string, string> = {};
  if (isObj(container) && Array.isArray(container.env)) {
    for (const e of container.env) if (isObj(e)) env[String(e.name)] = String(e.value);
  }
  return { env };
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

let work = '';
let fake: FakeKubeApiServer;
let apiCaFile = '';
let tokenFile = '';

function run(env: Record<string, string>, token = tokenFile): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [SCRIPT], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: work,
        KUBE_API: fake.url,
        KUBE_CA_FILE: apiCaFile,
        KUBE_TOKEN_FILE: token,
        NAMESPACE: NS,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function api(method: string, apiPath: string, body?: unknown): Promise<{ status: number; json: Json }> {
  return new Promise((resolve, reject) => {
    const url = new URL(apiPath, fake.url);
    const req = https.request(
      url,
      {
        method,
        ca: spawnSync('cat', [apiCaFile]).stdout,
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as Json }));
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function getSecret(name: string): Promise<Json> {
  const { status, json } = await api('GET', `/api/v1/namespaces/${NS}/secrets/${name}`);
  expect(status).toBe(200);
  return json;
}

function dataOf(secret: Json, key: string): string {
  const data = isObj(secret.data) ? secret.data : {};
  const value = data[key];
  if (typeof value !== 'string') throw new Error(`secret has no ${key}`);
  return Buffer.from(value, 'base64').toString('utf8');
}

function resourceVersion(obj: Json): string {
  return isObj(obj.metadata) ? String(obj.metadata.resourceVersion) : '';
}

const describeTools = describeWithTools(
  ['bash', 'openssl', 'curl', 'jq', 'base64'],
  'test/deploy/cert-bootstrap.test.ts runs deploy/scripts/cert-bootstrap.sh',
  'apt-get install -y bash openssl curl jq coreutils',
);

describeTools('cert-bootstrap.sh against the fake API server', () => {
  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'meshfed-cert-bootstrap-'));
    // The API server's own certificate, as a cluster's CA would issue it.
    const key = path.join(work, 'api.key');
    apiCaFile = path.join(work, 'api.crt');
    const made = spawnSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      apiCaFile,
      '-days',
      '1',
      '-subj',
      '/CN=kube-apiserver',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    expect(made.status).toBe(0);
    fake = await FakeKubeApiServer.start({
      tls: {
        certPem: spawnSync('cat', [apiCaFile]).stdout.toString(),
        keyPem: spawnSync('cat', [key]).stdout.toString(),
      },
      adminTokens: [TOKEN],
    });
    tokenFile = path.join(work, 'token');
    writeFileSync(tokenFile, TOKEN);
    expect((await api('POST', '/api/v1/namespaces', { metadata: { name: NS } })).status).toBe(201);
    const hook = loadYamlFile('deploy/zone/webhook.yaml').find(
      (d) => d.kind === 'MutatingWebhookConfiguration',
    );
    const created = await api(
      'POST',
      '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
      hook,
    );
    expect(created.status).toBe(201);
  });

  afterAll(async () => {
    await fake?.close();
    if (work !== '') rmSync(work, { recursive: true, force: true });
  });

  it("makes the zone's Secret and caBundle, and the API server can then call the real webhook", async () => {
    const { env } = jobSettings('deploy/zone/cert-bootstrap.yaml');
    expect(env.SECRET_NAME).toBe('meshfed-zone-tls');
    const result = await run(env);
    expect(result.stderr).toContain('created secret meshfed-system/meshfed-zone-tls');
    expect(result.code).toBe(0);

    const secret = await getSecret('meshfed-zone-tls');
    expect(secret.type).toBe('kubernetes.io/tls');
    const certPem = dataOf(secret, 'tls.crt');
    const keyPem = dataOf(secret, 'tls.key');
    const caPem = dataOf(secret, 'ca.crt');
    const cert = new X509Certificate(certPem);
    const ca = new X509Certificate(caPem);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
    expect(ca.ca).toBe(true);
    expect(cert.ca).toBe(false);
    for (const name of String(env.DNS_NAMES).split(',')) expect(cert.checkHost(name)).toBe(name);

    const hooks = await api(
      'GET',
      '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/meshfed-sidecar-injector',
    );
    const webhooks = Array.isArray(hooks.json.webhooks) ? hooks.json.webhooks : [];
    expect(webhooks.length).toBeGreaterThan(0);
    const bundle = webhooks.map((w: unknown) =>
      isObj(w) && isObj(w.clientConfig) ? String(w.clientConfig.caBundle) : '',
    );
    for (const b of bundle) expect(Buffer.from(b, 'base64').toString('utf8')).toBe(caPem);

    // What the API server does: call https://meshfed-webhook.meshfed-system.svc/inject trusting only caBundle.
    const server = await startWebhookServer({
      certPem,
      keyPem,
      host: '127.0.0.1',
      port: 0,
      webhook: { proxyImage: 'meshfed:test', zoneCpAddress: 'meshfed-zone-cp.meshfed-system.svc:5678' },
    });
    try {
      const review = {
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: {
          uid: 'c0ffee',
          kind: { group: '', version: 'v1', kind: 'Pod' },
          operation: 'CREATE',
          namespace: 'demo',
          object: { metadata: { name: 'web' }, spec: { containers: [{ name: 'web', image: 'nginx' }] } },
        },
      };
      const answer = await new Promise<{ status: number; body: Json }>((resolve, reject) => {
        const req = https.request(
          {
            host: '127.0.0.1',
            port: server.port,
            path: '/inject',
            method: 'POST',
            servername: 'meshfed-webhook.meshfed-system.svc',
            ca: Buffer.from(bundle[0] ?? '', 'base64'),
            headers: { 'content-type': 'application/json' },
          },
          (res) => {
            let text = '';
            res.on('data', (d: Buffer) => (text += d.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Json }));
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify(review));
      });
      expect(answer.status).toBe(200);
      const response = isObj(answer.body.response) ? answer.body.response : {};
      expect(response.uid).toBe('c0ffee');
      expect(response.allowed).toBe(true);
      expect(response.patchType).toBe('JSONPatch');
    } finally {
      await server.close();
    }
  });

  it('keeps a valid certificate when run again (a re-applied Job does not rotate what pods serve)', async () => {
    const { env } = jobSettings('deploy/zone/cert-bootstrap.yaml');
    const before = await getSecret('meshfed-zone-tls');
    const result = await run(env);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('keeping it');
    const after = await getSecret('meshfed-zone-tls');
    expect(resourceVersion(after)).toBe(resourceVersion(before));
    expect(dataOf(after, 'tls.crt')).toBe(dataOf(before, 'tls.crt'));
  });

  it('replaces a certificate that misses a DNS name or is about to expire', async () => {
    const { env } = jobSettings('deploy/global/cert-bootstrap.yaml');
    expect(env.SECRET_NAME).toBe('meshfed-global-tls');
    // Issued for 10 days while renewal starts 30 days before expiry: the next run must replace it.
    const first = await run({ ...env, CERT_DAYS: '10' });
    expect(first.code).toBe(0);
    const short = await getSecret('meshfed-global-tls');
    const second = await run(env);
    expect(second.code).toBe(0);
    expect(second.stderr).toContain('replaced the expiring or incomplete certificate');
    const renewed = await getSecret('meshfed-global-tls');
    expect(resourceVersion(renewed)).not.toBe(resourceVersion(short));
    const cert = new X509Certificate(dataOf(renewed, 'tls.crt'));
    expect(new Date(cert.validTo).getTime() - Date.now()).toBeGreaterThan(365 * 86_400_000);

    const third = await run({ ...env, DNS_NAMES: `${env.DNS_NAMES},meshfed-api.example.com` });
    expect(third.code).toBe(0);
    expect(third.stderr).toContain('replaced');
    const widened = new X509Certificate(dataOf(await getSecret('meshfed-global-tls'), 'tls.crt'));
    expect(widened.checkHost('meshfed-api.example.com')).toBe('meshfed-api.example.com');
  });

  it('fails with a message naming the problem', async () => {
    const bad = path.join(work, 'bad-token');
    writeFileSync(bad, 'not-a-token');
    const refused = await run({ SECRET_NAME: 'x-tls', DNS_NAMES: 'x.example' }, bad);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/reading secret meshfed-system\/x-tls: HTTP 401/);

    const noNames = await run({ SECRET_NAME: 'x-tls', DNS_NAMES: '' });
    expect(noNames.code).not.toBe(0);
    expect(noNames.stderr).toContain('DNS_NAMES is required');

    const badName = await run({ SECRET_NAME: 'x-tls', DNS_NAMES: 'ok.example,Not_A_Name' });
    expect(badName.code).not.toBe(0);
    expect(badName.stderr).toContain('"Not_A_Name" is not a DNS name');

    const noHook = await run({ SECRET_NAME: 'y-tls', DNS_NAMES: 'y.example', WEBHOOK_CONFIGURATION: 'nope' });
    expect(noHook.code).not.toBe(0);
    expect(noHook.stderr).toMatch(/reading MutatingWebhookConfiguration nope: HTTP 404/);
  });
});
