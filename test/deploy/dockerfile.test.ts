/**
 * The root Dockerfile, checked without a Docker engine (none runs on the
 * machines that run these tests): what it copies exists and is not hidden by
 * .dockerignore; the build stage copies every source folder the CLI's
 * compiled import graph reaches; and the runtime stage's layout (package.json,
 * dist/, core/proto) is rebuilt in a temporary directory and actually runs
 * `meshfed global-cp`, which loads the .proto files from it.
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { CLI_MAIN, SIDECAR_BUNDLE, SIDECAR_BUNDLE_MAP, assertCliBuilt, cliEnv } from '../common/cli.js';
import { waitFor } from '../common/wait.js';
import { injectedParts } from '../../zone-cp/webhook/webhook-inject.js';
import { REPO_ROOT, filesUnder, isObj, loadDeployManifests, type Json } from './deploy-helpers.js';

interface Instruction {
  stage: number;
  op: string;
  args: string;
}

/** Dockerfile instructions (continuations joined, comments dropped), tagged with their stage. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw) && pending === '') continue;
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' ';
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    if (full === '') continue;
    const m = /^(\w+)\s+(.*)$/.exec(full);
    if (!m) throw new Error(`Dockerfile: cannot parse "${full}"`);
    const op = (m[1] ?? '').toUpperCase();
    if (op === 'FROM') stage++;
    out.push({ stage, op, args: m[2] ?? '' });
  }
  return out;
}

/** A .dockerignore as Docker reads it: patterns from the context root, `!` re-includes, the last match wins. */
function dockerignore(text: string): (file: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+|\/+$/g, '');
      const source = pattern
        .split('/')
        .map((part) =>
          part === '**'
            ? '.*'
            : part
                .replace(/[.+^${}()|[\]\\]/g, '\\$&')
                .replace(/\*/g, '[^/]*')
                .replace(/\?/g, '[^/]'),
        )
        .join('/')
        .replace(/\.\*\//g, '(?:.*/)?');
      return { negate, re: new RegExp(`^${source}$`) };
    });
  return (file) => {
    // A path is excluded when it or a parent folder matches.
    const parts = file.split('/');
    let excluded = false;
    for (const rule of rules) {
      for (let i = 1; i <= parts.length; i++) {
        if (rule.re.test(parts.slice(0, i).join('/'))) {
          excluded = !rule.negate;
          break;
        }
      }
    }
    return excluded;
  };
}

const dockerfile = readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
const instructions = parseDockerfile(dockerfile);
const ignored = dockerignore(readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8'));
const finalStage = Math.max(...instructions.map((i) => i.stage));
const copies = instructions
  .filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))
  .map((i) => ({ stage: i.stage, parts: i.args.split(/\s+/) }))
  .map(({ stage, parts }) => ({ stage, sources: parts.slice(0, -1), dest: parts[parts.length - 1] ?? '' }));

/**
 * The compiled modules an entry reaches through relative static and dynamic
 * imports, and the bare specifiers (packages, node: builtins) they import.
 */
function compiledImportGraph(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop() ?? '';
    if (files.has(file)) continue;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)) {
      const specifier = m[1] ?? '';
      if (!specifier.startsWith('.')) {
        packages.add(specifier);
        continue;
      }
      const target = path.resolve(path.dirname(file), specifier);
      if (existsSync(target)) queue.push(target);
    }
  }
  return { files, packages };
}

