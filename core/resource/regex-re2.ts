/**
 * Regular expressions in routes are RE2, Envoy's engine, not JavaScript's:
 * the check here refuses what RE2 cannot run before a proxy sees it.
 */

import { invalid } from './validate-common.js';

/**
 * RE2 (Envoy's regex engine) has no lookaround and no backreferences; JS
 * would accept them and the proxy would then reject the config. RE2-only
 * syntax that JS lacks (`(?P<name>`, leading `(?i)` flags) is translated
 * before JS compiles the pattern.
 *
 * @throws MeshError VALIDATION naming `path` when `pattern` is not valid RE2.
 */
export function checkRe2Regex(path: string, pattern: string): void {
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      const next = pattern[i + 1] ?? '';
      if (!inClass && ((next >= '1' && next <= '9') || next === 'k')) {
        throw invalid(path, `invalid regex "${pattern}": backreferences are not supported (RE2 syntax)`);
      }
      i++;
    } else if (inClass) {
      if (c === ']') inClass = false;
    } else if (c === '[') {
      inClass = true;
    } else if (c === '(' && pattern[i + 1] === '?') {
      const look = pattern.slice(i + 2, i + 4);
      if (look.startsWith('=') || look.startsWith('!') || look === '<=' || look === '<!') {
        throw invalid(
          path,
          `invalid regex "${pattern}": lookahead and lookbehind are not supported (RE2 syntax)`,
        );
      }
    }
  }
  const js = pattern.replace(/\(\?P</g, '(?<').replace(/^\(\?[imsU]+\)/, '');
  try {
    new RegExp(js);
  } catch (err) {
    throw invalid(path, `invalid regex "${pattern}": ${err instanceof Error ? err.message : String(err)}`);
  }
}
