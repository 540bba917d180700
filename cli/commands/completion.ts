/**
 * `meshfed completion bash|zsh|fish`: a completion script generated from the
 * commander program itself (so new commands and flags are covered without
 * editing this file) plus the kind names of the resource registry.
 */

import { Argument, type Command } from 'commander';
import { allKinds } from '../../core/resource/kinds.js';

interface FlagSpec {
  short?: string;
  long?: string;
  takesValue: boolean;
  choices?: readonly string[];
  description: string;
  /** The value is a path: complete file names. */
  isPath: boolean;
}

interface CommandSpec {
  /** Words after `meshfed`: [] for the root, ['config', 'set-context']. */
  path: string[];
  description: string;
  subcommands: string[];
  flags: FlagSpec[];
  /** First positional argument is a kind (get, delete). */
  takesKind: boolean;
}

const pathFlags = /file|dir|cert|key|ca-file|token-file|filename|ready-file/;

/** Walk the program into flat command specs. */
export function describeCommands(root: Command): CommandSpec[] {
  const specs: CommandSpec[] = [];
  const walk = (cmd: Command, path: string[]): void => {
    const flags: FlagSpec[] = cmd.options.map((o) => ({
      ...(o.short ? { short: o.short } : {}),
      ...(o.long ? { long: o.long } : {}),
      takesValue: o.required || o.optional,
      ...(o.argChoices ? { choices: o.argChoices } : {}),
      description: o.description,
      isPath: pathFlags.test(o.long ?? ''),
    }));
    flags.push({ short: '-h', long: '--help', takesValue: false, description: 'show help', isPath: false });
    const args: readonly Argument[] = cmd.registeredArguments;
    specs.push({
      path,
      description: cmd.description(),
      subcommands: cmd.commands.map((c) => c.name()),
      flags,
      takesKind: args[0]?.name() === 'kind',
    });
    for (const sub of cmd.commands) walk(sub, [...path, sub.name()]);
  };
  walk(root, []);
  return specs;
}

/** Every name a kind can be typed as: plural, singular, short names. */
export function kindWords(): string[] {
  const words = new Set<string>();
  for (const k of allKinds()) {
    words.add(k.plural);
    words.add(k.singular);
    for (const s of k.shortNames) words.add(s);
  }
  return [...words].sort();
}

function flagWords(spec: CommandSpec, globals: FlagSpec[]): string[] {
  const all = spec.path.length === 0 ? spec.flags : [...spec.flags, ...globals];
  return [...new Set(all.flatMap((f) => [f.short, f.long].filter((x): x is string => x !== undefined)))];
}

function flagNames(f: FlagSpec): string[] {
  return [f.short, f.long].filter((x): x is string => x !== undefined);
}

function allFlags(specs: CommandSpec[]): FlagSpec[] {
  return specs.flatMap((s) => s.flags);
}

/** The bash script (`source <(meshfed completion bash)`). */
export function bashCompletion(root: Command): string {
  const specs = describeCommands(root);
  const globals = specs.find((s) => s.path.length === 0)?.flags ?? [];
  const flags = allFlags(specs);
  const pathValued = [...new Set(flags.filter((f) => f.isPath && f.takesValue).flatMap(flagNames))];
  const choiceValued = flags.filter((f) => f.choices && f.takesValue);
  const otherValued = [
    ...new Set(flags.filter((f) => f.takesValue && !f.isPath && !f.choices).flatMap(flagNames)),
  ];
  const paths = specs.filter((s) => s.path.length > 0).map((s) => `" ${s.path.join(' ')}"`);
  const lines: string[] = [
    '# meshfed bash completion: source <(meshfed completion bash)',
    '_meshfed() {',
    '  local cur prev path i w',
    '  cur="${COMP_WORDS[COMP_CWORD]}"',
    '  prev="${COMP_WORDS[COMP_CWORD-1]}"',
    '  path=""',
    '  for ((i=1; i<COMP_CWORD; i++)); do',
    '    w="${COMP_WORDS[i]}"',
    '    case "$path $w" in',
    `      ${paths.join('|')}) path="$path $w" ;;`,
    '    esac',
    '  done',
    '  case "$prev" in',
    ...(pathValued.length
      ? [`    ${pathValued.join('|')}) COMPREPLY=($(compgen -f -- "$cur")); return ;;`]
      : []),
    ...choiceValued.map(
      (f) =>
        `    ${flagNames(f).join('|')}) COMPREPLY=($(compgen -W "${(f.choices ?? []).join(' ')}" -- "$cur")); return ;;`,
    ),
    ...(otherValued.length ? [`    ${otherValued.join('|')}) return ;;`] : []),
    '  esac',
    '  local cmds="" flags="" kinds=""',
    '  case "$path" in',
    ...specs.map(
      (s) =>
        `    "${s.path.length ? ' ' + s.path.join(' ') : ''}") cmds="${s.subcommands.join(' ')}"; flags="${flagWords(s, globals).join(' ')}"${s.takesKind ? '; kinds="$_meshfed_kinds"' : ''} ;;`,
    ),
    '  esac',
    '  if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "$flags" -- "$cur")); return; fi',
    '  if [[ -n "$cmds" ]]; then COMPREPLY=($(compgen -W "$cmds" -- "$cur")); return; fi',
    '  if [[ -n "$kinds" ]]; then COMPREPLY=($(compgen -W "$kinds" -- "$cur")); return; fi',
    '  COMPREPLY=($(compgen -f -- "$cur"))',
    '}',
    `_meshfed_kinds="${kindWords().join(' ')}"`,
    'complete -F _meshfed meshfed',
    '',
  ];
  return lines.join('\n');
}