describe('Dockerfile', () => {
  it('builds on node:20-slim, installs production dependencies only, and runs meshfed as a numeric non-root user', () => {
    const arg = instructions.find((i) => i.op === 'ARG' && i.args.startsWith('NODE_IMAGE='));
    expect(arg?.args).toBe('NODE_IMAGE=node:20-slim');
    for (const from of instructions.filter((i) => i.op === 'FROM'))
      expect(from.args).toMatch(/^\$\{NODE_IMAGE\}/);
    const runtime = instructions.filter((i) => i.stage === finalStage);
    expect(runtime.some((i) => i.op === 'RUN' && /npm ci --omit=dev/.test(i.args))).toBe(true);
    expect(runtime.some((i) => i.op === 'RUN' && /npm ci(?! --omit=dev)/.test(i.args))).toBe(false);
    expect(runtime.some((i) => i.op === 'COPY' && /^--from=build \/src\/dist \.\/dist$/.test(i.args))).toBe(
      true,
    );
    expect(runtime.find((i) => i.op === 'ENTRYPOINT')?.args).toBe('["meshfed"]');
    const user = runtime.filter((i) => i.op === 'USER').pop()?.args ?? '';
    expect(user).toMatch(/^[1-9]\d*:[1-9]\d*$/);
    // The manifests run as the image's user, so files the image owns stay readable.
    const uids = new Set<number>();
    for (const doc of loadDeployManifests()) {
      const text = JSON.stringify(doc.obj);
      if (!text.includes('"image":"meshfed:')) continue;
      const spec =
        isObj(doc.obj.spec) && isObj(doc.obj.spec.template) ? doc.obj.spec.template.spec : undefined;
      if (isObj(spec) && isObj(spec.securityContext)) uids.add(Number(spec.securityContext.runAsUser));
    }
    expect([...uids]).toEqual([Number(user.split(':')[0])]);
    // The sidecar's init container captures traffic with iptables; the bootstrap Job needs openssl, curl, jq.
    const apt = runtime.find((i) => i.op === 'RUN' && i.args.includes('apt-get install'))?.args ?? '';
    for (const pkg of ['iptables', 'openssl', 'curl', 'jq', 'ca-certificates'])
      expect(apt).toContain(` ${pkg}`);
  });

  it('copies only files that exist and that .dockerignore leaves in the build context', () => {
    expect(copies.length).toBeGreaterThan(5);
    const problems: string[] = [];
    for (const { sources } of copies) {
      for (const source of sources) {
        const abs = path.join(REPO_ROOT, source);
        if (!existsSync(abs)) {
          problems.push(`COPY ${source}: does not exist`);
          continue;
        }
        const files = statSync(abs).isDirectory() ? filesUnder(abs) : [source];
        const kept = files.filter((f) => !ignored(f));
        if (kept.length === 0) problems.push(`COPY ${source}: everything is excluded by .dockerignore`);
      }
    }
    expect(problems).toEqual([]);
    // The matcher itself: what must stay out stays out.
    expect(ignored('node_modules/yaml/package.json')).toBe(true);
    expect(ignored('dist/cli/main.js')).toBe(true);
    expect(ignored('test/deploy/manifests.test.ts')).toBe(true);
    expect(ignored('deploy/scripts/cert-bootstrap.sh')).toBe(false);
    expect(ignored('zone-cp/discovery/discovery-universal.test.ts')).toBe(true);
    expect(ignored('core/proto/kds.proto')).toBe(false);
  });

  it('leaves in the context what every other Dockerfile building from the repository root copies', () => {
    // docker-compose.yml builds deploy/compose/Dockerfile with context ".", so it reads this .dockerignore too.
    const others = ['deploy/compose/Dockerfile'].filter((f) => existsSync(path.join(REPO_ROOT, f)));
    const problems: string[] = [];
    for (const file of others) {
      const theirs = parseDockerfile(readFileSync(path.join(REPO_ROOT, file), 'utf8'));
      for (const i of theirs.filter((x) => x.op === 'COPY' && !x.args.startsWith('--from'))) {
        const parts = i.args.split(/\s+/).filter((p) => !p.startsWith('--'));
        for (const source of parts.slice(0, -1)) {
          const abs = path.join(REPO_ROOT, source);
          if (!existsSync(abs)) continue; // theirs to check
          const files = statSync(abs).isDirectory() ? filesUnder(abs) : [source];
          if (files.every((f) => ignored(f)))
            problems.push(`${file}: COPY ${source} is excluded by .dockerignore`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("copies into the build stage every source folder the CLI's import graph reaches", () => {
    assertCliBuilt();
    const distRoot = path.join(REPO_ROOT, 'dist');
    const { files } = compiledImportGraph(CLI_MAIN);
    const folders = new Set([...files].map((f) => path.relative(distRoot, f).split(path.sep)[0] ?? ''));
    const built = new Set(copies.filter((c) => c.stage === 0).flatMap((c) => c.sources));
    expect([...folders].filter((f) => !built.has(f))).toEqual([]);
    expect(folders.has('cli')).toBe(true);
    expect(folders.has('core')).toBe(true);
    // Files the runtime reads beside dist/: the .proto files (core/grpc/proto.ts).
    expect(copies.some((c) => c.stage === finalStage && c.sources.includes('core/proto'))).toBe(true);
  });
});

describe('the sidecar the webhook injects', () => {
  it('runs a command the image links onto PATH, executable, to a file the build has', () => {
    const { sidecar } = injectedParts(
      { metadata: { name: 'web' }, spec: { containers: [{ name: 'web', image: 'nginx' }] } },
      { proxyImage: 'meshfed:0.1.0', zoneCpAddress: 'meshfed-zone-cp.meshfed-system.svc:5678' },
    );
    const command = Array.isArray(sidecar.command) ? String(sidecar.command[0]) : '';
    expect(command).toBe('meshfed-proxy');
    const run = instructions
      .filter((i) => i.stage === finalStage && i.op === 'RUN')
      .map((i) => i.args)
      .join(' && ');
    const link = new RegExp(`ln -s /opt/meshfed/(\\S+) /usr/local/bin/${command}(\\s|$)`).exec(run);
    expect(link).not.toBeNull();
    const target = link?.[1] ?? '';
    expect(existsSync(path.join(REPO_ROOT, target))).toBe(true);
    expect(run).toMatch(new RegExp(`chmod 0755 [^&]*\\b${target.replace(/[.]/g, '\\.')}\\b`));
    // The bundle is made in the build stage: `npm run build` runs its script, which is copied there.
    const buildRuns = instructions.filter((i) => i.stage === 0 && i.op === 'RUN').map((i) => i.args);
    expect(buildRuns).toContain('npm run build');
    expect(copies.some((c) => c.stage === 0 && c.sources.includes('scripts/bundle-sidecar.ts'))).toBe(true);
    const scripts = (
      JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Json }
    ).scripts;
    expect(String(scripts.build)).toContain('dist/scripts/bundle-sidecar.js');
    // The image's WORKDIR is /opt/meshfed, where dist/ is copied.
    expect(
      instructions.some((i) => i.stage === finalStage && i.op === 'WORKDIR' && i.args === '/opt/meshfed'),
    ).toBe(true);
  });

  it("runs an entry whose import graph reaches neither commander nor the CLI's other command groups", () => {
    assertCliBuilt();
    const { files: reached, packages } = compiledImportGraph(
      path.join(path.dirname(CLI_MAIN), 'proxy-main.js'),
    );
    expect([...packages].filter((p) => !p.startsWith('node:'))).not.toContain('commander');
    expect([...reached].some((f) => f.endsWith(path.join('cli', 'program.js')))).toBe(false);
    // The walk does see the proxy: it follows the dynamic import of proxy/index.js.
    expect([...reached].some((f) => f.endsWith(path.join('proxy', 'index.js')))).toBe(true);
  });

  it('is that entry bundled into one file: the same modules, and no package inside it', () => {
    assertCliBuilt();
    // The source map names every module the bundle holds, by its TypeScript source.
    const map = JSON.parse(readFileSync(SIDECAR_BUNDLE_MAP, 'utf8')) as { sources: string[] };
    const bundled = new Set(map.sources.map((s) => path.resolve(path.dirname(SIDECAR_BUNDLE_MAP), s)));
    const { files: reached } = compiledImportGraph(path.join(path.dirname(CLI_MAIN), 'proxy-main.js'));
    const sourceOf = (built: string): string =>
      path.join(REPO_ROOT, path.relative(path.join(REPO_ROOT, 'dist'), built).replace(/\.js$/, '.ts'));
    expect([...reached].map(sourceOf).filter((f) => !bundled.has(f))).toEqual([]);
    expect(bundled.size).toBe(reached.size);
    expect([...bundled].filter((f) => f.includes(`${path.sep}node_modules${path.sep}`))).toEqual([]);
    // It requires Node's modules only: prom-client's files are loaded from
    // node_modules by core/prom-modules.ts, and any other package would be
    // memory every sidecar pays for (test/proxy/cli-proxy.test.ts runs it).
    const bundle = readFileSync(SIDECAR_BUNDLE, 'utf8');
    expect(bundle.startsWith('#!/usr/bin/env node\n')).toBe(true);
    const required = [...bundle.matchAll(/\brequire\("([^"]+)"\)/g)].map((m) => m[1] ?? '');
    expect(required.length).toBeGreaterThan(0);
    expect(required.filter((r) => !r.startsWith('node:'))).toEqual([]);
    // esbuild keeps an import() it does not bundle as it is: one would load a
    // module outside the bundle and start Node's ES module loader again.
    expect(bundle.match(/\bimport\s*\(/g) ?? []).toEqual([]);
  });
});

describe("the runtime stage's layout", () => {
  let root = '';
  let child: ChildProcess | undefined;

  beforeAll(() => {
    assertCliBuilt();
    root = mkdtempSync(path.join(tmpdir(), 'meshfed-image-'));
    // What the final stage holds: package files, dist/ from the build stage, core/proto.
    for (const { stage, sources, dest } of copies) {
      if (stage !== finalStage || dest.startsWith('/')) continue;
      for (const source of sources) {
        const target = dest === './' ? path.join(root, source) : path.join(root, dest);
        cpSync(path.join(REPO_ROOT, source), target, { recursive: true });
      }
    }
    cpSync(path.join(REPO_ROOT, 'dist'), path.join(root, 'dist'), { recursive: true });
    // npm ci --omit=dev would install these; the checkout's node_modules stands in for them.
    symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(root, 'node_modules'), 'dir');
    mkdirSync(path.join(root, 'data'));
  });

  afterAll(() => {
    child?.kill('SIGKILL');
    if (root !== '') rmSync(root, { recursive: true, force: true });
  });

  it('runs meshfed global-cp, which loads its .proto files from the image layout, and answers /readyz', async () => {
    expect(existsSync(path.join(root, 'core/proto/kds.proto'))).toBe(true);
    expect(existsSync(path.join(root, 'package.json'))).toBe(true);
    let output = '';
    child = spawn(
      process.execPath,
      [
        path.join(root, 'dist/cli/main.js'),
        'global-cp',
        '--port',
        '0',
        '--store',
        'memory://',
        '--data-dir',
        path.join(root, 'data'),
      ],
      { env: cliEnv({ MESHFED_LOG_LEVEL: 'info' }), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const line = await waitFor(
      () => output.split('\n').find((l) => l.includes('global control plane listening')),
      { timeoutMs: 20_000, what: `global-cp to listen (output so far: ${output})` },
    );
    const logged = JSON.parse(line) as Json;
    const url = String(logged.url);
    expect(String(logged.kds)).toMatch(/:\d+$/);
    const ready = await waitFor(
      async () => {
        const res = await fetch(`${url}/readyz`);
        return res.status === 200 ? res.status : undefined;
      },
      { timeoutMs: 10_000, what: '/readyz' },
    );
    expect(ready).toBe(200);
    // The dashboard's page and script are read beside dist/ too.
    const page = await fetch(`${url}/`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    const script = await fetch(`${url}/dashboard/app.js`);
    expect(script.status).toBe(200);
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child?.once('exit', (c) => resolve(c)));
    expect(code).toBe(0);
  });
});
