/**
 * The zone side of VM enrollment, driven in-process through the agent's
 * library and its HTTPS client: duplicate addresses resolved by the most
 * recent join, revoked certificates refused at the REST API and the CA,
 * the request proof's refusals, join tokens kept away from the CA, the
 * `vm` token kind's checks, join body validation, the probe following the
 * group, and the systemd unit join writes.
 */

import { createHash, sign } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import type { DetailedPeerCertificate } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { requestCertificate } from '../../core/ca/ca-client.js';
import { generateKeyPair } from '../../core/pki/ca.js';
import { pemToDerList } from '../../core/pki/pem.js';
import { buildCsr } from '../../core/pki/csr.js';
import { joinMesh, leaveMesh, unitTemplate, type JoinOptions } from '../../vm-agent/index.js';
import { ConfigDir } from '../../vm-agent/agent-files.js';
import {
  parseZoneCpUrl,
  verifyServerChain,
  zoneRequest,
  type ZoneTarget,
} from '../../vm-agent/zone-client.js';
import { createTestMesh, zoneCpServerCredentials } from '../common/pki-fixtures.js';
import { waitFor } from '../common/wait.js';
import { hostNet, startVmZone, workloadGroupYaml, type VmZone } from './vm-fixtures.js';

const NS = 'pay';
let zone: VmZone;
let dir: string;
let target: ZoneTarget;
let n = 0;

async function join_(group: string, address: string, overrides: Partial<JoinOptions> = {}) {
  const { token } = await zone.vmToken({ workloadGroup: group, namespace: NS });
  return joinMesh({
    zoneCp: zone.joinUrl,
    token,
    address,
    configDir: join(dir, `vm-${++n}`),
    systemd: 'off',
    command: ['/usr/local/bin/meshfed'],
    ...overrides,
  });
}

async function credentialsOf(configDir: string) {
  return new ConfigDir(configDir).readCredentials();
}

function heartbeatBody(config: Awaited<ReturnType<typeof join_>>['config'], healthy = true) {
  return {
    workloadEntry: config.workloadEntry,
    namespace: config.namespace,
    workloadGroup: config.workloadGroup,
    healthy,
    joinedAt: config.joinedAt,
    keyFingerprint: config.keyFingerprint,
    registration: { address: config.address, inboundPort: config.ports.inbound, labels: config.labels },
  };
}

async function names(): Promise<string[]> {
  return (await zone.workloadEntries(NS)).map((e) => e.metadata.name).sort();
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshfed-vm-zone-'));
  zone = await startVmZone(hostNet(), {
    // No agent heartbeats here: a VM is removed (and its certificate revoked) 8 s after its last
    // heartbeat, longer than any step between a join and its use takes on a loaded CI host.
    vm: { heartbeatIntervalSeconds: 1, unhealthyAfterMs: 5000, removeAfterMs: 8000, reapIntervalMs: 200 },
  });
  for (const group of ['ledger', 'audit', 'probe-me']) {
    await zone.admin('POST', '/api/v1/apply', { yaml: workloadGroupYaml(group, NS, '') });
  }
  const fingerprint = ((await zone.admin('GET', '/api/v1/vm/bundle')).json as { caFingerprint: string })
    .caFingerprint;
  target = { url: parseZoneCpUrl(zone.joinUrl), pin: fingerprint.replace('sha256:', '') };
}, 30_000);

