import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { status, type Client, type ServiceError } from '@grpc/grpc-js';
import { requestCertificate, CA_SERVICE, type IssuedCertificate } from '../../core/ca/ca-client.js';
import { CertificateManager, type CurrentCertificate } from '../../core/ca/cert-manager.js';
import { loadService } from '../../core/ca/grpc-service.js';
import { grpcJsZoneCredentials, grpcJsZoneMetadata, grpcJsZoneOptions } from '../common/zone-grpc-js.js';
import { isMeshError, type MeshError } from '../../core/errors.js';
import { generateKeyPair } from '../../core/pki/ca.js';
import { buildCsr } from '../../core/pki/csr.js';
import { pemToDerList } from '../../core/pki/pem.js';
import { MemoryStore } from '../../core/store/store-memory.js';
import { SECRET_KIND, TOKEN_KEY_SECRET } from '../../core/auth/internal-kinds.js';
import { TokenIssuer } from '../../core/token/token.js';
import { FakeKubeApiServer } from '../common/fake-kube-apiserver.js';
import { kubeConfigFor } from '../k8s/kube-helpers.js';
import { http } from '../common/http.js';
import { waitFor } from '../common/wait.js';
import { startTestZoneCp, type TestZoneCp } from '../common/zone-cp.js';

/** A certificate request that must fail; returns the MeshError with the zone's gRPC status in details. */
async function refused(promise: Promise<unknown>): Promise<{ grpc: number; message: string }> {
  try {
    await promise;
  } catch (err) {
    if (!isMeshError(err)) throw err;
    return { grpc: (err as MeshError).details?.grpcStatus as number, message: err.message };
  }
  throw new Error('the request was not refused');
}

function spiffeIdOf(chainPem: string): string {
  const [leafDer] = pemToDerList(chainPem);
  if (leafDer === undefined) throw new Error('empty chain');
  return new X509Certificate(leafDer).subjectAltName ?? '';
}

