/**
 * The shell scripts of deploy/ (kind up/down, the certificate bootstrap):
 * strict mode, `bash -n`, shellcheck, and up.sh's answers when a
 * prerequisite is missing (run with a PATH holding only stand-ins, since
 * no Docker engine or kind runs here).
 */

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { REPO_ROOT, describeWithTools } from './deploy-helpers.js';

const SCRIPTS = ['deploy/kind/up.sh', 'deploy/kind/down.sh', 'deploy/scripts/cert-bootstrap.sh'];

describe('deploy/ shell scripts', () => {
  it.each(SCRIPTS)('%s is executable bash in strict mode and parses (bash -n)', (script) => {
    const file = path.join(REPO_ROOT, script);
    expect(statSync(file).mode & 0o111).not.toBe(0);
    const text = readFileSync(file, 'utf8');
    expect(text.startsWith('#!/usr/bin/env bash\n')).toBe(true);
    expect(text).toMatch(/^set -euo pipefail$/m);
    const result = spawnSync('bash', ['-n', file], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });
});

const describeShellcheck = describeWithTools(
  ['shellcheck'],
  'test/deploy/scripts.test.ts lints deploy/**/*.sh with shellcheck',
  'apt-get install -y shellcheck',
);

describeShellcheck('shellcheck', () => {
  it.each(SCRIPTS)('finds nothing in %s', (script) => {
    const result = spawnSync(
      'shellcheck',
      ['--severity=style', '--shell=bash', path.join(REPO_ROOT, script)],
      {
        encoding: 'utf8',
      },
    );
    expect(result.stdout).toBe('');
    expect(result.status).toBe(0);
  });

  it('would report a real mistake (the lint can fail)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'meshfed-shellcheck-'));
    try {
      const file = path.join(dir, 'bad.sh');
      writeFileSync(file, '#!/usr/bin/env bash\nrm -rf $DIR/*\n');
      const result = spawnSync('shellcheck', [file], { encoding: 'utf8' });
      expect(result.status).not.toBe(0);
      expect(result.stdout).toContain('SC2086');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('up.sh prerequisites', () => {
  let bin = '';

  beforeAll(() => {
    bin = mkdtempSync(path.join(tmpdir(), 'meshfed-up-bin-'));
    // Only what the script runs before its checks: dirname.
    const dirname = spawnSync('sh', ['-c', 'command -v dirname'], { encoding: 'utf8' }).stdout.trim();
    symlinkSync(dirname, path.join(bin, 'dirname'));
  });

  afterAll(() => {
    if (bin !== '') rmSync(bin, { recursive: true, force: true });
  });

  /** A stand-in command that exits with `code`. */
  function stub(name: string, code = 0): void {
    writeFileSync(path.join(bin, name), `#!/bin/sh\nexit ${code}\n`);
    chmodSync(path.join(bin, name), 0o755);
  }

  function up(): { status: number | null; stderr: string } {
    const bash = spawnSync('sh', ['-c', 'command -v bash'], { encoding: 'utf8' }).stdout.trim();
    const result = spawnSync(bash, [path.join(REPO_ROOT, 'deploy/kind/up.sh')], {
      env: { PATH: bin, HOME: bin },
      encoding: 'utf8',
    });
    return { status: result.status, stderr: result.stderr };
  }

  it('names each missing tool and where to get it, in order, and checks that Docker answers', () => {
    const expectations: Array<[string | undefined, RegExp]> = [
      [undefined, /docker is required but not installed: install Docker/],
      ['docker', /kind is required but not installed: .*kind\.sigs\.k8s\.io/],
      ['kind', /kubectl is required but not installed/],
      ['kubectl', /curl is required but not installed/],
      ['curl', /node is required but not installed: install Node\.js 20/],
    ];
    for (const [add, message] of expectations) {
      if (add !== undefined) stub(add);
      const result = up();
      expect(result.stderr).toMatch(message);
      expect(result.status).toBe(1);
    }
    stub('node');
    // The stand-in docker answers 0 to everything; a daemon that does not answer fails `docker info`.
    stub('docker', 1);
    const result = up();
    expect(result.stderr).toMatch(/its daemon does not answer: start Docker/);
    expect(result.status).toBe(1);
  });
});
