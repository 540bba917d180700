/**
 * Builds dist/cli/meshfed-proxy.cjs, the file a sidecar runs (the
 * webhook's `meshfed-proxy` command, the package bin, the demo's and the
 * benchmark's sidecars): the lean entry (cli/proxy-main.ts, compiled by tsc
 * first) and everything it imports, in one minified CommonJS file. Runs as
 * the second step of `npm run build`.
 *
 * Why a bundle: a sidecar runs next to every workload, so each megabyte of
 * its resident memory is paid once per pod. Measured side by side on Node 20
 * (docs/performance.md, session 12), against the ~100 ES modules tsc emits:
 * - Node's ES module loader alone holds about 1.5 MiB that a CommonJS entry
 *   never loads;
 * - one minified file instead of a module graph holds less V8 heap
 *   (sources, module records, scope data);
 * together 1–3 MiB less at idle (56–57 against 58–59 MiB), and 0–2 MiB less
 * under load.
 *
 * Packages stay outside (prom-client is loaded from node_modules at run
 * time, as before), and so do Node's built-in modules.
 */

import { build, type BuildOptions } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { SIDECAR_BUNDLE } from '../cli/sidecar-entry.js';

const BUNDLE_OPTIONS: BuildOptions = {
  entryPoints: [fileURLToPath(new URL('../cli/proxy-main.js', import.meta.url))],
  outfile: SIDECAR_BUNDLE,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  minify: true,
  // Stack traces name minified functions; `node --enable-source-maps` maps them back.
  sourcemap: 'linked',
  // A CommonJS file has no import.meta; core/prom-modules.ts needs its URL
  // to resolve prom-client's files from the package.
  define: { 'import.meta.url': '__meshfedBundleUrl' },
  // The modules are ES modules, strict throughout: the directive comes first, before that URL.
  banner: {
    js: "'use strict';\nconst __meshfedBundleUrl = require('node:url').pathToFileURL(__filename).href;",
  },
  logLevel: 'silent',
};

class BundleError extends Error {
  readonly code = 'MESHFED_BUNDLE_FAILED';
}

/** Builds the bundle; any esbuild warning is an error (one would mean a module the bundle cannot run as written). */
async function bundleSidecar(): Promise<void> {
  const result = await build(BUNDLE_OPTIONS);
  const problems = [...result.errors, ...result.warnings];
  if (problems.length > 0) {
    const described = problems.map((p) => `${p.location?.file ?? '?'}:${p.location?.line ?? '?'}: ${p.text}`);
    throw new BundleError(`bundling the sidecar failed:\n${described.join('\n')}`);
  }
}

try {
  await bundleSidecar();
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