describe('zone workload CA', () => {
  let zone: TestZoneCp;
  let other: TestZoneCp;
  const store = new MemoryStore();
  let kube: FakeKubeApiServer;

  beforeAll(async () => {
    kube = await FakeKubeApiServer.start();
    kube.addServiceAccountToken('k8s-sa-token-reviews', { namespace: 'bookinfo', serviceAccount: 'reviews' });
    zone = await startTestZoneCp({
      zone: 'zone-a',
      store,
      kubernetes: { kubeConfig: kubeConfigFor(kube.url, 'zone-cp-token') },
      maxWorkloadCertTtlSeconds: 7200,
    });
    other = await startTestZoneCp({ zone: 'zone-b' });
  });

  afterAll(async () => {
    await zone?.close();
    await other?.close();
    await kube?.close();
    await store.close();
  });

  const sign = (credential: Parameters<typeof requestCertificate>[0]['credential'], ttlSeconds?: number) => {
    const { privateKey, publicKey } = generateKeyPair();
    return requestCertificate({
      address: zone.cp.grpcAddress,
      caPem: zone.cp.caPem,
      credential,
      privateKey,
      publicKey,
      ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
    });
  };

  it('issues a certificate whose SPIFFE ID comes from the proxy token, chained to the trust bundle', async () => {
    const token = await zone.issueProxyToken({
      workload: 'frontend',
      namespace: 'demo',
      serviceAccount: 'frontend-sa',
    });
    const { privateKey, publicKey } = generateKeyPair();
    const issued = await requestCertificate({
      address: zone.cp.grpcAddress,
      caPem: zone.cp.caPem,
      credential: { token },
      privateKey,
      publicKey,
    });
    expect(issued.spiffeId).toBe('spiffe://cluster.local/ns/demo/sa/frontend-sa');
    const [leafDer, ...rest] = pemToDerList(issued.certChainPem);
    const leaf = new X509Certificate(leafDer ?? Buffer.alloc(0));
    expect(leaf.subjectAltName).toBe('URI:spiffe://cluster.local/ns/demo/sa/frontend-sa');
    expect(leaf.checkPrivateKey(privateKey)).toBe(true);
    // Standalone zone: the root is the issuer, and it is not repeated in the chain.
    expect(rest).toHaveLength(0);
    const root = new X509Certificate(issued.trustBundlePem);
    expect(leaf.verify(root.publicKey)).toBe(true);
    expect(issued.trustBundlePem.trim()).toBe(zone.cp.caPem.trim());
    const lifetime = issued.notAfter.getTime() - Date.now();
    expect(lifetime).toBeGreaterThan(3500_000);
    expect(lifetime).toBeLessThanOrEqual(3600_000);
    expect(new Date(leaf.validTo).getTime()).toBe(Math.floor(issued.notAfter.getTime() / 1000) * 1000);
  });

  it('ignores the identity a CSR claims: the caller gets its own', async () => {
    const token = await zone.issueProxyToken({
      workload: 'frontend',
      namespace: 'demo',
      serviceAccount: 'frontend',
    });
    const { privateKey, publicKey } = generateKeyPair();
    const csr = buildCsr(privateKey, publicKey, {
      commonName: 'spiffe://cluster.local/ns/kube-system/sa/admin',
    });
    const answer = await rawSign(zone, csr, { token });
    expect(answer.spiffe_id).toBe('spiffe://cluster.local/ns/demo/sa/frontend');
    expect(spiffeIdOf(answer.cert_chain_pem.join(''))).toBe('URI:spiffe://cluster.local/ns/demo/sa/frontend');
  });

  it('refuses forged, revoked, other-zone, expired and admin tokens with a status naming the reason', async () => {
    const token = await zone.issueProxyToken({ workload: 'frontend', namespace: 'demo' });
    const forged = token.slice(0, -6) + (token.endsWith('AAAAAA') ? 'BBBBBB' : 'AAAAAA');
    const forgedAnswer = await refused(sign({ token: forged }));
    expect(forgedAnswer.grpc).toBe(status.UNAUTHENTICATED);
    expect(forgedAnswer.message).toMatch(/signature|malformed/);

    // A token another zone signed: this zone does not know that key.
    const foreign = await other.issueProxyToken({ workload: 'frontend', namespace: 'demo' });
    expect((await refused(sign({ token: foreign }))).grpc).toBe(status.UNAUTHENTICATED);

    // A token signed with a key this zone trusts but bound to another zone.
    const keySecret = await store.get({ kind: SECRET_KIND, namespace: '', name: TOKEN_KEY_SECRET });
    const issuer = new TokenIssuer(createPrivateKey(String(keySecret?.spec.keyPem)));
    const otherZone = issuer.issue({
      kind: 'proxy',
      sub: 'frontend',
      zone: 'zone-b',
      ext: { workload: 'frontend', namespace: 'demo' },
    });
    const otherZoneAnswer = await refused(sign({ token: otherZone.token }));
    expect(otherZoneAnswer.grpc).toBe(status.PERMISSION_DENIED);
    expect(otherZoneAnswer.message).toMatch(/for zone zone-b, this is zone zone-a/);

    const created = await http(`${zone.cp.restUrl}/api/v1/tokens`, {
      method: 'POST',
      token: zone.admin,
      contentType: 'application/json',
      body: JSON.stringify({ kind: 'proxy', workload: 'frontend', namespace: 'demo' }),
    });
    const { token: doomed, id } = created.json as { token: string; id: string };
    await sign({ token: doomed });
    expect(
      (await http(`${zone.cp.restUrl}/api/v1/tokens/${id}`, { method: 'DELETE', token: zone.admin })).status,
    ).toBe(200);
    const revoked = await refused(sign({ token: doomed }));
    expect(revoked.grpc).toBe(status.UNAUTHENTICATED);
    expect(revoked.message).toMatch(/revoked/);

    const admin = await refused(sign({ token: zone.admin }));
    expect(admin.grpc).toBe(status.PERMISSION_DENIED);

    const shortLived = issuer.issue({
      kind: 'proxy',
      sub: 'frontend',
      zone: 'zone-a',
      ttlSeconds: 1,
      ext: { workload: 'frontend', namespace: 'demo' },
    });
    const expired = await waitFor(
      async () => {
        const answer = await refused(sign({ token: shortLived.token })).catch(() => undefined);
        return answer?.message.includes('expired') ? answer : undefined;
      },
      { timeoutMs: 5000, what: 'the token to expire' },
    );
    expect(expired.grpc).toBe(status.UNAUTHENTICATED);
  });

  it('refuses a call without credentials and a malformed CSR', async () => {
    const { privateKey, publicKey } = generateKeyPair();
    const none = await rawSignError(zone, buildCsr(privateKey, publicKey), undefined);
    expect(none.code).toBe(status.UNAUTHENTICATED);
    expect(none.details).toMatch(/no credential/);
    const token = await zone.issueProxyToken({ workload: 'frontend', namespace: 'demo' });
    const garbage = await rawSignError(
      zone,
      '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
      { token },
    );
    expect(garbage.code).toBe(status.INVALID_ARGUMENT);
    expect(garbage.details).toMatch(/CSR invalid/);
  });

  it('renews with the current certificate as the only credential, and refuses one from another zone', async () => {
    const token = await zone.issueProxyToken({
      workload: 'reviews-v1',
      namespace: 'bookinfo',
      serviceAccount: 'reviews',
    });
    const first = await signWithKey(zone, { token });
    const renewed = await signWithKey(zone, { certPem: first.issued.certChainPem, keyPem: first.keyPem });
    expect(renewed.issued.spiffeId).toBe('spiffe://cluster.local/ns/bookinfo/sa/reviews');
    expect(renewed.issued.serial).not.toBe(first.issued.serial);

    const foreignToken = await other.issueProxyToken({
      workload: 'x',
      namespace: 'bookinfo',
      serviceAccount: 'reviews',
    });
    const foreign = await signWithKey(other, { token: foreignToken });
    // TLS does not accept a certificate from another root, so the call has no credential at all.
    const answer = await refused(sign({ certPem: foreign.issued.certChainPem, keyPem: foreign.keyPem }));
    expect(answer.grpc).toBe(status.UNAUTHENTICATED);
  });

  it('accepts a Kubernetes ServiceAccount token through TokenReview and refuses unknown ones', async () => {
    const issued = await sign({ token: 'k8s-sa-token-reviews' });
    expect(issued.spiffeId).toBe('spiffe://cluster.local/ns/bookinfo/sa/reviews');
    const unknown = await refused(sign({ token: 'eyJhbGciOi.not-a-known.token' }));
    expect(unknown.grpc).toBe(status.UNAUTHENTICATED);
    expect(unknown.message).toMatch(/Kubernetes refused/);
    expect(kube.requests({ path: '/apis/authentication.k8s.io/v1/tokenreviews' }).length).toBeGreaterThan(0);
  });

  it('shortens a requested lifetime to the maximum and honours a shorter one', async () => {
    const token = await zone.issueProxyToken({ workload: 'frontend', namespace: 'demo' });
    const long = await sign({ token }, 48 * 3600);
    expect(long.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(7200_000);
    const short = await sign({ token }, 120);
    expect(short.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(120_000);
  });

  it('a CertificateManager renews at half-life with its certificate, keeping the bootstrap token for the first one only', async () => {
    const token = await zone.issueProxyToken({
      workload: 'ratings-1',
      namespace: 'bookinfo',
      serviceAccount: 'ratings',
    });
    let bootstrapUses = 0;
    const manager = new CertificateManager({
      address: zone.cp.grpcAddress,
      caPem: zone.cp.caPem,
      bootstrap: () => {
        bootstrapUses++;
        return { token };
      },
      // Renewed every ~3 s: a late renewal on a loaded host still lands before expiry.
      ttlSeconds: 6,
      jitter: 0,
    });
    const rotations: CurrentCertificate[] = [];
    manager.on('rotated', (cert: CurrentCertificate) => rotations.push(cert));
    try {
      const first = await manager.start();
      expect(first.spiffeId).toBe('spiffe://cluster.local/ns/bookinfo/sa/ratings');
      await waitFor(() => rotations.length >= 3, { timeoutMs: 20_000, what: 'two renewals' });
      expect(bootstrapUses).toBe(1);
      const serials = new Set(rotations.map((r) => r.serial));
      expect(serials.size).toBe(rotations.length);
      const current = manager.current();
      expect(
        new X509Certificate(pemToDerList(current.certChainPem)[0] ?? Buffer.alloc(0)).checkPrivateKey(
          createPrivateKey(current.keyPem),
        ),
      ).toBe(true);
      const metrics = (await http(`${zone.cp.restUrl}/metrics`)).text;
      expect(metrics).toMatch(
        /meshfed_zone_ca_signatures_total\{result="issued",via="certificate"[^}]*\} [1-9]/,
      );
    } finally {
      manager.close();
    }
  });

  it('a CertificateManager reports a refused bootstrap credential at once', async () => {
    const manager = new CertificateManager({
      address: zone.cp.grpcAddress,
      caPem: zone.cp.caPem,
      bootstrap: { token: 'mf1.bad.token' },
    });
    await expect(manager.start()).rejects.toMatchObject({ code: 'MESHFED_ERR_UNAUTHENTICATED' });
    manager.close();
  });
});

async function signWithKey(
  zone: TestZoneCp,
  credential: Parameters<typeof requestCertificate>[0]['credential'],
): Promise<{ issued: IssuedCertificate; keyPem: string }> {
  const { privateKey, publicKey } = generateKeyPair();
  const issued = await requestCertificate({
    address: zone.cp.grpcAddress,
    caPem: zone.cp.caPem,
    credential,
    privateKey,
    publicKey,
  });
  return { issued, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

interface SignAnswer {
  cert_chain_pem: string[];
  spiffe_id: string;
}

type RawCall = (req: unknown, md: unknown, cb: (err: ServiceError | null, res?: SignAnswer) => void) => void;

function rawClient(zone: TestZoneCp, credential: { token: string } | undefined): Client {
  const { Client: CaClient } = loadService('ca.proto', CA_SERVICE);
  return new CaClient(
    zone.cp.grpcAddress,
    grpcJsZoneCredentials(zone.cp.caPem, credential),
    grpcJsZoneOptions(),
  );
}

async function rawSign(zone: TestZoneCp, csrPem: string, credential: { token: string }): Promise<SignAnswer> {
  const client = rawClient(zone, credential);
  try {
    return await new Promise((resolve, reject) =>
      (client as unknown as { Sign: RawCall }).Sign.call(
        client,
        { csr_pem: csrPem },
        grpcJsZoneMetadata(credential),
        (err, res) => (err ? reject(err) : resolve(res ?? { cert_chain_pem: [], spiffe_id: '' })),
      ),
    );
  } finally {
    client.close();
  }
}

async function rawSignError(
  zone: TestZoneCp,
  csrPem: string,
  credential: { token: string } | undefined,
): Promise<ServiceError> {
  const client = rawClient(zone, credential);
  try {
    return await new Promise((resolve, reject) =>
      (client as unknown as { Sign: RawCall }).Sign.call(
        client,
        { csr_pem: csrPem },
        grpcJsZoneMetadata(credential),
        (err) => (err ? resolve(err) : reject(new Error('accepted'))),
      ),
    );
  } finally {
    client.close();
  }
}
