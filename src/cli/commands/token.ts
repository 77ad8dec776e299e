/**
 * `dbgate token`: prints the current dbgate credential (renewed first if it is about to expire), for clients that
 * connect to the gateway directly: `PGPASSWORD=$(dbgate token) psql "host=… user=alice dbname=prod-orders"`.
 */
import type { Command } from 'commander';
import { writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { currentCredential } from '../credential-source.js';

export interface TokenOptions {
  profile?: string | undefined;
  gateway?: string | undefined;
}

export async function tokenRun(options: TokenOptions, context: CommandContext): Promise<void> {
  const credential = await currentCredential(context, options);
  writeLine(context.stdout, credential.token);
}

export function registerToken(program: Command, context: CommandContext): void {
  program
    .command('token')
    .description('print the current dbgate credential (for PGPASSWORD when connecting to the gateway directly)')
    .option('--profile <name>', 'the login to use (default: DBGATE_PROFILE or "default")')
    .option('--gateway <url>', 'gateway API URL (default: DBGATE_GATEWAY or the stored login)')
    .addHelpText('after', '\nExample:\n  PGPASSWORD=$(dbgate token) psql "host=gateway.example.com port=6543 user=alice dbname=prod-orders sslmode=require"\n')
    .action((flags: TokenOptions) => tokenRun(flags, context));
}
