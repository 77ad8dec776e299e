/**
 * `dbgate completion bash|zsh|fish`: prints a completion script generated from the commander tree itself — its
 * commands, aliases, options and arguments — so the scripts cannot drift from the CLI (completions/ holds the
 * generated files; a test fails when they are stale).
 *
 * Arguments complete by what they are: one named `target` from the gateway, through the hidden
 * `dbgate __complete targets` (one target name a line, nothing at all when you are not logged in or the gateway
 * does not answer quickly); one with choices from its choices; the help command's from the command names; options
 * whose value is a file from the file system.
 */
import { Argument, type Command, type Option } from 'commander';
import { writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { fetchOf } from '../context-services.js';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

/** How long `__complete targets` waits for the gateway: a Tab press must never hang the shell. */
const CANDIDATES_TIMEOUT_MS = 3_000;

// ---------------------------------------------------------------------------------------------------------------------
// The model: what a completion script needs to know about the tree
// ---------------------------------------------------------------------------------------------------------------------

export type ValueCompletion =
  | { kind: 'none' }
  | { kind: 'target' }
  | { kind: 'file' }
  | { kind: 'command' }
  | { kind: 'choices'; choices: readonly string[] };

export interface OptionModel {
  short: string | undefined;
  long: string | undefined;
  description: string;
  /** What follows the option, when it takes a value. */
  value: ValueCompletion | undefined;
  /** Its own flags and those of the options it conflicts with (zsh offers none of them once one is given). */
  excludes: readonly string[];
}

export interface ArgumentModel {
  name: string;
  required: boolean;
  variadic: boolean;
  value: ValueCompletion;
}

export interface CommandModel {
  name: string;
  aliases: readonly string[];
  description: string;
  options: readonly OptionModel[];
  arguments: readonly ArgumentModel[];
}

export interface CompletionModel {
  program: string;
  options: readonly OptionModel[];
  commands: readonly CommandModel[];
}

/** Walks the tree: visible commands (the implicit `help` included) and visible options, as `--help` shows them. */
export function completionModel(program: Command): CompletionModel {
  const help = program.createHelp();
  const commands = help.visibleCommands(program);
  const commandNames = commands.map((command) => command.name());
  return {
    program: program.name(),
    options: help.visibleOptions(program).map((option) => optionModel(option, program)),
    commands: commands.map((command) => ({
      name: command.name(),
      aliases: command.aliases(),
      description: firstLine(help.subcommandDescription(command)),
      options: help.visibleOptions(command).map((option) => optionModel(option, command)),
      arguments: command.registeredArguments.map((argument) => argumentModel(argument, command.name() === 'help' ? commandNames : undefined)),
    })),
  };
}

function optionModel(option: Option, command: Command): OptionModel {
  const flags = (candidate: Option): string[] => [candidate.short, candidate.long].filter((flag): flag is string => flag !== undefined);
  // Commander keeps the names given to .conflicts() without declaring them in its types.
  const conflictsWith = (option as Option & { conflictsWith?: readonly string[] }).conflictsWith ?? [];
  const conflicting = command.options.filter((other) => conflictsWith.includes(other.attributeName()));
  const takesValue = option.required || option.optional;
  return {
    short: option.short,
    long: option.long,
    description: firstLine(option.description),
    value: takesValue ? valueOf(option.flags.match(/[<[]([^>\]]+)[>\]]/)?.[1] ?? '', option.argChoices) : undefined,
    excludes: [...flags(option), ...conflicting.flatMap(flags)],
  };
}

function argumentModel(argument: Argument, commandNames: readonly string[] | undefined): ArgumentModel {
  return {
    name: argument.name(),
    required: argument.required,
    variadic: argument.variadic,
    value: commandNames ? { kind: 'command' } : valueOf(argument.name(), argument.argChoices),
  };
}

function valueOf(name: string, choices: readonly string[] | undefined): ValueCompletion {
  if (choices && choices.length > 0) return { kind: 'choices', choices };
  if (name === 'target') return { kind: 'target' };
  if (name === 'file' || name === 'dir' || name === 'path') return { kind: 'file' };
  return { kind: 'none' };
}

function firstLine(text: string): string {
  return text.split('\n')[0]!.trim();
}

function flagsOf(option: OptionModel): string[] {
  return [option.short, option.long].filter((flag): flag is string => flag !== undefined);
}

function allNames(model: CompletionModel): string[] {
  return model.commands.flatMap((command) => [command.name, ...command.aliases]);
}

