import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** README.md and every markdown page under docs/. */
function pages(): string[] {
  const docs = readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => join(root, 'docs', f));
  return [join(root, 'README.md'), ...docs];
}

/** GitHub's heading anchors: lower-case, punctuation dropped, spaces to dashes, duplicates numbered. */
export function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    if (fenced) continue;
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (m === null) continue;
    const text = (m[1] ?? '')
      .replace(/`/g, '')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase();
    const base = text
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .trim()
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

interface Link {
  target: string;
  line: number;
}

/** Inline links and images outside code, with their line numbers. */
export function linksOf(markdown: string): Link[] {
  const links: Link[] = [];
  let fenced = false;
  markdown.split('\n').forEach((line, i) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      return;
    }
    if (fenced) return;
    const prose = line.replace(/`[^`]*`/g, '');
    for (const m of prose.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      links.push({ target: m[1] ?? '', line: i + 1 });
    }
  });
  return links;
}

/** Every relative link of a page that does not resolve, as `file:line: target (why)`. */
function brokenLinks(page: string): string[] {
  const text = readFileSync(page, 'utf8');
  const broken: string[] = [];
  for (const { target, line } of linksOf(text)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
    const hash = target.indexOf('#');
    const pathPart = hash < 0 ? target : target.slice(0, hash);
    const anchor = hash < 0 ? '' : decodeURIComponent(target.slice(hash + 1));
    const file = pathPart === '' ? page : resolve(dirname(page), decodeURIComponent(pathPart));
    const where = `${relative(root, page)}:${line}: ${target}`;
    if (!file.startsWith(root)) {
      broken.push(`${where} (points outside the repository)`);
      continue;
    }
    if (!existsSync(file)) {
      broken.push(`${where} (no such file)`);
      continue;
    }
    if (anchor !== '' && statSync(file).isFile() && file.endsWith('.md')) {
      if (!anchorsOf(readFileSync(file, 'utf8')).has(anchor)) broken.push(`${where} (no such heading)`);
    }
  }
  return broken;
}

describe('relative links in README.md and docs/', () => {
  it.each(pages().map((p) => [relative(root, p), p] as const))(
    '%s has no broken relative link',
    (_name, page) => {
      expect(brokenLinks(page)).toEqual([]);
    },
  );

  it('checks the README and operations pages link to every doc they promise', () => {
    const readme = linksOf(readFileSync(join(root, 'README.md'), 'utf8')).map((l) => l.target);
    for (const doc of [
      'architecture',
      'operations',
      'api-reference',
      'multicluster-kind',
      'errors',
      'performance',
    ]) {
      expect(readme).toContain(`docs/${doc}.md`);
    }
    expect(linksOf(readFileSync(join(root, 'docs/operations.md'), 'utf8')).length).toBeGreaterThan(10);
  });

  it('finds links, skips code, and computes GitHub anchors', () => {
    const md = [
      '# Top Level',
      'See [a](a.md#top-level) and `[not](x.md)` and ![img](p.png).',
      '```',
      '[fenced](nope.md)',
      '```',
      '## The `Store` contract (v2)',
      '## Top level',
    ].join('\n');
    expect(linksOf(md).map((l) => l.target)).toEqual(['a.md#top-level', 'p.png']);
    expect([...anchorsOf(md)]).toEqual(['top-level', 'the-store-contract-v2', 'top-level-1']);
  });
});
