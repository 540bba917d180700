/** `meshfed completion`: generated from the program, so it is checked by running it. */

import { beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { allKinds } from '../../core/resource/kinds.js';
import { assertCliBuilt, runCli } from '../common/cli.js';

/** Ask the bash script what it completes for a command line ending in `cur`. */
function bashComplete(script: string, words: string[]): string[] {
  const program = `${script}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')})
COMP_CWORD=${words.length - 1}
_meshfed
printf '%s\\n' "\${COMPREPLY[@]}"`;
  return execFileSync('bash', ['-c', program], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

describe('meshfed completion', () => {
  let bash: string;

  beforeAll(async () => {
    assertCliBuilt();
    const result = await runCli(['completion', 'bash']);
    expect(result.code).toBe(0);
    bash = result.stdout;
  });

  it('prints a bash script that parses and completes commands, flags and kinds', () => {
    execFileSync('bash', ['-n'], { input: bash });
    expect(bashComplete(bash, ['meshfed', ''])).toEqual(
      expect.arrayContaining([
        'apply',
        'get',
        'delete',
        'token',
        'config',
        'global-cp',
        'demo',
        'completion',
      ]),
    );
    expect(bashComplete(bash, ['meshfed', 'config', 'use'])).toEqual(['use-context']);
    expect(bashComplete(bash, ['meshfed', 'get', '--all'])).toEqual(['--all-namespaces']);
    expect(bashComplete(bash, ['meshfed', 'get', 'vs', '-o', 'y'])).toEqual(['yaml']);
    const kinds = bashComplete(bash, ['meshfed', 'get', '']);
    for (const k of allKinds()) expect(kinds).toEqual(expect.arrayContaining([k.plural, ...k.shortNames]));
    expect(bashComplete(bash, ['meshfed', 'global-cp', '--tr'])).toEqual(['--trust-domain']);
  });

  it('prints zsh and fish scripts naming every command and kind', async () => {
    for (const shell of ['zsh', 'fish']) {
      const result = await runCli(['completion', shell]);
      expect(result.code).toBe(0);
      for (const word of ['set-context', 'global-cp', 'all-namespaces', 'virtualservices', 'vs']) {
        expect(result.stdout).toContain(word);
      }
    }
  });

  it('refuses an unknown shell with one line', async () => {
    const result = await runCli(['completion', 'tcsh']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: .*tcsh.*\(MESHFED_ERR_INVALID_ARGUMENT\)\n$/);
  });
});