// ---------------------------------------------------------------------------------------------------------------------
// bash
// ---------------------------------------------------------------------------------------------------------------------

/** A bash function `_<program>` over COMP_WORDS / COMP_CWORD; needs bash 4, not the bash-completion package. */
export function bashScript(model: CompletionModel): string {
  const p = model.program;
  const fn = `_${shellIdentifier(p)}`;
  const lines: string[] = [
    `# bash completion for ${p}`,
    `# Generated from ${p}'s command tree by \`${p} completion bash\`: do not edit.`,
    `# Install: ${p} completion bash > ~/.local/share/bash-completion/completions/${p}`,
    `#     or:  echo 'source <(${p} completion bash)' >> ~/.bashrc`,
    '',
    `# Target names come from the gateway; \`${p} __complete targets\` prints nothing when you are not logged in.`,
    `${fn}_targets() {`,
    `  "\${COMP_WORDS[0]}" __complete targets 2>/dev/null`,
    '}',
    '',
    `${fn}() {`,
    '  local cur="${COMP_WORDS[COMP_CWORD]}" prev="" command="" word i',
    '  (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"',
    `  # The command is the first word that is not an option (${p}'s own options take no value).`,
    '  for (( i = 1; i < COMP_CWORD; i++ )); do',
    '    word="${COMP_WORDS[i]}"',
    '    if [[ "$word" != -* ]]; then command="$word"; break; fi',
    '  done',
    '  local command_at=$i options="" value_options=""',
    '  case "$command" in',
    '    "")',
    '      if [[ "$cur" == -* ]]; then',
    `        COMPREPLY=($(compgen -W ${bashWords(model.options.flatMap(flagsOf))} -- "$cur"))`,
    '      else',
    `        COMPREPLY=($(compgen -W ${bashWords(allNames(model))} -- "$cur"))`,
    '      fi',
    '      return 0 ;;',
  ];
  for (const command of model.commands) {
    lines.push(`    ${[command.name, ...command.aliases].join('|')})`);
    lines.push(`      command=${command.name}`);
    lines.push(`      options=${bashWords(command.options.flatMap(flagsOf))}`);
    lines.push(`      value_options=${bashWords(command.options.filter((option) => option.value).flatMap(flagsOf))} ;;`);
  }
  lines.push(
    '    *) return 0 ;;',
    '  esac',
    '  # Which argument the cursor is on: words after the command that are neither options nor their values.',
    '  local argument=0 dashdash=0',
    '  for (( i = command_at + 1; i < COMP_CWORD; i++ )); do',
    '    word="${COMP_WORDS[i]}"',
    '    if (( dashdash )) || [[ "$word" != -* ]]; then',
    '      argument=$((argument + 1))',
    '    elif [[ "$word" == -- ]]; then',
    '      dashdash=1',
    '    elif [[ "$word" != *=* && " $value_options " == *" $word "* ]]; then',
    '      i=$((i + 1))',
    '    fi',
    '  done',
    '  if (( ! dashdash )) && [[ -n "$prev" && " $value_options " == *" $prev "* ]]; then',
    '    case "$command $prev" in',
  );
  for (const command of model.commands) {
    for (const option of command.options) {
      if (!option.value || option.value.kind === 'none') continue;
      const patterns = flagsOf(option).map((flag) => `"${command.name} ${flag}"`).join('|');
      lines.push(`      ${patterns}) ${bashValue(option.value, model, fn)} ;;`);
    }
  }
  lines.push(
    '      *) COMPREPLY=() ;;',
    '    esac',
    '    return 0',
    '  fi',
    '  if (( ! dashdash )) && [[ "$cur" == -* ]]; then',
    '    COMPREPLY=($(compgen -W "$options" -- "$cur"))',
    '    return 0',
    '  fi',
    '  case "$command $argument" in',
  );
  for (const command of model.commands) {
    command.arguments.forEach((argument, index) => {
      const position = argument.variadic ? '*' : String(index);
      const action = argument.value.kind === 'none' && argument.variadic
        ? 'compopt -o default 2>/dev/null; COMPREPLY=()'
        : bashValue(argument.value, model, fn);
      lines.push(`    "${command.name} "${position}) ${action} ;;`);
    });
  }
  lines.push(
    '    *) COMPREPLY=() ;;',
    '  esac',
    '  return 0',
    '}',
    '',
    `complete -F ${fn} ${p}`,
    '',
  );
  return lines.join('\n');
}

