import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { status, type Client, type ServiceError } from '@grpc/grpc-js';
import { CA_SERVICE } from '../../core/ca/ca-client.js';
import { loadService } from '../../core/ca/grpc-service.js';
import { grpcJsZoneCredentials, grpcJsZoneMetadata, grpcJsZoneOptions } from '../common/zone-grpc-js.js';
import { ErrorCodes, isMeshError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { createRegistry } from '../../core/metrics.js';
import { createRootCa, generateKeyPair, loadCa } from '../../core/pki/ca.js';
import { buildCsr } from '../../core/pki/csr.js';
import {
  CaSignPool,
  MAX_CA_WORKERS,
  workerScriptUrl,
  type CaSigningMaterial,
} from '../../zone-cp/ca/ca-sign-pool.js';
import { waitFor } from '../common/wait.js';
import { startTestZoneCp, type TestZoneCp } from '../common/zone-cp.js';

const logger = createLogger('ca-sign-pool-test');

function material(commonName: string): CaSigningMaterial {
  const root = createRootCa({ trustDomain: 'cluster.local', commonName });
  return { ca: loadCa(root.certPem, root.keyPem), certPem: root.certPem, keyPem: root.keyPem };
}

function csr(): string {
  const { privateKey, publicKey } = generateKeyPair();
  return buildCsr(privateKey, publicKey);
}

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    if (isMeshError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected a rejection');
}

async function metric(pool: { registry: ReturnType<typeof createRegistry> }, name: string): Promise<number> {
  const text = await pool.registry.metrics();
  const match = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return Number(match?.[1] ?? NaN);
}

// The worker runs as compiled JavaScript: npm test builds before jest.
const built = workerScriptUrl();
if (built === undefined || !existsSync(fileURLToPath(built))) {
  throw new Error('dist/zone-cp/ca/ca-sign-worker.js is missing: run `npm run build` first');
}
const workerScript: URL = built;

describe('CA sign pool', () => {
  const caA = material('pool test CA A');
  const caB = material('pool test CA B');
  let dir: string;
  let crashingScript: URL;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshfed-ca-pool-'));
    // A worker that dies on the job for .../sa/crash and is the real worker otherwise. Static
    // imports evaluate in order, so the hook's listener runs before the real worker's.
    const hook = join(dir, 'crash-hook.mjs');
    await writeFile(
      hook,
      `import { parentPort } from 'node:worker_threads';
parentPort.on('message', (m) => { if (m.type === 'sign' && m.spiffeId.endsWith('/sa/crash')) process.exit(7); });
`,
    );
    const file = join(dir, 'crashing-worker.mjs');
    await writeFile(
      file,
      `import ${JSON.stringify(pathToFileURL(hook).href)};\nimport ${JSON.stringify(workerScript.href)};\n`,
    );
    crashingScript = pathToFileURL(file);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('signs on worker threads for the identity it is given, chained to the CA it names', async () => {
    const registry = createRegistry('zone-cp');
    const pool = new CaSignPool({ size: 2, logger, registry, workerScript });
    try {
      pool.setCa(caA);
      const leaves = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          pool.sign({
            caFingerprint: caA.ca.fingerprint,
            csrPem: csr(),
            spiffeId: `spiffe://cluster.local/ns/demo/sa/account-${i}`,
            ttlSeconds: 600,
          }),
        ),
      );
      const caCert = new X509Certificate(caA.certPem);
      leaves.forEach((leaf, i) => {
        const cert = new X509Certificate(leaf.certPem);
        expect(cert.subjectAltName).toBe(`URI:spiffe://cluster.local/ns/demo/sa/account-${i}`);
        expect(cert.verify(caCert.publicKey)).toBe(true);
        expect(cert.serialNumber).toBe(leaf.serial);
        const lifetime = leaf.notAfter.getTime() - Date.now();
        expect(lifetime).toBeGreaterThan(590_000);
        expect(lifetime).toBeLessThanOrEqual(600_000);
      });
      expect(await metric({ registry }, 'meshfed_zone_ca_pool_workers')).toBe(2);
      expect(pool.pending).toBe(0);

      // Rotation: the new CA signs what names it; jobs naming the old one still chain to the old one.
      pool.setCa(caB);
      const [fromB, fromA] = await Promise.all([
        pool.sign({
          caFingerprint: caB.ca.fingerprint,
          csrPem: csr(),
          spiffeId: 'spiffe://cluster.local/ns/a/sa/b',
          ttlSeconds: 60,
        }),
        pool.sign({
          caFingerprint: caA.ca.fingerprint,
          csrPem: csr(),
          spiffeId: 'spiffe://cluster.local/ns/a/sa/b',
          ttlSeconds: 60,
        }),
      ]);
      expect(new X509Certificate(fromB.certPem).verify(new X509Certificate(caB.certPem).publicKey)).toBe(
        true,
      );
      expect(new X509Certificate(fromA.certPem).verify(caCert.publicKey)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('refuses a CSR whose self-signature does not verify, and garbage, with MESHFED_ERR_PKI', async () => {
    const pool = new CaSignPool({ size: 1, logger, workerScript });
    try {
      pool.setCa(caA);
      const good = csr();
      // Flip a byte inside the signature (near the end of the DER): the requester no longer proves the key.
      const der = Buffer.from(good.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
      der[der.length - 5] = (der[der.length - 5] ?? 0) ^ 0xff;
      const forged = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
      const sign = (csrPem: string) =>
        pool.sign({
          caFingerprint: caA.ca.fingerprint,
          csrPem,
          spiffeId: 'spiffe://cluster.local/ns/a/sa/b',
          ttlSeconds: 60,
        });
      const bad = await rejection(sign(forged));
      expect(bad.code).toBe(ErrorCodes.PKI);
      expect(bad.message).toMatch(/signature|malformed/);
      expect((await rejection(sign('not a csr'))).code).toBe(ErrorCodes.PKI);
      // An identity outside the CA's trust domain is refused by the worker too.
      const foreign = await rejection(
        pool.sign({
          caFingerprint: caA.ca.fingerprint,
          csrPem: good,
          spiffeId: 'spiffe://other.domain/ns/a/sa/b',
          ttlSeconds: 60,
        }),
      );
      expect(foreign.code).toBe(ErrorCodes.PKI);
      // …and the pool keeps serving.
      await expect(sign(good)).resolves.toHaveProperty('serial');
    } finally {
      await pool.close();
    }
  });

  it('bounds its queue: past maxPending a job is refused with MESHFED_ERR_RESOURCE_EXHAUSTED', async () => {
    const pool = new CaSignPool({ size: 1, maxPending: 4, logger, workerScript });
    try {
      pool.setCa(caA);
      const csrPem = csr();
      const results = await Promise.allSettled(
        Array.from({ length: 12 }, () =>
          pool.sign({
            caFingerprint: caA.ca.fingerprint,
            csrPem,
            spiffeId: 'spiffe://cluster.local/ns/a/sa/b',
            ttlSeconds: 60,
          }),
        ),
      );
      // Submitted in one tick: the first four are queued, the rest refused at once.
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(4);
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(refused).toHaveLength(8);
      for (const r of refused) {
        expect(isMeshError(r.reason, ErrorCodes.RESOURCE_EXHAUSTED)).toBe(true);
        expect((r.reason as Error).message).toMatch(/limit 4/);
      }
    } finally {
      await pool.close();
    }
  });

  it('survives a worker crash: the in-flight job fails with UNAVAILABLE, the worker is replaced', async () => {
    const registry = createRegistry('zone-cp');
    const pool = new CaSignPool({ size: 1, logger, registry, workerScript: crashingScript });
    try {
      pool.setCa(caA);
      const sign = (account: string) =>
        pool.sign({
          caFingerprint: caA.ca.fingerprint,
          csrPem: csr(),
          spiffeId: `spiffe://cluster.local/ns/a/sa/${account}`,
          ttlSeconds: 60,
        });
      await expect(sign('before')).resolves.toHaveProperty('serial');
      const crashed = await rejection(sign('crash'));
      expect(crashed.code).toBe(ErrorCodes.UNAVAILABLE);
      expect(crashed.message).toMatch(/worker .*stopped \(exit code 7\); retry/);
      // The replacement got the CA again and signs.
      const leaf = await waitFor(() => sign('after'), { what: 'a replacement worker', timeoutMs: 10_000 });
      expect(new X509Certificate(leaf.certPem).subjectAltName).toBe(
        'URI:spiffe://cluster.local/ns/a/sa/after',
      );
      expect(await metric({ registry }, 'meshfed_zone_ca_pool_worker_restarts_total')).toBe(1);
      expect(await metric({ registry }, 'meshfed_zone_ca_pool_workers')).toBe(1);
    } finally {
      await pool.close();
    }
  });

  it('close() lets in-flight jobs finish, then refuses with MESHFED_ERR_CLOSED; idempotent', async () => {
    const pool = new CaSignPool({ size: 1, logger, workerScript });
    pool.setCa(caA);
    const inFlight = Array.from({ length: 8 }, () =>
      pool.sign({
        caFingerprint: caA.ca.fingerprint,
        csrPem: csr(),
        spiffeId: 'spiffe://cluster.local/ns/a/sa/b',
        ttlSeconds: 60,
      }),
    );
    const closing = pool.close();
    expect(pool.close()).toBe(closing);
    const after = await rejection(
      pool.sign({
        caFingerprint: caA.ca.fingerprint,
        csrPem: csr(),
        spiffeId: 'spiffe://cluster.local/ns/a/sa/b',
        ttlSeconds: 60,
      }),
    );
    expect(after.code).toBe(ErrorCodes.CLOSED);
    const settled = await Promise.allSettled(inFlight);
    expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
    await closing;
    await pool.close();
  });

  it('signs on the main thread with size 0, and refuses a CA it was not given', async () => {
    const pool = new CaSignPool({ size: 0, logger });
    try {
      expect(pool.size).toBe(0);
      const unknown = await rejection(
        pool.sign({
          caFingerprint: caA.ca.fingerprint,
          csrPem: csr(),
          spiffeId: 'spiffe://cluster.local/ns/a/sa/b',
          ttlSeconds: 60,
        }),
      );
      expect(unknown.code).toBe(ErrorCodes.UNAVAILABLE);
      pool.setCa(caA);
      const leaf = await pool.sign({
        caFingerprint: caA.ca.fingerprint,
        csrPem: csr(),
        spiffeId: 'spiffe://cluster.local/ns/a/sa/b',
        ttlSeconds: 60,
      });
      expect(new X509Certificate(leaf.certPem).verify(new X509Certificate(caA.certPem).publicKey)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('refuses a bad size with MESHFED_ERR_CONFIG naming the setting', () => {
    expect(() => new CaSignPool({ size: -1, logger })).toThrow(/CA pool size/);
    // The same bound as the --ca-workers flag.
    expect(() => new CaSignPool({ size: MAX_CA_WORKERS + 1, logger })).toThrow(/from 0 to 64/);
    expect(() => new CaSignPool({ size: 1, maxPending: 0, logger, workerScript })).toThrow(/queue bound/);
  });
});

describe('zone CA through gRPC with the worker pool', () => {
  let zone: TestZoneCp;

  beforeAll(async () => {
    zone = await startTestZoneCp({ caWorkers: 1, caMaxPending: 1 });
  });

  afterAll(async () => {
    await zone?.close();
  });

  it('signs through the pool and answers RESOURCE_EXHAUSTED when its queue is full', async () => {
    const token = await zone.issueProxyToken({
      workload: 'web',
      namespace: 'demo',
      serviceAccount: 'web-sa',
    });
    const { Client: CaClient } = loadService('ca.proto', CA_SERVICE);
    const client: Client = new CaClient(
      zone.cp.grpcAddress,
      grpcJsZoneCredentials(zone.cp.caPem, { token }),
      grpcJsZoneOptions(),
    );
    type Sign = (
      req: unknown,
      md: unknown,
      cb: (err: ServiceError | null, res?: { spiffe_id: string }) => void,
    ) => void;
    const call = (csrPem: string) =>
      new Promise<{ code: number; spiffeId?: string; details?: string }>((resolve) =>
        (client as unknown as { Sign: Sign }).Sign.call(
          client,
          { csr_pem: csrPem },
          grpcJsZoneMetadata({ token }),
          (err, res) =>
            resolve(
              err ? { code: err.code, details: err.details } : { code: status.OK, spiffeId: res?.spiffe_id },
            ),
        ),
      );
    try {
      const csrPem = csr();
      const first = await call(csrPem);
      expect(first).toEqual({ code: status.OK, spiffeId: 'spiffe://cluster.local/ns/demo/sa/web-sa' });
      // A burst against a queue of one: some wait their turn, the others are told to back off.
      const burst = await Promise.all(Array.from({ length: 64 }, () => call(csrPem)));
      const codes = new Set(burst.map((b) => b.code));
      expect([...codes].every((c) => c === status.OK || c === status.RESOURCE_EXHAUSTED)).toBe(true);
      expect(codes.has(status.RESOURCE_EXHAUSTED)).toBe(true);
      expect(burst.find((b) => b.code === status.RESOURCE_EXHAUSTED)?.details).toMatch(/limit 1/);
      const metrics = await (await fetch(`${zone.cp.restUrl}/metrics`)).text();
      expect(metrics).toMatch(/^meshfed_zone_ca_pool_workers\{[^}]*\} 1$/m);
    } finally {
      client.close();
    }
  });
});
