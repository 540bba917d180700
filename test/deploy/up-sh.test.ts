/**
 * deploy/kind/up.sh run from start to end without Docker or kind: docker,
 * kind and kubectl are stand-ins that record what they are asked, but what
 * kubectl port-forward reaches is a REAL global control plane and a REAL
 * zone control plane (HTTPS, as in the cluster). So the zone tokens come
 * from the real `meshfed token create` against global, global's root from
 * its trust bundle, and the gateway token from the zone's token API — and
 * the test checks what up.sh wrote into each cluster's Secrets and
 * ConfigMaps, in which order it applied deploy/, and what it printed.
 */

import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { startGlobalCp } from '../../global-cp/global-cp.js';
import type { GlobalCpHandle } from '../../global-cp/options.js';
import type { ZoneCpHandle } from '../../zone-cp/options.js';
import { startZoneCp } from '../../zone-cp/zone-cp.js';
import { assertCliBuilt, cliEnv } from '../common/cli.js';
// Registers the 'static' discovery source: this test needs the zone's token API, not its discovery.
import '../common/zone-cp.js';
import { REPO_ROOT, describeWithTools, isObj, type Json } from './deploy-helpers.js';

const A_IP = '172.18.0.2';
const B_IP = '172.18.0.3';

let work = '';
let global: GlobalCpHandle | undefined;
let zone: ZoneCpHandle | undefined;

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/** A CA and a `localhost` serving certificate, as the cert-bootstrap Job makes them. */
function makeTls(prefix: string): { ca: string; cert: string; key: string } {
  const f = (name: string): string => path.join(work, `${prefix}-${name}`);
  sh('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f('ca.key')]);
  sh('openssl', [
    'req',
    '-x509',
    '-new',
    '-key',
    f('ca.key'),
    '-days',
    '1',
    '-subj',
    '/CN=test ca',
    '-out',
    f('ca.crt'),
  ]);
  sh('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f('ec.key')]);
  sh('openssl', ['pkcs8', '-topk8', '-nocrypt', '-in', f('ec.key'), '-out', f('tls.key')]);
  sh('openssl', ['req', '-new', '-key', f('tls.key'), '-subj', '/CN=localhost', '-out', f('tls.csr')]);
  writeFileSync(f('ext'), 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n');
  sh('openssl', [
    'x509',
    '-req',
    '-in',
    f('tls.csr'),
    '-CA',
    f('ca.crt'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    f('ext'),
    '-out',
    f('tls.crt'),
  ]);
  return { ca: f('ca.crt'), cert: f('tls.crt'), key: f('tls.key') };
}

function writeStub(bin: string, name: string, body: string): void {
  const file = path.join(bin, name);
  writeFileSync(file, `#!/usr/bin/env bash\nset -euo pipefail\n${body}\n`);
  chmodSync(file, 0o755);
}

/** Payload of an `mf1.<payload>.<signature>` token. */
function claimsOf(token: string): Json {
  const payload = token.trim().split('.')[1] ?? '';
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Json;
}

interface Created {
  context: string;
  args: string[];
  files: Record<string, string>;
}

const describeTools = describeWithTools(
  ['bash', 'openssl', 'curl', 'base64'],
  'test/deploy/up-sh.test.ts runs deploy/kind/up.sh with stand-ins for docker/kind/kubectl',
  'apt-get install -y bash openssl curl coreutils',
);

describeTools('deploy/kind/up.sh against real control planes', () => {
  let result: { code: number | null; stdout: string; stderr: string };
  let calls: string[] = [];
  let created: Created[] = [];

  beforeAll(async () => {
    assertCliBuilt();
    work = mkdtempSync(path.join(tmpdir(), 'meshfed-up-sh-'));
    const globalTls = makeTls('global');
    const zoneTls = makeTls('zone');
    global = await startGlobalCp({
      host: '127.0.0.1',
      port: 0,
      storeUrl: 'memory://',
      dataDir: path.join(work, 'global'),
      tlsCertFile: globalTls.cert,
      tlsKeyFile: globalTls.key,
    });
    zone = await startZoneCp({
      zone: 'zone-a',
      dataDir: path.join(work, 'zone'),
      storeUrl: 'memory://',
      host: '127.0.0.1',
      port: 0,
      grpcHost: '127.0.0.1',
      grpcPort: 0,
      tlsCertFile: zoneTls.cert,
      tlsKeyFile: zoneTls.key,
      discovery: [{ name: 'static' }],
    });
    const zonePort = new URL(zone.restUrl).port;

    const bin = path.join(work, 'bin');
    sh('mkdir', ['-p', bin]);
    const log = path.join(work, 'calls.log');
    const createdLog = path.join(work, 'created.jsonl');
    writeStub(
      bin,
      'docker',
      `echo "docker $*" >> ${log}
case "$1" in
  inspect) case "\${@: -1}" in meshfed-a-control-plane) echo ${A_IP};; meshfed-b-control-plane) echo ${B_IP};; esac;;
esac`,
    );
    writeStub(bin, 'kind', `echo "kind $*" >> ${log}`);
    // kubectl: records every call; answers the reads up.sh makes; port-forwards to the real servers.
    writeStub(
      bin,
      'kubectl',
      `echo "kubectl $*" >> ${log}
ctx="$2"; shift 2
args="$*"
case "$args" in
  *"port-forward service/meshfed-global-cp"*)
    echo "Forwarding from 127.0.0.1:${global.port} -> 5681"; exec sleep 600;;
  *"port-forward service/meshfed-zone-cp"*)
    echo "Forwarding from 127.0.0.1:${zonePort} -> 5682"; exec sleep 600;;
  *"get secret meshfed-global-tls"*) base64 -w0 < ${globalTls.ca};;
  *"get secret meshfed-zone-tls"*) base64 -w0 < ${zoneTls.ca};;
  *"exec deployment/meshfed-global-cp"*) cat ${global.adminTokenFile};;
  *"exec deployment/meshfed-zone-cp"*) cat ${zone.adminTokenFile};;
  *"--dry-run=client"*)
    # What "create ... -o yaml" prints, as JSON the test reads back from the apply log.
    files="{}"
    for a in "$@"; do
      case "$a" in --from-file=*) kv="\${a#--from-file=}"; k="\${kv%%=*}"; f="\${kv#*=}"
        files="$(node -e 'const o=JSON.parse(process.argv[1]); o[process.argv[2]]=require("fs").readFileSync(process.argv[3],"utf8"); console.log(JSON.stringify(o))' "$files" "$k" "$f")";;
      esac
    done
    node -e 'console.log(JSON.stringify({context: process.argv[1], args: process.argv.slice(3), files: JSON.parse(process.argv[2])}))' "$ctx" "$files" "$@";;
  *"apply -f -"*) cat >> ${createdLog};;
esac`,
    );

    const child = spawn('bash', [path.join(REPO_ROOT, 'deploy/kind/up.sh')], {
      env: cliEnv({
        PATH: `${bin}:${process.env.PATH ?? ''}`,
        MESHFED_TIMEOUT: '5s',
        KIND_NODE_IMAGE: undefined,
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    result = { code, stdout, stderr };
    calls = readFileSync(log, 'utf8').trim().split('\n');
    created = existsSync(createdLog)
      ? readFileSync(createdLog, 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as Created)
      : [];
  }, 60_000);

  afterAll(async () => {
    await zone?.close();
    await global?.close();
    if (work !== '') rmSync(work, { recursive: true, force: true });
  });

  function find(context: string, what: string): Created {
    const found = created.find((c) => c.context === context && c.args.join(' ').includes(what));
    if (!found) throw new Error(`up.sh did not create ${what} in ${context}`);
    return found;
  }

  it('runs to the end and says what to do next', () => {
    expect(`exit ${String(result.code)} ${result.stderr}`).toBe(`exit 0 ${result.stderr}`);
    expect(result.stderr).not.toMatch(/up\.sh:/);
    expect(result.stdout).toContain('meshfed is up.');
    expect(result.stdout).toContain(`zone-b:               kind-meshfed-b, gateway ${B_IP}:30443`);
    expect(result.stdout).toContain('meshfed-injection=enabled');
  });

  it('builds and loads the image, creates both clusters, and applies deploy/ in order', () => {
    const index = (pattern: RegExp): number => {
      const i = calls.findIndex((c) => pattern.test(c));
      if (i < 0) throw new Error(`no call matching ${String(pattern)} in:\n${calls.join('\n')}`);
      return i;
    };
    expect(index(/^docker build -t meshfed:0\.1\.0 /)).toBeLessThan(
      index(/^kind create cluster --name meshfed-a/),
    );
    expect(index(/^kind create cluster --name meshfed-a --config .*cluster-a\.yaml/)).toBeGreaterThan(0);
    expect(index(/^kind create cluster --name meshfed-b --config .*cluster-b\.yaml/)).toBeGreaterThan(0);
    expect(index(/^kind load docker-image meshfed:0\.1\.0 --name meshfed-b/)).toBeGreaterThan(0);
    for (const ctx of ['kind-meshfed-a', 'kind-meshfed-b']) {
      const crds = index(new RegExp(`^kubectl --context ${ctx} apply --server-side .*deploy/crds/`));
      const zoneApply = index(new RegExp(`^kubectl --context ${ctx} apply -f .*deploy/zone/$`));
      expect(crds).toBeLessThan(zoneApply);
      expect(
        index(
          new RegExp(
            `^kubectl --context ${ctx} -n meshfed-system rollout status deployment/meshfed-eastwest-gateway`,
          ),
        ),
      ).toBeGreaterThan(zoneApply);
    }
    const globalApply = index(/^kubectl --context kind-meshfed-a apply -f .*deploy\/global\/$/);
    expect(index(/rollout status deployment\/meshfed-global-cp/)).toBeGreaterThan(globalApply);
    expect(calls.some((c) => /kind-meshfed-b apply -f .*deploy\/global/.test(c))).toBe(false);
    expect(
      calls.filter((c) => /label namespace demo meshfed-injection=enabled --overwrite/.test(c)),
    ).toHaveLength(2);
  });

  it("gives each zone a zone token from global, global's root, and how to reach global and be reached", () => {
    const root = global?.caCertPem ?? 'missing';
    for (const [ctx, name, kds, gateway] of [
      ['kind-meshfed-a', 'zone-a', 'meshfed-global-kds.meshfed-system.svc:5685', `${A_IP}:30443`],
      ['kind-meshfed-b', 'zone-b', `${A_IP}:30685`, `${B_IP}:30443`],
    ] as const) {
      const credentials = find(ctx, 'secret generic meshfed-zone-credentials');
      const claims = claimsOf(credentials.files['zone-token'] ?? '');
      expect(claims.kind).toBe('zone');
      expect(claims.zone).toBe(name);
      expect(credentials.files['global-ca.crt']).toBe(root);
      const config = find(ctx, 'configmap meshfed-zone ').args;
      expect(config).toContain(`--from-literal=zone=${name}`);
      expect(config).toContain(`--from-literal=global-kds-address=${kds}`);
      expect(config).toContain(`--from-literal=gateway-address=${gateway}`);
      expect(find(ctx, 'configmap meshfed-ca-root-cert').files['root-cert.pem']).toBe(root);
    }
  });

  it("gives each zone's east-west gateway a gateway token issued by its zone", () => {
    for (const ctx of ['kind-meshfed-a', 'kind-meshfed-b']) {
      const token = find(ctx, 'secret generic meshfed-gateway-token').files.token ?? '';
      const claims = claimsOf(token);
      expect(claims.kind).toBe('proxy');
      expect(claims.zone).toBe('zone-a');
      expect(isObj(claims.ext) ? claims.ext.role : undefined).toBe('gateway');
    }
  });
});
