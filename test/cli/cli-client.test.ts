/**
 * The built `meshfed` CLI against a real global control plane started in
 * process: apply, get, delete, watch, tokens and config contexts, run as
 * child processes the way a user runs them.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { decodeDocuments } from '../../core/resource/decode.js';
import { startGlobalCp } from '../../global-cp/global-cp.js';
import type { GlobalCpHandle } from '../../global-cp/options.js';
import { assertCliBuilt, runCli, startCli, type CliOptions } from '../common/cli.js';
import { waitFor } from '../common/wait.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/istio');

interface FixtureDoc {
  file: string;
  kind: string;
  group: string;
  name: string;
  namespace: string;
  doc: Record<string, unknown>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Every document of the Istio fixtures, in the order `apply -f DIR` sends
 * them (several files are variants of one VirtualService).
 */
async function loadFixtures(): Promise<FixtureDoc[]> {
  const files = (await readdir(FIXTURES)).filter((f) => /\.(ya?ml|json)$/.test(f)).sort();
  const docs: FixtureDoc[] = [];
  for (const file of files) {
    const text = await readFile(path.join(FIXTURES, file), 'utf8');
    for (const doc of decodeDocuments(
      text,
      file.endsWith('.json') ? 'application/json' : 'application/yaml',
    )) {
      if (!isRecord(doc) || !isRecord(doc.metadata)) continue;
      docs.push({
        file,
        kind: String(doc.kind),
        group: String(doc.apiVersion).split('/')[0] ?? '',
        name: String(doc.metadata.name),
        namespace: typeof doc.metadata.namespace === 'string' ? doc.metadata.namespace : 'default',
        doc,
      });
    }
  }
  return docs;
}

/** Fixture files taken in order while none names an object an earlier one did: each object once. */
function distinctFiles(docs: FixtureDoc[]): string[] {
  const seen = new Set<string>();
  const files: string[] = [];
  for (const file of [...new Set(docs.map((d) => d.file))]) {
    const keys = docs.filter((d) => d.file === file).map((d) => `${d.kind}/${d.namespace}/${d.name}`);
    if (keys.some((k) => seen.has(k))) continue;
    keys.forEach((k) => seen.add(k));
    files.push(file);
  }
  return files;
}

const BAD = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: good-one
spec:
  hosts: [good-one]
  http:
  - route:
    - destination: {host: good-one}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: broken
spec:
  hosts: [broken]
  http:
  - route:
    - destination: {host: broken}
      weight: "heavy"