function bashValue(value: ValueCompletion, model: CompletionModel, fn: string): string {
  switch (value.kind) {
    case 'none':
      return 'COMPREPLY=()';
    case 'target':
      return `COMPREPLY=($(compgen -W "$(${fn}_targets)" -- "$cur"))`;
    case 'file':
      return 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))';
    case 'command':
      return `COMPREPLY=($(compgen -W ${bashWords(model.commands.map((command) => command.name))} -- "$cur"))`;
    case 'choices':
      return `COMPREPLY=($(compgen -W ${bashWords(value.choices)} -- "$cur"))`;
  }
}

/** A word list for `compgen -W`, double-quoted. Flags, command and choice names are plain words. */
function bashWords(words: readonly string[]): string {
  for (const word of words) {
    if (!/^[A-Za-z0-9_.:@%+=,-]+$/.test(word)) throw new Error(`cannot put ${JSON.stringify(word)} into a completion script`);
  }
  return `"${words.join(' ')}"`;
}

// ---------------------------------------------------------------------------------------------------------------------
// zsh
// ---------------------------------------------------------------------------------------------------------------------

/** A `#compdef` function: works from $fpath (autoloaded) and when sourced after compinit. */
export function zshScript(model: CompletionModel): string {
  const p = model.program;
  const fn = `_${shellIdentifier(p)}`;
  const lines: string[] = [
    `#compdef ${p}`,
    `# zsh completion for ${p}`,
    `# Generated from ${p}'s command tree by \`${p} completion zsh\`: do not edit.`,
    `# Install: ${p} completion zsh > "\${fpath[1]}/_${p}"   (then start a new shell)`,
    `#     or:  source <(${p} completion zsh)   in ~/.zshrc, after compinit`,
    '',
    `# Target names come from the gateway; \`${p} __complete targets\` prints nothing when you are not logged in.`,
    `${fn}_targets() {`,
    '  local -a targets',
    `  targets=(\${(f)"$(_call_program targets \${${fn}_program:-${p}} __complete targets 2>/dev/null)"})`,
    "  _describe -t targets 'target' targets",
    '}',
    '',
    `${fn}() {`,
    `  local ${fn}_program=$words[1]`,
    '  local curcontext="$curcontext" state state_descr line ret=1',
    '  typeset -A opt_args',
    '  _arguments -C \\',
    ...model.options.map((option) => `    ${zshOptionSpec(option, model, fn, true)} \\`),
    "    '1: :->command' \\",
    "    '*:: :->argument' && return",
    '  case $state in',
    '    command)',
    '      local -a commands',
    '      commands=(',
    ...model.commands.flatMap((command) =>
      [command.name, ...command.aliases].map((name) => `        ${zshQuote(`${name.replace(/:/g, '\\:')}:${command.description}`)}`)),
    '      )',
    `      _describe -t commands '${p} command' commands && ret=0`,
    '      ;;',
    '    argument)',
    '      curcontext="${curcontext%:*}-$words[1]:"',
    '      case $words[1] in',
  ];
  for (const command of model.commands) {
    const specs = [
      ...command.options.map((option) => zshOptionSpec(option, model, fn, false)),
      ...command.arguments.map((argument) => zshArgumentSpec(argument, model, fn)),
    ];
    lines.push(`        ${[command.name, ...command.aliases].join('|')})`);
    lines.push('          _arguments \\');
    for (const spec of specs) lines.push(`            ${spec} \\`);
    lines.push('            && ret=0 ;;');
  }
  lines.push(
    '      esac',
    '      ;;',
    '  esac',
    '  return ret',
    '}',
    '',
    'if [[ $zsh_eval_context[-1] == loadautofunc ]]; then',
    `  ${fn} "$@"`,
    'else',
    `  compdef ${fn} ${p}`,
    'fi',
    '',
  );
  return lines.join('\n');
}

function zshOptionSpec(option: OptionModel, model: CompletionModel, fn: string, root: boolean): string {
  const flags = flagsOf(option);
  // The root's --help and --version end the command line; elsewhere an option excludes itself and its conflicts.
  const exclusion = root ? '(- *)' : option.excludes.length > 1 ? `(${option.excludes.join(' ')})` : '';
  const description = `[${option.description.replace(/\\/g, '\\\\').replace(/([[\]])/g, '\\$1')}]`;
  const value = option.value ? `:${zshMessage(option)}:${zshAction(option.value, model, fn)}` : '';
  if (flags.length > 1) return `${zshQuote(exclusion)}{${flags.join(',')}}${zshQuote(description + value)}`;
  return zshQuote(`${exclusion}${flags[0]!}${description}${value}`);
}

