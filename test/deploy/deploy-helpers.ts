/**
 * Shared by the test/deploy suites: the repository's paths, every YAML
 * document under deploy/ with where it came from, and a loud check for the
 * command-line tools a suite runs.
 */

import { describe } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DEPLOY_DIR = path.join(REPO_ROOT, 'deploy');

export type Json = Record<string, unknown>;

export function isObj(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** One YAML document of a manifest file. */
export interface ManifestDoc {
  /** Path relative to the repository root, e.g. deploy/zone/gateway.yaml. */
  file: string;
  /** Index of the document in its file (0-based). */
  index: number;
  /** The folder under deploy/ (global, zone, kind, crds). */
  dir: string;
  obj: Json;
}

/** Every file under `dir` (recursive), relative to the repository root, sorted. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (abs: string): void => {
    for (const entry of readdirSync(abs).sort()) {
      const full = path.join(abs, entry);
      if (statSync(full).isDirectory()) walk(full);
      else out.push(path.relative(REPO_ROOT, full));
    }
  };
  walk(dir);
  return out;
}

/**
 * Parses every document of a YAML file; a syntax error, a warning (e.g. a
 * duplicate key) or a document that is not a mapping fails with the file's name.
 */
export function loadYamlFile(file: string): Json[] {
  const text = readFileSync(path.join(REPO_ROOT, file), 'utf8');
  const docs = parseAllDocuments(text, { uniqueKeys: true });
  const out: Json[] = [];
  for (const [i, doc] of docs.entries()) {
    if (doc.errors.length > 0) throw new Error(`${file} document ${i}: ${doc.errors[0]?.message ?? ''}`);
    if (doc.warnings.length > 0) throw new Error(`${file} document ${i}: ${doc.warnings[0]?.message ?? ''}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    if (!isObj(value)) throw new Error(`${file} document ${i} is not a mapping`);
    out.push(value);
  }
  return out;
}

/** Every YAML document under deploy/ (.yaml and .yml), with its file and folder. */
export function loadDeployManifests(): ManifestDoc[] {
  const docs: ManifestDoc[] = [];
  for (const file of filesUnder(DEPLOY_DIR)) {
    if (!/\.ya?ml$/.test(file)) continue;
    const dir = file.split('/')[1] ?? '';
    for (const [index, obj] of loadYamlFile(file).entries()) docs.push({ file, index, dir, obj });
  }
  return docs;
}

/** `kind/namespace/name` of a manifest (namespace '' for cluster-scoped objects). */
export function keyOf(obj: Json): string {
  const meta = isObj(obj.metadata) ? obj.metadata : {};
  return `${String(obj.kind)}/${typeof meta.namespace === 'string' ? meta.namespace : ''}/${String(meta.name)}`;
}

/** The tools of `names` that are not on PATH. */
export function missingTools(names: string[]): string[] {
  return names.filter((name) => spawnSync('sh', ['-c', `command -v ${name}`]).status !== 0);
}

/**
 * `describe` when every tool is installed; otherwise `describe.skip`, after
 * printing a banner that cannot be missed in the test output (a skipped
 * suite must never look like a passing one).
 */
export function describeWithTools(
  tools: string[],
  why: string,
  install: string,
): (name: string, fn: () => void) => void {
  const missing = missingTools(tools);
  if (missing.length === 0) return describe;
  const line = '!'.repeat(78);
  console.warn(
    `${line}\n!! SKIPPED: ${why}\n!! missing tool(s): ${missing.join(', ')}\n!! install: ${install}\n${line}`,
  );
  return describe.skip;
}
