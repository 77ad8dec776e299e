/**
 * `dbgate`: the user CLI's command tree. bin/dbgate calls `main` and exits with its result. Commands are
 * registered here and load their heavy dependencies only when they run, so `dbgate --help` stays fast.
 */
import { createRequire } from 'node:module';
import { Command } from 'commander';
import { runProgram, type CommandContext } from '../shared/cli-runtime.js';
import { ENVIRONMENT_VARIABLES } from '../shared/environment.js';
import { registerConnect } from './commands/connect.js';
import { registerLogin } from './commands/login.js';
import { registerLogout } from './commands/logout.js';
import { registerStatus } from './commands/status.js';
import { registerToken } from './commands/token.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

export function buildProgram(context: CommandContext): Command {
  const program = new Command('dbgate')
    .description('identity-aware access to PostgreSQL through the dbgate gateway')
    .version(version)
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', [
      '',
      'Environment:',
      ...Object.entries(ENVIRONMENT_VARIABLES).map(([name, text]) => `  ${name.padEnd(22)} ${text}`),
      '',
      'Exit codes: 0 ok, 1 error, 2 usage, 4 not logged in / credential expired, 5 denied by policy, 6 pending approval',
      '',
    ].join('\n'));
  registerLogin(program, context);
  registerStatus(program, context);
  registerToken(program, context);
  registerLogout(program, context);
  registerConnect(program, context);
  return program;
}

export function main(argv: string[], context: CommandContext): Promise<number> {
  return runProgram(buildProgram(context), argv, context, 'dbgate');
}
