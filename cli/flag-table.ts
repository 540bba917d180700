/**
 * A command's flags as a table, and a parser for it on node:util's
 * parseArgs: how the lean sidecar entry (cli/proxy-main.ts) reads its flags
 * without loading commander and the rest of the CLI. The full CLI registers
 * the same table with commander (cli/commands/proxy.ts), so both take the
 * same flags and environment variables and refuse a bad value with the same
 * words: `option '--outbound-port <port>' argument 'many' is invalid. …`.
 */

import { parseArgs } from 'node:util';
import { ErrorCodes, MeshError } from '../core/errors.js';
import { FlagValueError } from './flag-values.js';

export interface FlagSpec {
  /** In commander's syntax: `--workload <name>`, or `--access-log` for a switch. */
  readonly flags: string;
  readonly description: string;
  /** The environment variable read when the flag is not given. */
  readonly env: string;
  /** Text to value; throws FlagValueError. A repeatable flag gets its value so far as `previous`. */
  parse?(value: string, previous: unknown): unknown;
  readonly choices?: readonly string[];
  /** Its values accumulate: each goes through `parse` with the result so far (otherwise the last one wins). */
  readonly repeatable?: boolean;
}

/** `workload` of `--workload <name>`. */
export function flagName(spec: FlagSpec): string {
  return (spec.flags.split(/\s+/)[0] ?? '').replace(/^--/, '');
}

/** The property a flag's value is stored under: `mds-address` → `mdsAddress`, as commander does. */
export function flagKey(spec: FlagSpec): string {
  return flagName(spec).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function takesValue(spec: FlagSpec): boolean {
  return spec.flags.includes('<');
}

function refused(message: string): MeshError {
  return new MeshError(ErrorCodes.INVALID_ARGUMENT, message);
}

/** What node:util's parseArgs refused, in commander's words. */
function explainParseError(err: unknown, specs: readonly FlagSpec[]): MeshError {
  const code = (err as { code?: unknown }).code;
  const token = /'([^']*)'/.exec((err as Error).message)?.[1] ?? '';
  const spec = specs.find((s) => token.split(' ')[0] === `--${flagName(s)}`);
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const similar = closestFlag(token, specs);
      return refused(
        `unknown option '${token}' (${similar === undefined ? '--help lists the flags' : `Did you mean ${similar}?`})`,
      );
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return refused(`unexpected argument '${token}': every setting is a flag (--help lists them)`);
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (spec !== undefined && !takesValue(spec)) {
        return refused(`option '${spec.flags}' takes no value`);
      }
      if (/--help\b/.test(token)) return refused(`option '-h, --help' takes no value`);
      return refused(`option '${spec?.flags ?? token}' argument missing`);
    default:
      return refused((err as Error).message);
  }
}

/** Edit distance between two flags (insert, delete, substitute, swap neighbours), as commander suggests. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      const row = d[i] as number[];
      const above = d[i - 1] as number[];
      row[j] = Math.min((above[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (above[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j] ?? 0, ((d[i - 2] as number[])[j - 2] ?? 0) + 1);
      }
    }
  }
  return (d[a.length] as number[])[b.length] ?? 0;
}

/** The known flag an unknown one was most likely meant to be: at most 3 edits, and mostly the same. */
function closestFlag(token: string, specs: readonly FlagSpec[]): string | undefined {
  const typed = token.split('=')[0] ?? token;
  let best: { flag: string; distance: number } | undefined;
  for (const spec of specs) {
    const flag = `--${flagName(spec)}`;
    const distance = editDistance(typed, flag);
    const similarity = (Math.max(typed.length, flag.length) - distance) / Math.max(typed.length, flag.length);
    if (distance <= 3 && similarity > 0.4 && (best === undefined || distance < best.distance)) {
      best = { flag, distance };
    }
  }
  return best?.flag;
}

/**
 * `--flag value` as `--flag=value` for every flag that takes a value, so that
 * a value starting with '-' (`--proxy-id -a`, `--outbound-port -1`) is that
 * flag's value, as commander takes it, rather than an option parseArgs refuses.
 */