function zshMessage(option: OptionModel): string {
  return (option.long ?? option.short ?? 'value').replace(/^-+/, '');
}

function zshArgumentSpec(argument: ArgumentModel, model: CompletionModel, fn: string): string {
  const action = argument.variadic && argument.value.kind === 'none' ? '_default' : zshAction(argument.value, model, fn);
  if (argument.variadic) return zshQuote(`*:${argument.name}:${action}`);
  return zshQuote(`${argument.required ? ':' : '::'}${argument.name}:${action}`);
}

function zshAction(value: ValueCompletion, model: CompletionModel, fn: string): string {
  switch (value.kind) {
    case 'none':
      return ' ';
    case 'target':
      return `${fn}_targets`;
    case 'file':
      return '_files';
    case 'command':
      return `(${model.commands.map((command) => command.name).join(' ')})`;
    case 'choices':
      return `(${value.choices.join(' ')})`;
  }
}

function zshQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

// ---------------------------------------------------------------------------------------------------------------------
// fish
// ---------------------------------------------------------------------------------------------------------------------

/** `complete` lines per command, with a helper that tells which argument the cursor is on. */
export function fishScript(model: CompletionModel): string {
  const p = model.program;
  const fn = `__fish_${shellIdentifier(p)}`;
  const lines: string[] = [
    `# fish completion for ${p}`,
    `# Generated from ${p}'s command tree by \`${p} completion fish\`: do not edit.`,
    `# Install: ${p} completion fish > ~/.config/fish/completions/${p}.fish`,
    '',
    `# Target names come from the gateway; \`${p} __complete targets\` prints nothing when you are not logged in.`,
    `function ${fn}_targets`,
    '    set -l program (commandline -opc)[1]',
    '    $program __complete targets 2>/dev/null',
    'end',
    '',
    '# True when the word being completed is the command\'s argument number $argv[1] (0-based; "1+": the second or',
    '# any later one). The rest of $argv are the command\'s options that take a value.',
    `function ${fn}_argument`,
    '    set -l wanted $argv[1]',
    '    set -l value_options $argv[2..-1]',
    '    set -l index -1',
    '    set -l skip 0',
    '    set -l dashdash 0',
    '    for word in (commandline -opc)[2..-1]',
    '        if test $skip -eq 1',
    '            set skip 0',
    '        else if test $dashdash -eq 0; and test "$word" = --',
    '            set dashdash 1',
    "        else if test $dashdash -eq 0; and string match -q -- '-*' $word",
    '            contains -- $word $value_options; and set skip 1',
    '        else',
    '            set index (math $index + 1)',
    '        end',
    '    end',
    "    if string match -q -- '*+' $wanted",
    "        test $index -ge (string replace -- '+' '' $wanted)",
    '    else',
    '        test $index -eq $wanted',
    '    end',
    'end',
    '',
    `complete -c ${p} -f`,
    ...model.options.map((option) => `complete -c ${p} -n __fish_use_subcommand${fishOption(option, model, fn)}`),
    ...model.commands.flatMap((command) => [command.name, ...command.aliases].map((name) =>
      `complete -c ${p} -n __fish_use_subcommand -a ${name} -d ${fishQuote(command.description)}`)),
  ];
  for (const command of model.commands) {
    const seenFrom = `__fish_seen_subcommand_from ${[command.name, ...command.aliases].join(' ')}`;
    const valueOptions = command.options.filter((option) => option.value).flatMap(flagsOf);
    lines.push('', `# ${command.name}`);
    for (const option of command.options) lines.push(`complete -c ${p} -n ${fishQuote(seenFrom)}${fishOption(option, model, fn)}`);
    command.arguments.forEach((argument, index) => {
      const position = `${index}${argument.variadic ? '+' : ''}`;
      const condition = fishQuote(`${seenFrom}; and ${[`${fn}_argument`, position, ...valueOptions].join(' ')}`);
      if (argument.value.kind !== 'none') {
        lines.push(`complete -c ${p} -n ${condition} ${fishValue(argument.value, model, fn)}`);
      } else if (argument.variadic) {
        // A free-form command line (connect -- psql …): files are the only sensible guess.
        lines.push(`complete -c ${p} -n ${condition} -F`);
      }
    });
  }
  lines.push('');
  return lines.join('\n');
}

