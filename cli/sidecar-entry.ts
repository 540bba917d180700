/**
 * Where the built sidecar lives: dist/cli/meshfed-proxy.cjs, the lean entry
 * (cli/proxy-main.ts) bundled by scripts/bundle-sidecar.ts. What the webhook
 * injects as `meshfed-proxy`, and what the demo and the benchmark run as
 * their sidecars.
 */

import { fileURLToPath } from 'node:url';

/** Its name in dist/cli (with its source map beside it, `<name>.map`, which `node --enable-source-maps` reads). */
export const SIDECAR_BUNDLE_FILE = 'meshfed-proxy.cjs';

export const SIDECAR_BUNDLE = fileURLToPath(new URL(`./${SIDECAR_BUNDLE_FILE}`, import.meta.url));