`;

describe('meshfed CLI against a global control plane', () => {
  let dir: string;
  let cp: GlobalCpHandle;
  let fixtures: FixtureDoc[];
  /** Fixtures of the files in `distinctFiles`, and those files as `-f` arguments. */
  let distinct: FixtureDoc[];
  let distinctArgs: string[];
  let env: Record<string, string>;

  const cli = (args: string[], options: CliOptions = {}) =>
    runCli(args, { ...options, env: { ...env, ...options.env } });

  beforeAll(async () => {
    assertCliBuilt();
    dir = await mkdtemp(path.join(tmpdir(), 'meshfed-cli-'));
    cp = await startGlobalCp({ port: 0, dataDir: dir, storeUrl: 'memory://' });
    fixtures = await loadFixtures();
    const files = distinctFiles(fixtures);
    distinct = fixtures.filter((f) => files.includes(f.file));
    distinctArgs = files.flatMap((f) => ['-f', path.join(FIXTURES, f)]);
    env = {
      MESHFED_SERVER: cp.url,
      MESHFED_TOKEN_FILE: cp.adminTokenFile,
      MESHFED_CONFIG: path.join(dir, 'client', 'config'),
    };
  });

  afterAll(async () => {
    await cp?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const refOf = (f: FixtureDoc): string => `${f.kind.toLowerCase()}.${f.group}/${f.name}`;

  it('has Istio fixtures to apply, including a VirtualService', () => {
    expect(fixtures.length).toBeGreaterThan(0);
    expect(fixtures.some((f) => f.kind === 'VirtualService')).toBe(true);
  });

  it('applies fixture files: one "created" line per document', async () => {
    expect(distinct.length).toBeGreaterThan(10);
    const result = await cli(['apply', ...distinctArgs]);
    expect(result.stderr.split('\n').filter((l) => l.startsWith('error:'))).toEqual([]);
    expect(result.code).toBe(0);
    expect(result.stdout.trim().split('\n')).toEqual(distinct.map((f) => `${refOf(f)} created`));
  });

  it('applies the same files again as "unchanged", and --dry-run says so', async () => {
    const again = await cli(['apply', ...distinctArgs]);
    expect(again.code).toBe(0);
    expect(again.stdout.trim().split('\n')).toEqual(distinct.map((f) => `${refOf(f)} unchanged`));
    const dry = await cli(['apply', '--dry-run', ...distinctArgs]);
    expect(dry.code).toBe(0);
    expect(dry.stdout.trim().split('\n')).toEqual(distinct.map((f) => `${refOf(f)} unchanged (dry run)`));
  });

  it('applies a whole directory, sorted, one line per document', async () => {
    const result = await cli(['apply', '-f', FIXTURES]);
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(fixtures.length);
    fixtures.forEach((f, i) =>
      expect(lines[i]).toMatch(
        new RegExp(`^${refOf(f).replace(/\./g, '\\.')} (created|configured|unchanged)$`),
      ),
    );
    // A file re-applying a VirtualService an earlier file set differently shows up as "configured".
    expect(lines.some((l) => l.endsWith(' configured'))).toBe(true);
  });

  it('lists VirtualServices of every namespace as a table', async () => {
    const result = await cli(['get', 'vs', '-A']);
    expect(result.code).toBe(0);
    const [header, ...rows] = result.stdout.trim().split('\n');
    expect(header?.split(/\s{2,}/)).toEqual(['NAMESPACE', 'NAME', 'GATEWAYS', 'HOSTS', 'AGE']);
    const byKey = new Map(
      fixtures
        .filter((f) => f.kind === 'VirtualService')
        .map((f) => [`${f.namespace}/${f.name}`, f] as const),
    );
    const expected = [...byKey.values()];
    expect(rows).toHaveLength(expected.length);
    for (const vs of expected) {
      const hosts = (isRecord(vs.doc.spec) && Array.isArray(vs.doc.spec.hosts) ? vs.doc.spec.hosts : []).join(
        ',',
      );
      const row = rows.find((r) => r.split(/\s+/)[1] === vs.name && r.split(/\s+/)[0] === vs.namespace);
      expect(row).toBeDefined();
      expect(row?.split(/\s{2,}/)[3]).toBe(hosts);
      expect(row).toMatch(/\d+[smhd]$/);
    }
  });

  it('accepts the kind by any name, case-insensitively', async () => {
    const vs = fixtures.find((f) => f.kind === 'VirtualService');
    const outputs = await Promise.all(
      ['VirtualService', 'virtualservices', 'VS'].map((k) =>
        cli(['get', k, '-n', vs?.namespace ?? 'default', '-o', 'name']),
      ),
    );
    for (const out of outputs) {
      expect(out.code).toBe(0);
      expect(out.stdout).toContain(`/${vs?.name}\n`);
    }
  });

  it('prints one object as YAML that round-trips through apply -f -', async () => {
    const vs = fixtures.find((f) => f.kind === 'VirtualService');
    if (!vs) throw new Error('no VirtualService fixture');
    const result = await cli(['get', 'vs', vs.name, '-n', vs.namespace, '-o', 'yaml']);
    expect(result.code).toBe(0);
    const obj: unknown = parseYaml(result.stdout);
    expect(isRecord(obj) && obj.kind).toBe('VirtualService');
    expect(isRecord(obj) && isRecord(obj.metadata) && obj.metadata.name).toBe(vs.name);
    expect(isRecord(obj) && isRecord(obj.metadata) && obj.metadata.resourceVersion).toMatch(/^\d+$/);
    const back = await cli(['apply', '-f', '-'], { input: result.stdout });
    expect(back.stderr).toBe('');
    expect(back.stdout.trim()).toBe(`virtualservice.${vs.group}/${vs.name} unchanged`);
  });

  it('prints a List for -o yaml without a name, and JSON for -o json', async () => {
    const yamlOut = await cli(['get', 'virtualservices', '-A', '-o', 'yaml']);
    const list: unknown = parseYaml(yamlOut.stdout);
    expect(isRecord(list) && list.kind).toBe('List');
    expect(isRecord(list) && Array.isArray(list.items) && list.items.length).toBe(
      new Set(fixtures.filter((f) => f.kind === 'VirtualService').map((f) => `${f.namespace}/${f.name}`))
        .size,
    );
    const jsonOut = await cli(['get', 'vs', '-A', '-o', 'json']);
    expect((JSON.parse(jsonOut.stdout) as { kind: string }).kind).toBe('List');
  });

  it('refuses a bad document with file, document index and field path on one line, writing nothing', async () => {
    const file = path.join(dir, 'bad.yaml');
    await writeFile(file, BAD);
    const result = await cli(['apply', '-f', file]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^error: .*bad\.yaml: document 1: spec\.http\[0\]\.route\[0\]\.weight: .*\(MESHFED_ERR_VALIDATION\)$/,
    );
    const notThere = await cli(['get', 'vs', 'good-one']);
    expect(notThere.code).toBe(1);
    expect(notThere.stderr).toMatch(/\(MESHFED_ERR_NOT_FOUND\)\n$/);
  });

  it('explains how to provide a token when there is none', async () => {
    const result = await cli(['get', 'vs'], { env: { MESHFED_TOKEN_FILE: undefined } });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: no API token: pass --token or --token-file, set MESHFED_TOKEN/);
    expect(result.stderr).toMatch(/\(MESHFED_ERR_UNAUTHENTICATED\)\n$/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('says the server is not running when the connection is refused', async () => {
    const result = await cli(['get', 'vs'], { env: { MESHFED_SERVER: 'http://127.0.0.1:1' } });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'error: cannot reach the meshfed API at http://127.0.0.1:1: connection refused — is `meshfed global-cp` running? (MESHFED_ERR_UNAVAILABLE)\n',
    );
  });

  it('rejects an unknown kind and lists valid names', async () => {
    const result = await cli(['get', 'frobnicators']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^error: unknown resource type "frobnicators"; try one of: .*virtualservices \(vs\)/,
    );
    expect(result.stderr).toMatch(/\(MESHFED_ERR_UNKNOWN_KIND\)\n$/);
  });

  it('issues a read-only token that can get but not apply', async () => {
    const created = await cli(['token', 'create', '--kind', 'readonly', '--name', 'viewer', '--ttl', '1h']);
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^\S+\n$/);
    const token = created.stdout.trim();
    const asViewer = { env: { MESHFED_TOKEN_FILE: undefined, MESHFED_TOKEN: token } };
    const get = await cli(['get', 'vs', '-A'], asViewer);
    expect(get.code).toBe(0);
    expect(get.stdout).toMatch(/^NAMESPACE\s+NAME/);
    const apply = await cli(['apply', ...distinctArgs], asViewer);
    expect(apply.code).toBe(1);
    expect(apply.stderr.trim().split('\n')).toHaveLength(1);
    expect(apply.stderr).toMatch(/^error: .*\(MESHFED_ERR_FORBIDDEN\)\n$/);
  });

  it('revokes a token by id', async () => {
    const created = await cli(['token', 'create', '--kind', 'readonly', '-o', 'json']);
    const issued = JSON.parse(created.stdout) as { token: string; id: string };
    const revoked = await cli(['token', 'revoke', issued.id]);
    // stderr is part of the comparison so a failure says why the CLI refused.
    expect({ code: revoked.code, stderr: revoked.stderr }).toEqual({ code: 0, stderr: '' });
    const denied = await cli(['get', 'vs'], {
      env: { MESHFED_TOKEN_FILE: undefined, MESHFED_TOKEN: issued.token },
    });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/\(MESHFED_ERR_(TOKEN_INVALID|UNAUTHENTICATED)\)\n$/);
  });

  it('checks token-kind flags and reports kinds this server does not issue yet', async () => {
    const missing = await cli(['token', 'create', '--kind', 'proxy', '--zone', 'zone-a']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('error: a proxy token needs --workload (MESHFED_ERR_INVALID_ARGUMENT)\n');
    // Global issues zone tokens; proxy tokens are a zone CP's to issue.
    const zone = await cli(['token', 'create', '--kind', 'zone', '--zone', 'zone-a']);
    expect(zone.code).toBe(0);
    expect(zone.stdout).toMatch(/^mf1\./);
    const proxy = await cli(['token', 'create', '--kind', 'proxy', '--zone', 'zone-a', '--workload', 'web']);
    expect(proxy.code).toBe(1);
    expect(proxy.stderr).toMatch(/^error: token kind "proxy" is not supported by this server yet/);
  });

  it('resolves server and token from config-file contexts, flags winning', async () => {
    const noEnv = { MESHFED_SERVER: undefined, MESHFED_TOKEN_FILE: undefined };
    const set = await cli(
      ['config', 'set-context', 'local', '--server', cp.url, '--token-file', cp.adminTokenFile],
      {
        env: noEnv,
      },
    );
    expect(set.code).toBe(0);
    const admin = (await readFile(cp.adminTokenFile, 'utf8')).trim();
    await cli(['config', 'set-context', 'dead', '--server', 'http://127.0.0.1:1', '--token', admin], {
      env: noEnv,
    });

    const configFile = env.MESHFED_CONFIG ?? '';
    expect((await stat(configFile)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(configFile))).mode & 0o777).toBe(0o700);

    expect((await cli(['config', 'current-context'], { env: noEnv })).stdout).toBe('local\n');
    const viaContext = await cli(['get', 'vs', '-A'], { env: noEnv });
    expect(viaContext.code).toBe(0);

    const view = await cli(['config', 'view'], { env: noEnv });
    expect(view.stdout).toContain('token: REDACTED');
    expect(view.stdout).not.toContain(admin);

    expect((await cli(['config', 'use-context', 'dead'], { env: noEnv })).code).toBe(0);
    const dead = await cli(['get', 'vs'], { env: noEnv });
    expect(dead.code).toBe(1);
    expect(dead.stderr).toContain('http://127.0.0.1:1');
    const flagWins = await cli(['get', 'vs', '-A', '--server', cp.url], { env: noEnv });
    expect(flagWins.code).toBe(0);
    const envWins = await cli(['get', 'vs', '-A'], { env: { ...noEnv, MESHFED_SERVER: cp.url } });
    expect(envWins.code).toBe(0);
    const namedContext = await cli(['--context', 'local', 'get', 'vs', '-A'], { env: noEnv });
    expect(namedContext.code).toBe(0);
    await cli(['config', 'use-context', 'local'], { env: noEnv });
  });

  it('follows changes with get --watch, one line per event', async () => {
    const vs = fixtures.find((f) => f.kind === 'VirtualService');
    if (!vs) throw new Error('no VirtualService fixture');
    const watch = startCli(['get', 'vs', '-n', vs.namespace, '--watch', '-o', 'name'], { env });
    try {
      await waitFor(() => watch.stdout().includes(`ADDED virtualservice.`), { what: 'the ADDED event' });
      const changed = structuredClone(vs.doc);
      if (isRecord(changed.metadata)) changed.metadata.labels = { touched: 'yes' };
      const apply = await cli(['apply', '-f', '-'], { input: JSON.stringify(changed) });
      expect(apply.stdout.trim()).toBe(`virtualservice.${vs.group}/${vs.name} configured`);
      await waitFor(() => watch.stdout().includes(`MODIFIED virtualservice.${vs.group}/${vs.name}\n`), {
        what: 'the MODIFIED event',
      });
    } finally {
      watch.child.kill('SIGTERM');
      await watch.exited;
    }
  });

  it('deletes by kind and name, then what a file names', async () => {
    const vs = fixtures.find((f) => f.kind === 'VirtualService');
    if (!vs) throw new Error('no VirtualService fixture');
    const deleted = await cli(['delete', 'vs', vs.name, '-n', vs.namespace]);
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toMatch(new RegExp(`^virtualservice\\.[a-z.]+ "${vs.name}" deleted\\n$`));
    const gone = await cli(['get', 'vs', vs.name, '-n', vs.namespace]);
    expect(gone.stderr).toMatch(/\(MESHFED_ERR_NOT_FOUND\)\n$/);

    const rest = await cli(['delete', '-f', FIXTURES, '--ignore-not-found']);
    expect(rest.code).toBe(0);
    const unique = new Set(fixtures.map((f) => `${f.kind}/${f.namespace}/${f.name}`));
    expect(rest.stdout.trim().split('\n')).toHaveLength(unique.size - 1);
    const empty = await cli(['get', 'vs', '-A', '-o', 'json']);
    expect((JSON.parse(empty.stdout) as { items: unknown[] }).items).toEqual([]);

    const again = await cli(['delete', 'vs', vs.name, '-n', vs.namespace]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/not found.*\(MESHFED_ERR_NOT_FOUND\)\n$/);
  });
});
