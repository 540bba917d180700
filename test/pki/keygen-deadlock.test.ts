/**
 * Regression: on Node 20 a key pair straight from generateKeyPairSync could
 * deadlock the process when exported as JWK while a GC finalised its
 * generation job (core/pki/keygen.ts). The loop below, run in a child so a
 * deadlock cannot hang jest, stopped within a few thousand keys before the
 * fix (small semi-spaces make the GC land inside the export often).
 */

import { describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { assertCliBuilt } from '../common/cli.js';

const DIST = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../dist/core/pki');
const KEYS = 8000;
/** A deadlock never ends; a healthy run takes a few seconds. */
const DEADLOCK_AFTER_MS = 90_000;

describe('generateKeyPair', () => {
  it('never deadlocks when its keys are exported as JWK under GC pressure', async () => {
    assertCliBuilt();
    const script = `
      const { generateKeyPair } = await import(${JSON.stringify(pathToFileURL(path.join(DIST, 'ca.js')).href)});
      const { p256Spki } = await import(${JSON.stringify(pathToFileURL(path.join(DIST, 'x509-build.js')).href)});
      const garbage = [];
      for (let i = 0; i < ${KEYS}; i++) {
        const { privateKey, publicKey } = generateKeyPair();
        p256Spki(publicKey);
        privateKey.export({ format: 'jwk' });
        garbage.push(new Array(64).fill(i));
        if (garbage.length > 500) garbage.length = 0;
      }
      process.stdout.write('generated ${KEYS}');
    `;
    const child = spawn(process.execPath, ['--max-semi-space-size=1', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    let deadlocked = false;
    const timer = setTimeout(() => {
      deadlocked = true;
      child.kill('SIGKILL');
    }, DEADLOCK_AFTER_MS);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    clearTimeout(timer);
    expect({ deadlocked, code, output }).toEqual({ deadlocked: false, code: 0, output: `generated ${KEYS}` });
  }, 120_000);
});
