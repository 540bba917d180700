/**
 * VM enrollment on a zone CP whose store is `kubernetes://` (the fake API
 * server of test/common): the cluster gets exactly the CRDs of deploy/crds
 * (the store may not install any, as with deploy/zone/rbac.yaml), the real
 * `meshfed vm-agent join` and `leave` run as processes, and the
 * WorkloadEntry, the join token's use counter and the revoked certificate
 * are custom resources in the cluster. Also: the internal CRDs in
 * deploy/crds are the generated ones, and the zone's ClusterRole grants each.
 */

import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { parseAllDocuments } from 'yaml';
import { ZONE_INTERNAL_KINDS } from '../../core/kds/kds-internal-kinds.js';
import { internalCrdFileName, renderInternalCrdYaml } from '../../scripts/gen-crds.js';
import { assertCliBuilt, runCli } from '../common/cli.js';
import { FakeKubeApiServer } from '../common/fake-kube-apiserver.js';
import { ADMIN_TOKEN, kubeConfigFor } from '../k8s/kube-helpers.js';
import {
  errorLine,
  hostNet,
  runVmCli,
  startVmZone,
  vmJoinArgs,
  vmTokenArgs,
  workloadGroupYaml,
  type VmZone,
} from './vm-fixtures.js';

const NS = 'shop';
const CRD_DIR = new URL('../../deploy/crds/', import.meta.url);
const RBAC = new URL('../../deploy/zone/rbac.yaml', import.meta.url);

let fake: FakeKubeApiServer;
let zone: VmZone;
let dir: string;

interface KubeObject {
  metadata: { name: string; namespace?: string };
  spec: Record<string, unknown>;
  status?: { conditions?: Array<{ type: string; status: string }> };
}

/** A raw request to the fake API server, as a cluster admin. */
async function kube(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const answer = await fetch(`${fake.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: answer.status, json: await answer.json() };
}

async function listCr(path: string): Promise<KubeObject[]> {
  const answer = await kube('GET', path);
  if (answer.status !== 200) throw new Error(`GET ${path} answered ${answer.status}`);
  return (answer.json as { items: KubeObject[] }).items;
}

beforeAll(async () => {
  assertCliBuilt();
  dir = await mkdtemp(join(tmpdir(), 'meshfed-vm-kube-'));
  fake = await FakeKubeApiServer.start({ adminTokens: [ADMIN_TOKEN] });
  // What an operator applies from deploy/crds (kubectl apply -f deploy/crds/), nothing more.
  for (const file of (await readdir(CRD_DIR)).filter((f) => f.endsWith('.yaml'))) {
    const crd = parseAllDocuments(await readFile(new URL(file, CRD_DIR), 'utf8'))[0]?.toJS() as unknown;
    const created = await kube('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
    if (created.status !== 201) throw new Error(`creating the CRD of ${file} answered ${created.status}`);
  }
  await kube('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(kubeconfig, kubeConfigFor(fake.url, ADMIN_TOKEN).exportConfig());
  zone = await startVmZone(hostNet(), {
    // installCrds is off: every kind the zone writes must have its CRD from deploy/crds.
    storeUrl: `kubernetes://?kubeconfig=${encodeURIComponent(kubeconfig)}`,
    discovery: [{ name: 'universal' }],
  });
  await zone.admin('POST', '/api/v1/apply', { yaml: workloadGroupYaml('cart', NS, '') });
}, 60_000);

afterAll(async () => {
  await zone?.close();
  await fake?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('VM enrollment with a kubernetes:// store', () => {
  it('writes the WorkloadEntry, the token use counter and the revocation as custom resources', async () => {
    const created = await runCli([
      '--server',
      zone.adminUrl,
      '--token',
      zone.zone.admin,
      ...vmTokenArgs(zone.zone.cp.zone, 'cart', ['--uses', '1']),
    ]);
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    const configDir = join(dir, 'vm-1');
    const join1 = await runVmCli(
      hostNet(),
      vmJoinArgs(zone.joinUrl, token, configDir, ['--address', '10.80.0.1']),
    );
    expect(join1.stderr).toBe('');
    expect(join1.code).toBe(0);

    const entries = await listCr(`/apis/networking.meshfed.io/v1/namespaces/${NS}/workloadentries`);
    expect(entries.map((e) => [e.metadata.name, e.spec.address])).toEqual([['cart-10-80-0-1', '10.80.0.1']]);
    const ledger = await listCr('/apis/internal.meshfed.io/v1/meshfedvmjointokens');
    expect(ledger).toHaveLength(1);
    expect(ledger[0]?.spec).toMatchObject({ workloadGroup: 'cart', namespace: NS, maxUses: 1, uses: 1 });
    // The token itself is never stored: the record is named by its hash.
    expect(JSON.stringify(ledger)).not.toContain(token);

    const join2 = await runVmCli(
      hostNet(),
      vmJoinArgs(zone.joinUrl, token, join(dir, 'vm-2'), ['--address', '10.80.0.2']),
    );
    expect(join2.code).toBe(1);
    expect(errorLine(join2)).toMatch(/used up \(1 of 1 use.*\(MESHFED_ERR_TOKEN_INVALID\)$/);
    expect(await listCr(`/apis/networking.meshfed.io/v1/namespaces/${NS}/workloadentries`)).toHaveLength(1);

    const left = await runVmCli(hostNet(), ['vm-agent', 'leave', '--no-systemd', '--config-dir', configDir]);
    expect(left.stderr).toBe('');
    expect(left.code).toBe(0);
    expect(await listCr(`/apis/networking.meshfed.io/v1/namespaces/${NS}/workloadentries`)).toEqual([]);
    expect((await listCr('/apis/internal.meshfed.io/v1/meshfedrevokedcertificates')).length).toBeGreaterThan(
      0,
    );
  }, 60_000);
});

describe('the internal CRDs of deploy/', () => {
  it('are the generated ones, one per internal kind a zone CP writes', async () => {
    for (const kind of ZONE_INTERNAL_KINDS) {
      const onDisk = await readFile(new URL(internalCrdFileName(kind), CRD_DIR), 'utf8').catch(
        () => '(missing)',
      );
      if (onDisk !== renderInternalCrdYaml(kind)) {
        throw new Error(
          `deploy/crds/${internalCrdFileName(kind)} is out of date: run \`npm run gen:crds\` and commit the result`,
        );
      }
    }
    const internalFiles = (await readdir(CRD_DIR)).filter((f) => f.endsWith('.internal.meshfed.io.yaml'));
    expect(internalFiles.sort()).toEqual(ZONE_INTERNAL_KINDS.map(internalCrdFileName).sort());
  });

  it("are each granted to the zone CP's ClusterRole", async () => {
    const docs = parseAllDocuments(await readFile(RBAC, 'utf8')).map(
      (d) => d.toJS() as Record<string, unknown>,
    );
    const role = docs.find(
      (d) => d.kind === 'ClusterRole' && (d.metadata as { name: string }).name === 'meshfed-zone-cp',
    );
    const rules = (role?.rules ?? []) as Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>;
    for (const kind of ZONE_INTERNAL_KINDS) {
      const plural = internalCrdFileName(kind).split('.')[0] ?? '';
      for (const verb of ['get', 'list', 'watch', 'create', 'update', 'delete']) {
        const granted = rules.some(
          (r) =>
            r.apiGroups.includes('internal.meshfed.io') &&
            (r.resources.includes(plural) || r.resources.includes('*')) &&
            r.verbs.includes(verb),
        );
        expect(`${plural} ${verb} ${granted}`).toBe(`${plural} ${verb} true`);
      }
    }
  });
});
