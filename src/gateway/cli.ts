/**
 * `dbgate-gateway`: the central gateway's command tree. bin/dbgate-gateway calls `main` and exits with its result.
 */
import { createRequire } from 'node:module';
import { Command } from 'commander';
import { runProgram, type CommandContext } from '../shared/cli-runtime.js';
import { registerCheckConfig } from './commands/check-config.js';
import { registerCredentialMint } from './commands/credential/mint.js';
import { registerDemo } from './commands/demo.js';
import { registerDev } from './commands/dev.js';
import { registerKeygen } from './commands/keygen.js';
import { registerStart } from './commands/start.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

export function buildGatewayProgram(context: CommandContext): Command {
  const program = new Command('dbgate-gateway')
    .description('dbgate gateway: identity-aware PostgreSQL proxy with policy, masking and audit')
    .version(version)
    .showHelpAfterError('(run with --help for usage)');
  registerStart(program, context);
  registerCheckConfig(program, context);
  registerDev(program, context);
  registerDemo(program, context);
  registerKeygen(program, context);
  const credential = program.command('credential').description('mint credentials directly with the gateway key');
  registerCredentialMint(credential, context);
  return program;
}

export function main(argv: string[], context: CommandContext): Promise<number> {
  return runProgram(buildGatewayProgram(context), argv, context, 'dbgate-gateway');
}