function joinValues(specs: readonly FlagSpec[], args: readonly string[]): string[] {
  const valued = new Set(specs.filter(takesValue).map((s) => `--${flagName(s)}`));
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    if (arg === '--') {
      out.push(...args.slice(i));
      break;
    }
    const value = args[i + 1];
    if (valued.has(arg) && value !== undefined) {
      out.push(`${arg}=${value}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

function convert(spec: FlagSpec, text: string, previous: unknown, source: string): unknown {
  if (spec.choices !== undefined && !spec.choices.includes(text)) {
    throw refused(
      `option '${spec.flags}' ${source} is invalid. Allowed choices are ${spec.choices.join(', ')}.`,
    );
  }
  if (spec.parse === undefined) return text;
  try {
    return spec.parse(text, previous);
  } catch (err) {
    if (err instanceof FlagValueError)
      throw refused(`option '${spec.flags}' ${source} is invalid. ${err.message}`);
    throw err;
  }
}

/** -h or --help among the options, before any `--`. */
function asksForHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((a) => a === '-h' || a === '--help');
}

export interface ParsedFlags {
  /** By flagKey; a flag given neither on the command line nor in its variable is absent. */
  values: Record<string, unknown>;
  /** -h or --help was given: print formatHelp and do nothing else. */
  help: boolean;
}

/**
 * The flags in `args` (no program name), each falling back to its
 * environment variable. A switch's variable turns it on when set to
 * anything, as commander does. Throws MeshError INVALID_ARGUMENT naming the
 * flag and the refused text.
 */
export function parseFlags(
  specs: readonly FlagSpec[],
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): ParsedFlags {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const spec of specs) {
    // Every occurrence of a value flag is kept, so each is checked as commander checks it.
    options[flagName(spec)] = takesValue(spec) ? { type: 'string', multiple: true } : { type: 'boolean' };
  }
  let given: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    given = parseArgs({
      args: joinValues(specs, args),
      options,
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    // Asked for help, a stray word or unknown flag beside it does not stop
    // it, as in commander; a bad value still does (both check values first).
    const code = (err as { code?: unknown }).code;
    const stray = code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL';
    if (stray && asksForHelp(args)) return { values: {}, help: true };
    throw explainParseError(err, specs);
  }
  const values: Record<string, unknown> = {};
  for (const spec of specs) {
    const value = given[flagName(spec)];
    const fromEnv = env[spec.env];
    if (!takesValue(spec)) {
      if (value === true || fromEnv !== undefined) values[flagKey(spec)] = true;
      continue;
    }
    if (value !== undefined) {
      // A repeatable flag folds its values; any other keeps the last, each one checked.
      let result: unknown = undefined;
      for (const text of Array.isArray(value) ? value : [value]) {
        const previous = spec.repeatable === true ? result : undefined;
        result = convert(spec, String(text), previous, `argument '${String(text)}'`);
      }
      values[flagKey(spec)] = result;
    } else if (fromEnv !== undefined) {
      values[flagKey(spec)] = convert(spec, fromEnv, undefined, `value '${fromEnv}' from env '${spec.env}'`);
    }
  }
  return { values, help: given.help === true };
}

/** Usage text for `--help`: each flag with its description, choices and variable. */
export function formatHelp(usage: string, description: string, specs: readonly FlagSpec[]): string {
  const rows = [
    ...specs.map((s) => {
      const notes = [
        ...(s.choices === undefined ? [] : [`choices: ${s.choices.join(', ')}`]),
        `env: ${s.env}`,
      ];
      return [s.flags, `${s.description} (${notes.join('; ')})`];
    }),
    ['-h, --help', 'display this help'],
  ];
  const width = Math.max(...rows.map(([flags]) => (flags ?? '').length));
  const lines = rows.map(([flags, text]) => `  ${(flags ?? '').padEnd(width)}  ${text ?? ''}`);
  return `Usage: ${usage}\n\n${description}\n\nOptions:\n${lines.join('\n')}\n`;
}