afterAll(async () => {
  await zone?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('duplicate addresses (istio#43950): the most recent join wins', () => {
  it('removes the older entry at the same address and revokes its certificate', async () => {
    const older = await join_('ledger', '10.9.0.1');
    const olderCreds = await credentialsOf(older.configDir);
    const newer = await join_('audit', '10.9.0.1');
    expect(newer.replaced).toEqual([`${NS}/ledger-10-9-0-1`]);
    expect(await names()).toEqual(['audit-10-9-0-1']);
    // The replaced VM can neither heartbeat nor renew.
    await expect(
      zoneRequest(target, 'POST', '/api/v1/vm/heartbeat', {
        json: heartbeatBody(older.config),
        proof: { certChainPem: olderCreds.certChainPem, keyPem: olderCreds.keyPem },
      }),
    ).rejects.toMatchObject({
      code: 'MESHFED_ERR_UNAUTHENTICATED',
      message: expect.stringMatching(/revoked/),
    });
    const { privateKey, publicKey } = generateKeyPair();
    await expect(
      requestCertificate({
        address: zone.zone.cp.grpcAddress,
        caPem: olderCreds.trustBundlePem,
        credential: { certPem: olderCreds.certChainPem, keyPem: olderCreds.keyPem },
        privateKey,
        publicKey,
      }),
    ).rejects.toThrow(/revoked/);
    await zone.admin(
      'DELETE',
      `/apis/networking.istio.io/v1/namespaces/${NS}/workloadentries/audit-10-9-0-1`,
    );
  });

  it('does not let an older VM that went silent take its address back from a newer join', async () => {
    const older = await join_('ledger', '10.9.0.2');
    // The older VM renews (as its agent would): its new certificate is not the one join issued.
    const joined = await credentialsOf(older.configDir);
    const { privateKey, publicKey } = generateKeyPair();
    const renewed = await requestCertificate({
      address: zone.zone.cp.grpcAddress,
      caPem: joined.trustBundlePem,
      credential: { certPem: joined.certChainPem, keyPem: joined.keyPem },
      privateKey,
      publicKey,
    });
    const proof = {
      certChainPem: renewed.certChainPem,
      keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    };
    // It goes silent and is removed …
    await waitFor(async () => !(await names()).includes('ledger-10-9-0-2'), {
      what: 'the silent VM to be removed',
      timeoutMs: 25_000,
    });
    // … another VM joins at its address …
    await join_('audit', '10.9.0.2');
    // … and the older one's heartbeat may not write it back.
    await expect(
      zoneRequest(target, 'POST', '/api/v1/vm/heartbeat', { json: heartbeatBody(older.config), proof }),
    ).rejects.toMatchObject({
      code: 'MESHFED_ERR_CONFLICT',
      message: expect.stringMatching(
        /address 10\.9\.0\.2 now belongs to WorkloadEntry pay\/audit-10-9-0-2, joined later/,
      ),
    });
    expect(await names()).toContain('audit-10-9-0-2');
    expect(await names()).not.toContain('ledger-10-9-0-2');
  }, 45_000);
});

describe('the request proof', () => {
  let creds: Awaited<ReturnType<typeof credentialsOf>>;
  let body: ReturnType<typeof heartbeatBody>;

  beforeAll(async () => {
    const vm = await join_('probe-me', '10.9.1.1');
    creds = await credentialsOf(vm.configDir);
    body = heartbeatBody(vm.config);
  });

  it('accepts the VM signing with its certificate', async () => {
    const answer = await zoneRequest(target, 'POST', '/api/v1/vm/heartbeat', {
      json: body,
      proof: { certChainPem: creds.certChainPem, keyPem: creds.keyPem },
    });
    expect(answer.body).toMatchObject({ workloadEntry: 'probe-me-10-9-1-1', healthy: true });
  });

  it('refuses no proof, a signature by another key, another CA, and a skewed clock', async () => {
    await expect(zoneRequest(target, 'POST', '/api/v1/vm/heartbeat', { json: body })).rejects.toMatchObject({
      code: 'MESHFED_ERR_UNAUTHENTICATED',
      message: expect.stringMatching(/certificate proof/),
    });
    const stranger = generateKeyPair().privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    await expect(
      zoneRequest(target, 'POST', '/api/v1/vm/heartbeat', {
        json: body,
        proof: { certChainPem: creds.certChainPem, keyPem: stranger },
      }),
    ).rejects.toMatchObject({
      code: 'MESHFED_ERR_UNAUTHENTICATED',
      message: expect.stringMatching(/does not verify/),
    });
    const foreign = createTestMesh().workload({ namespace: NS, serviceAccount: 'probe-me' });
    await expect(
      zoneRequest(target, 'POST', '/api/v1/vm/heartbeat', {
        json: body,
        proof: { certChainPem: foreign.certChainPem, keyPem: foreign.keyPem },
      }),
    ).rejects.toMatchObject({
      code: 'MESHFED_ERR_FORBIDDEN',
      message: expect.stringMatching(/not issued by zone/),
    });

    const raw = Buffer.from(JSON.stringify(body));
    const time = Math.floor(Date.now() / 1000) - 3600;
    const text = `meshfed-vm-proof-v1\nPOST\n/api/v1/vm/heartbeat\n${time}\n${createHash('sha256').update(raw).digest('hex')}`;
    await expect(
      zoneRequest(target, 'POST', '/api/v1/vm/heartbeat', {
        json: body,
        headers: {
          'x-meshfed-vm-proof': `v1 t=${time} sig=${sign('sha256', Buffer.from(text), creds.keyPem).toString('base64url')}`,
          'x-meshfed-vm-chain': Buffer.from(creds.certChainPem).toString('base64'),
        },
      }),
    ).rejects.toMatchObject({
      code: 'MESHFED_ERR_UNAUTHENTICATED',
      message: expect.stringMatching(/check the VM's clock/),
    });
  });

  it('follows the WorkloadGroup: a probe added later reaches the VM, aimed at its service port', async () => {
    await zone.admin('POST', '/api/v1/apply', {
      yaml: workloadGroupYaml('probe-me', NS, '\n  probe: { periodSeconds: 2, tcpSocket: { port: 8080 } }'),
    });
    const answer = await zoneRequest(target, 'POST', '/api/v1/vm/heartbeat', {
      json: { ...body, registration: { ...body.registration, servicePort: 9123 } },
      proof: { certChainPem: creds.certChainPem, keyPem: creds.keyPem },
    });
    expect((answer.body as { probe: unknown }).probe).toEqual({
      periodSeconds: 2,
      tcpSocket: { port: 9123 },
    });
  });
});

describe('join tokens and join requests', () => {
  it('keeps VM join tokens away from the CA', async () => {
    const { token } = await zone.vmToken({ workloadGroup: 'ledger', namespace: NS });
    const { privateKey, publicKey } = generateKeyPair();
    await expect(
      requestCertificate({
        address: zone.zone.cp.grpcAddress,
        caPem: zone.zone.cp.caPem,
        credential: { token },
        privateKey,
        publicKey,
      }),
    ).rejects.toMatchObject({
      code: 'MESHFED_ERR_FORBIDDEN',
      message: expect.stringMatching(/redeemed with meshfed vm-agent join/),
    });
  });

  it('asks which namespace when a group name is not unique, and refuses another zone', async () => {
    await zone.admin('POST', '/api/v1/apply', { yaml: workloadGroupYaml('ledger', 'pay-eu', '') });
    const ambiguous = await zone.admin('POST', '/api/v1/tokens', {
      json: { kind: 'vm', workloadGroup: 'ledger' },
    });
    expect(ambiguous.status).toBe(400);
    expect(ambiguous.json).toMatchObject({
      field: 'namespace',
      message: expect.stringMatching(/several namespaces \(pay, pay-eu\)/),
    });
    const named = await zone.admin('POST', '/api/v1/tokens', {
      json: { kind: 'vm', workloadGroup: 'ledger', namespace: 'pay-eu' },
    });
    expect(named.status).toBe(201);
    const elsewhere = await zone.admin('POST', '/api/v1/tokens', {
      json: { kind: 'vm', workloadGroup: 'ledger', namespace: NS, zone: 'zone-zz' },
    });
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.json).toMatchObject({ field: 'zone' });
  });

  it('lets exactly `uses` of many VMs racing on a limited token join', async () => {
    const { token } = await zone.vmToken({ workloadGroup: 'audit', namespace: NS, uses: 3 });
    const addresses = Array.from({ length: 8 }, (_, i) => `10.9.7.${i + 1}`);
    const results = await Promise.allSettled(
      addresses.map((address) => {
        const { privateKey, publicKey } = generateKeyPair();
        return zoneRequest({ url: target.url, insecure: true }, 'POST', '/api/v1/vm/join', {
          json: { csrPem: buildCsr(privateKey, publicKey), address },
          headers: { authorization: `Bearer ${token}` },
        });
      }),
    );
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected');
    expect(won).toHaveLength(3);
    for (const r of lost) {
      expect(r.reason).toMatchObject({ code: 'MESHFED_ERR_TOKEN_INVALID' });
      expect(String((r.reason as Error).message)).toMatch(/used up \(3 of 3 uses/);
    }
    const joined = (await zone.workloadEntries(NS)).filter((e) => addresses.includes(String(e.spec.address)));
    expect(joined).toHaveLength(3);
  });

  it('checks the join body field by field and spends no use on a bad one', async () => {
    const { token } = await zone.vmToken({ workloadGroup: 'ledger', namespace: NS, uses: 1 });
    const { privateKey, publicKey } = generateKeyPair();
    const csrPem = buildCsr(privateKey, publicKey);
    const post = (json: unknown) =>
      zoneRequest({ url: target.url, insecure: true }, 'POST', '/api/v1/vm/join', {
        json,
        headers: { authorization: `Bearer ${token}` },
      });
    await expect(post({ csrPem, address: '0.0.0.0' })).rejects.toMatchObject({
      code: 'MESHFED_ERR_VALIDATION',
      field: 'address',
    });
    await expect(
      post({ csrPem, address: '10.9.2.1', labels: { 'meshfed.io/service': 'x' } }),
    ).rejects.toMatchObject({
      code: 'MESHFED_ERR_VALIDATION',
      field: 'labels.meshfed.io/service',
    });
    await expect(post({ csrPem, address: '10.9.2.1', nodeName: 'x' })).rejects.toMatchObject({
      field: 'nodeName',
    });
    await expect(post({ csrPem: 'not a csr', address: '10.9.2.1' })).rejects.toMatchObject({
      code: 'MESHFED_ERR_PKI',
    });
    // None of those counted: the single use is still there.
    const ok = await post({ csrPem, address: '10.9.2.1' });
    expect(ok.status).toBe(201);
  });
});

describe('the systemd unit', () => {
  it("is the shipped unit with this machine's command and config dir, and leave removes it", async () => {
    const unitDir = join(dir, 'systemd');
    await mkdir(unitDir);
    const configDir = join(dir, 'with-systemd');
    const result = await join_('ledger', '10.9.3.1', {
      systemd: 'on',
      systemdDir: unitDir,
      configDir,
      command: ['/usr/bin/node', '/opt/meshfed/dist/cli/main.js'],
    });
    expect(result.systemd.note).toContain('systemd is not running here');
    const written = await readFile(join(unitDir, 'meshfed-vm-agent.service'), 'utf8');
    const template = await unitTemplate();
    const changed = written.split('\n').filter((line, i) => line !== template.split('\n')[i]);
    expect(changed).toEqual([
      `ConditionDirectoryNotEmpty=${configDir}`,
      `ExecStart=/usr/bin/node /opt/meshfed/dist/cli/main.js vm-agent run --config-dir ${configDir}`,
      `ReadWritePaths=${configDir}`,
    ]);
    expect(written).toContain('Restart=always');

    const left = await leaveMesh({ configDir, systemdDir: unitDir });
    expect(left.deleted).toBe(true);
    expect(left.systemd).toContain('removed');
    await expect(readFile(join(unitDir, 'meshfed-vm-agent.service'))).rejects.toThrow();
  });
});

describe("the agent's check of the zone CP chain", () => {
  const mesh = createTestMesh();
  const server = zoneCpServerCredentials(mesh, 'zone-a');
  const url = new URL('https://zone-a.example:5682');
  const ders = (pem: string): Buffer[] => pemToDerList(pem);
  /** The chain as Node hands it over: each certificate linked to the next, the root to itself. */
  const peer = (chain: Buffer[]): DetailedPeerCertificate => {
    const nodes = chain.map((raw) => ({ raw }) as unknown as DetailedPeerCertificate);
    nodes.forEach((node, i) => {
      node.issuerCertificate = nodes[i + 1] ?? node;
    });
    const [first] = nodes;
    if (first === undefined) throw new Error('empty chain');
    return first;
  };
  const fp = (der: Buffer | undefined): string =>
    createHash('sha256')
      .update(der ?? Buffer.alloc(0))
      .digest('hex');
  const sent = [...ders(server.certChainPem), ...ders(mesh.rootPem)];

  it('accepts a pin on the root or on the zone CA, and names what it saw otherwise', () => {
    const root = fp(ders(mesh.rootPem)[0]);
    expect(verifyServerChain(peer(sent), { url, pin: root })).toBe(root);
    expect(verifyServerChain(peer(sent), { url, pin: fp(sent[1]) })).toBe(root);
    expect(() => verifyServerChain(peer(sent), { url, pin: 'ab'.repeat(32) })).toThrow(
      new RegExp(`its chain ends in sha256:${root}, not sha256:(ab){32}`),
    );
  });

  it('refuses a broken chain and a server that is not a zone CP, even with the pinned root in it', () => {
    const root = fp(ders(mesh.rootPem)[0]);
    const other = createTestMesh().zone('zone-x').ca.certPem;
    const [leaf] = sent;
    if (leaf === undefined) throw new Error('no leaf');
    expect(() =>
      verifyServerChain(peer([leaf, ...ders(other), ...ders(mesh.rootPem)]), { url, pin: root }),
    ).toThrow(/chain from zone-a.example:5682 is broken/);
    const workload = mesh.workload({ namespace: 'pay', serviceAccount: 'ledger' });
    expect(() =>
      verifyServerChain(peer([...ders(workload.certChainPem), ...ders(mesh.rootPem)]), { url, pin: root }),
    ).toThrow(/not a meshfed zone control plane/);
  });
});
