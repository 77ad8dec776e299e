/**
 * `dbgate`: the user CLI's command tree. bin/dbgate calls `main` and exits with its result.
 *
 * Fast start: a command's module — and what it imports (pg, openid-client, ink and React…) — is loaded only when that
 * command runs or shows its help. `dbgate --help` and `dbgate --version` load none of them: the root lists every
 * command from the table below by name and summary. `dbgate completion` loads them all, because it walks the whole
 * tree. Each command's module keeps its own wiring (`registerX`: flags, help, examples) and work (`xRun`).
 */
import { createRequire } from 'node:module';
import { Command } from 'commander';
import { runProgram, type CommandContext } from '../shared/cli-runtime.js';
import { ENVIRONMENT_VARIABLES } from '../shared/environment.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

/** Adds one command (with its options, arguments and help) to the program. */
export type CommandRegistration = (program: Command, context: CommandContext) => void;

interface CommandEntry {
  name: string;
  aliases?: readonly string[];
  /** The line in `dbgate --help`'s list of commands; the command's own --help shows its full description. */
  summary: string;
  /** Left out of help and completions (helpers that scripts call). */
  hidden?: boolean;
  /** Imports the command's module, and only then its dependencies. */
  load: () => Promise<CommandRegistration>;
}

const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'login',
    summary: "sign in through the gateway's identity provider and store a dbgate credential",
    load: async () => (await import('./commands/login.js')).registerLogin,
  },
  {
    name: 'status',
    aliases: ['whoami'],
    summary: 'show who you are logged in as, at which gateway, and until when',
    load: async () => (await import('./commands/status.js')).registerStatus,
  },
  {
    name: 'token',
    summary: 'print the current dbgate credential (for PGPASSWORD)',
    load: async () => (await import('./commands/token.js')).registerToken,
  },
  {
    name: 'logout',
    summary: 'end your session at the gateway and delete the stored login',
    load: async () => (await import('./commands/logout.js')).registerLogout,
  },
  {
    name: 'targets',
    summary: 'list the targets you may reach, with your access level',
    load: async () => (await import('./commands/targets.js')).registerTargets,
  },
  {
    name: 'connect',
    summary: 'open a local PostgreSQL port that forwards to a target through the gateway',
    load: async () => (await import('./commands/connect.js')).registerConnect,
  },
  {
    name: 'query',
    summary: 'run SQL on a target through the gateway and print the result',
    load: async () => (await import('./commands/query.js')).registerQuery,
  },
  {
    name: 'completion',
    summary: 'print a shell completion script (bash, zsh, fish)',
    load: async () => (await import('./commands/completion.js')).registerCompletion,
  },
  {
    name: '__complete',
    summary: 'print completion candidates (used by the completion scripts)',
    hidden: true,
    load: async () => (await import('./commands/completion.js')).registerCompletionCandidates,
  },
];

/**
 * The program with the commands `argv` needs fully registered — the one it runs, or the one `help <command>` shows —
 * and every other listed by name and summary only. `'all'` registers every command in full (for `dbgate completion`).
 */
export async function buildProgram(context: CommandContext, argv: readonly string[] | 'all'): Promise<Command> {
  const program = new Command('dbgate')
    .description('identity-aware access to PostgreSQL through the dbgate gateway')
    .version(version)
    .showHelpAfterError('(run with --help for usage)')
    // Before any command is added: subcommands copy the output settings (help and errors go to the context's streams).
    .configureOutput({
      writeOut: (text) => context.stdout.write(text),
      writeErr: (text) => context.stderr.write(text),
    })
    .addHelpText('after', [
      '',
      'Examples:',
      '  dbgate login --gateway https://dbgate.example.com',
      '  dbgate targets',
      '  dbgate connect prod-orders -- psql',
      '  dbgate query prod-orders "select count(*) from orders"',
      '',
      'Environment:',
      ...Object.entries(ENVIRONMENT_VARIABLES).map(([name, text]) => `  ${name.padEnd(22)} ${text}`),
      '',
      'Exit codes: 0 ok, 1 error, 2 usage, 4 not logged in / credential expired, 5 denied by policy, 6 pending approval',
      '',
    ].join('\n'));
  const wanted = argv === 'all' ? undefined : commandNamed(argv);
  for (const entry of COMMANDS) {
    if (argv === 'all' || entry === wanted) {
      (await entry.load())(program, context);
      const command = program.commands.find((candidate) => candidate.name() === entry.name);
      if (!command) throw new Error(`${entry.name}: its registration added no command of that name`);
      command.summary(entry.summary);
    } else {
      program
        .command(entry.name, entry.hidden ? { hidden: true } : {})
        .aliases(entry.aliases ?? [])
        .summary(entry.summary)
        .action(() => {
          // commandNamed finds the command the same way commander does, so a listed-only command never runs.
          throw new Error(`${entry.name} was dispatched without being loaded`);
        });
    }
  }
  return program;
}

/**
 * The command `argv` runs, found as commander finds it: the first word that is not an option (the root's options,
 * --help and --version, take no values). For `help <command>`, that command.
 */
function commandNamed(argv: readonly string[]): CommandEntry | undefined {
  const words = argv.filter((word) => !word.startsWith('-'));
  const name = words[0] === 'help' ? words[1] : words[0];
  return COMMANDS.find((entry) => entry.name === name || entry.aliases?.includes(name ?? '') === true);
}

export async function main(argv: string[], context: CommandContext): Promise<number> {
  return runProgram(await buildProgram(context, argv), argv, context, 'dbgate');
}