function fishOption(option: OptionModel, model: CompletionModel, fn: string): string {
  const parts: string[] = [];
  if (option.short) parts.push(`-s ${option.short.replace(/^-/, '')}`);
  if (option.long) parts.push(`-l ${option.long.replace(/^--/, '')}`);
  if (option.value) parts.push(option.value.kind === 'file' ? '-r -F' : option.value.kind === 'none' ? '-x' : `-x ${fishValue(option.value, model, fn)}`);
  parts.push(`-d ${fishQuote(option.description)}`);
  return ` ${parts.join(' ')}`;
}

function fishValue(value: ValueCompletion, model: CompletionModel, fn: string): string {
  switch (value.kind) {
    case 'none':
      return '';
    case 'target':
      return `-a ${fishQuote(`(${fn}_targets)`)}`;
    case 'file':
      return '-F';
    case 'command':
      return `-a ${fishQuote(model.commands.map((command) => command.name).join(' '))}`;
    case 'choices':
      return `-a ${fishQuote(value.choices.join(' '))}`;
  }
}

function fishQuote(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** "dbgate" → "dbgate"; anything else becomes a valid function name. */
function shellIdentifier(name: string): string {
  return name.replace(/[^A-Za-z0-9_]/g, '_');
}

// ---------------------------------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------------------------------

/** The script for `shell`, generated from the full command tree. */
export function completionScript(shell: Shell, program: Command): string {
  const model = completionModel(program);
  switch (shell) {
    case 'bash':
      return bashScript(model);
    case 'zsh':
      return zshScript(model);
    case 'fish':
      return fishScript(model);
  }
}

export async function completionRun(shell: Shell, context: CommandContext): Promise<void> {
  // The whole tree, every command's options included; main.ts registers only what a run needs.
  const { buildProgram } = await import('../main.js');
  context.stdout.write(completionScript(shell, await buildProgram(context, 'all')));
}

export const CANDIDATE_KINDS = ['targets'] as const;
export type CandidateKind = (typeof CANDIDATE_KINDS)[number];

/**
 * `__complete targets`: the target names the gateway grants you, one a line. Prints nothing — and exits 0 — when that
 * cannot be known (not logged in, expired, gateway unreachable or slow): a completion must never print an error
 * into the middle of a command line.
 */
export async function completionCandidatesRun(kind: CandidateKind, context: CommandContext): Promise<void> {
  const patient = fetchOf(context);
  const quick: typeof fetch = (input, init) =>
    patient(input, { ...init, signal: AbortSignal.any([AbortSignal.timeout(CANDIDATES_TIMEOUT_MS), ...(init?.signal ? [init.signal] : [])]) });
  const quiet: CommandContext = { ...context, fetch: quick, stderr: discard() };
  let names: string[];
  try {
    const { reachableTargets } = await import('./targets.js');
    names = (await reachableTargets({}, quiet)).targets.map((target) => target.name);
  } catch {
    return;
  }
  if (kind === 'targets') for (const name of names) writeLine(context.stdout, name);
}

/** A stream that drops what is written: a renewal warning must not end up in the shell's completion output. */
function discard(): NodeJS.WritableStream {
  return { write: () => true } as unknown as NodeJS.WritableStream;
}

export function registerCompletion(program: Command, context: CommandContext): void {
  program
    .command('completion')
    .description('print a shell completion script generated from this CLI (commands, options; target names from the gateway)')
    .addArgument(new Argument('<shell>', 'the shell to complete in').choices(SHELLS))
    .addHelpText('after', [
      '',
      'Examples:',
      '  dbgate completion bash > ~/.local/share/bash-completion/completions/dbgate',
      '  dbgate completion zsh > "${fpath[1]}/_dbgate"',
      '  dbgate completion fish > ~/.config/fish/completions/dbgate.fish',
      '  source <(dbgate completion bash)                # in ~/.bashrc (slower: runs dbgate at every shell start)',
      '',
      'Target names complete from the gateway while you are logged in.',
      '',
    ].join('\n'))
    .action((shell: Shell) => completionRun(shell, context));
}

export function registerCompletionCandidates(program: Command, context: CommandContext): void {
  program
    .command('__complete', { hidden: true })
    .description('print completion candidates, one a line (for the completion scripts); nothing when unknown')
    .addArgument(new Argument('<kind>', 'what to list').choices(CANDIDATE_KINDS))
    .addHelpText('after', '\nExample:\n  dbgate __complete targets\n')
    .action((kind: CandidateKind) => completionCandidatesRun(kind, context));
}
