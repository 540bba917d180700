/**
 * Writes deploy/crds/<plural>.<crdGroup>.yaml for every kind. Run with
 * `npm run gen:crds` after changing anything under core/resource/schemas;
 * core/resource/crd.test.ts fails until the files match again.
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crdName, renderCrdYaml } from '../core/resource/crd.js';
import { allKinds } from '../core/resource/kinds.js';

/** The repository root: this file runs from dist/scripts/ (or scripts/ under a TS runner). */
function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const up = here.split(/[\\/]/).includes('dist') ? '../..' : '..';
  return resolve(here, up);
}

const outDir = join(repoRoot(), 'deploy', 'crds');
mkdirSync(outDir, { recursive: true });
for (const kind of allKinds()) {
  const file = join(outDir, `${crdName(kind)}.yaml`);
  writeFileSync(file, renderCrdYaml(kind));
  process.stdout.write(`wrote ${file}\n`);
}