/** The zsh script (`source <(meshfed completion zsh)`, or save as _meshfed in $fpath). */
export function zshCompletion(root: Command): string {
  const specs = describeCommands(root);
  const globals = specs.find((s) => s.path.length === 0)?.flags ?? [];
  const flags = allFlags(specs);
  const quote = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;
  const paths = specs.filter((s) => s.path.length > 0).map((s) => `" ${s.path.join(' ')}"`);
  const pathValued = [...new Set(flags.filter((f) => f.isPath && f.takesValue).flatMap(flagNames))];
  const choiceValued = flags.filter((f) => f.choices && f.takesValue);
  const otherValued = [
    ...new Set(flags.filter((f) => f.takesValue && !f.isPath && !f.choices).flatMap(flagNames)),
  ];
  const lines: string[] = [
    '#compdef meshfed',
    '# meshfed zsh completion: source <(meshfed completion zsh)',
    '_meshfed() {',
    '  local cur="${words[CURRENT]}" prev="${words[CURRENT-1]}" path="" w i',
    '  for ((i=2; i<CURRENT; i++)); do',
    '    w="${words[i]}"',
    '    case "$path $w" in',
    `      ${paths.join('|')}) path="$path $w" ;;`,
    '    esac',
    '  done',
    '  case "$prev" in',
    ...(pathValued.length ? [`    ${pathValued.join('|')}) _files; return ;;`] : []),
    ...choiceValued.map(
      (f) => `    ${flagNames(f).join('|')}) compadd -- ${(f.choices ?? []).join(' ')}; return ;;`,
    ),
    ...(otherValued.length ? [`    ${otherValued.join('|')}) return ;;`] : []),
    '  esac',
    '  local -a cmds flags kinds',
    '  case "$path" in',
    ...specs.map(
      (s) =>
        `    "${s.path.length ? ' ' + s.path.join(' ') : ''}") cmds=(${s.subcommands.map(quote).join(' ')}); flags=(${flagWords(s, globals).map(quote).join(' ')})${s.takesKind ? '; kinds=($_meshfed_kinds)' : ''} ;;`,
    ),
    '  esac',
    '  if [[ "$cur" == -* ]]; then compadd -- $flags; return; fi',
    '  if (( ${#cmds} )); then compadd -- $cmds; return; fi',
    '  if (( ${#kinds} )); then compadd -- $kinds; return; fi',
    '  _files',
    '}',
    `_meshfed_kinds=(${kindWords().join(' ')})`,
    'if [[ "$funcstack[1]" == _meshfed ]]; then _meshfed "$@"; else compdef _meshfed meshfed; fi',
    '',
  ];
  return lines.join('\n');
}

/** The fish script (`meshfed completion fish | source`). */
export function fishCompletion(root: Command): string {
  const specs = describeCommands(root);
  const q = (s: string): string => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  const lines: string[] = [
    '# meshfed fish completion: meshfed completion fish | source',
    'complete -c meshfed -f',
  ];
  for (const spec of specs) {
    const last = spec.path[spec.path.length - 1];
    // A command is "current" when its last word was seen and none of its subcommands.
    const condition =
      spec.path.length === 0
        ? '__fish_use_subcommand'
        : `__fish_seen_subcommand_from ${last}` +
          (spec.subcommands.length
            ? `; and not __fish_seen_subcommand_from ${spec.subcommands.join(' ')}`
            : '');
    const children = specs.filter(
      (s) => s.path.length === spec.path.length + 1 && spec.path.every((word, i) => s.path[i] === word),
    );
    for (const sub of children) {
      const name = sub.path[sub.path.length - 1] ?? '';
      lines.push(`complete -c meshfed -n ${q(condition)} -a ${q(name)} -d ${q(sub.description)}`);
    }
    for (const f of spec.flags) {
      const parts = ['complete -c meshfed'];
      if (spec.path.length > 0) parts.push(`-n ${q(condition)}`);
      if (f.short) parts.push(`-s ${f.short.replace(/^-/, '')}`);
      if (f.long) parts.push(`-l ${f.long.replace(/^--/, '')}`);
      if (f.takesValue) parts.push(f.isPath ? '-r -F' : '-r');
      if (f.choices) parts.push(`-a ${q(f.choices.join(' '))}`);
      parts.push(`-d ${q(f.description)}`);
      lines.push(parts.join(' '));
    }
    if (spec.takesKind) lines.push(`complete -c meshfed -n ${q(condition)} -a ${q(kindWords().join(' '))}`);
  }
  lines.push('');
  return lines.join('\n');
}

const generators = { bash: bashCompletion, zsh: zshCompletion, fish: fishCompletion };

/** Register `completion` on the root program. */
export function registerCompletionCommand(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script')
    .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices(Object.keys(generators)))
    .action((shell: keyof typeof generators) => {
      process.stdout.write(generators[shell](program));
    });
}
