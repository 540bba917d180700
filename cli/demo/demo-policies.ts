/**
 * The demo's sample resources (deploy/samples/: the services, mTLS STRICT,
 * an AuthorizationPolicy, the 90/10 canary, the failover DestinationRule,
 * the VM's WorkloadGroup), applied to the global CP exactly as
 * `meshfed apply -f deploy/samples/` applies them: the same file reader,
 * one POST /api/v1/apply per file. Users edit and re-apply the same files.
 */

import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, MeshError } from '../../core/errors.js';
import { ApiClient } from '../api-client.js';
import { readInputs } from '../input-files.js';

export interface AppliedResource {
  file: string;
  kind: string;
  name: string;
  action: string;
}

/**
 * deploy/samples of the checkout this module runs from (cli/demo/ in the
 * sources, dist/cli/demo/ once built): the nearest ancestor that has one.
 */
export function defaultSamplesDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'deploy', 'samples');
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        'deploy/samples was not found next to this meshfed: pass --samples DIR',
      );
    }
    dir = parent;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Apply every *.yaml of `dir` (sorted) to the API at `server`; throws naming the file that was refused. */
export async function applySamples(server: string, token: string, dir: string): Promise<AppliedResource[]> {
  const inputs = await readInputs([dir]);
  const client = new ApiClient({ server, token });
  const applied: AppliedResource[] = [];
  for (const input of inputs) {
    let answer: unknown;
    try {
      answer = await client.request('POST', '/api/v1/apply', input.text, input.contentType);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new MeshError(ErrorCodes.VALIDATION, `${input.name}: ${message}`, { cause: err });
    }
    const results = isRecord(answer) && Array.isArray(answer.results) ? answer.results : [];
    for (const r of results.filter(isRecord)) {
      applied.push({
        file: path.basename(input.name),
        kind: String(r.kind ?? ''),
        name: String(r.name ?? ''),
        action: String(r.action ?? ''),
      });
    }
  }
  return applied;
}
