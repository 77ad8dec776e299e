import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { ExitWith, writeLine, type CommandContext } from '../../shared/cli-runtime.js';
import { startDevStack } from '../../dev/dev-stack.js';
import { createJsonLogger } from '../log.js';
import { issueSessionCredential } from '../identity/sessions.js';

/** bin/dbgate of this package, so the demo runs the same CLI a user would. */
const DBGATE_BIN = fileURLToPath(new URL('../../../bin/dbgate', import.meta.url));

/**
 * The quickstart in one command: the dev stack on its embedded PostgreSQL, a credential for alice, and psql through
 * `dbgate connect prod-orders`. Ends (and stops everything) when psql ends.
 */
export async function demoRun(options: { state?: string }, context: CommandContext): Promise<void> {
  writeLine(context.stderr, 'dbgate demo: starting the dev stack (embedded PostgreSQL, demo data, gateway)...');
  const stack = await startDevStack({ upstream: undefined, stateDir: options.state, pgPort: 0, apiPort: 0,
    log: createJsonLogger(context.stderr, 'warn'), env: context.env });
  try {
    const { token } = await issueSessionCredential(
      { authority: stack.gateway.credentials, store: stack.gateway.store, audit: stack.gateway.audit },
      { subject: 'alice', email: 'alice@example.com', groups: ['engineering'], kind: 'human', ttlMs: 3_600_000 },
      'demo',
    );
    const env = { ...context.env, DBGATE_GATEWAY: stack.gateway.apiUrl, DBGATE_CREDENTIAL: token };
    const hasPsql = spawnSync('psql', ['--version'], { stdio: 'ignore' }).status === 0;
    writeLine(context.stderr, `dbgate demo: gateway at ${stack.gateway.apiUrl}; you are alice (engineering).`);
    if (!hasPsql) {
      writeLine(context.stderr, 'dbgate demo: psql is not installed (apt-get install postgresql-client); opening the tunnel only.');
    } else {
      writeLine(context.stderr, 'dbgate demo: try  select name, email from customers limit 5;   and \\q to finish.');
    }
    const args = ['connect', 'prod-orders', ...(hasPsql ? ['--', 'psql'] : [])];
    const child = spawn(process.execPath, [DBGATE_BIN, ...args], { stdio: 'inherit', env });
    const unsubscribe = context.onSignal((signal) => {
      if (signal === 'SIGTERM' || !hasPsql) child.kill(signal);
    });
    const code = await new Promise<number>((resolve) => child.once('exit', (exitCode) => resolve(exitCode ?? 1)));
    unsubscribe();
    if (code !== 0) throw new ExitWith(code);
  } finally {
    await stack.close();
  }
}

export function registerDemo(program: Command, context: CommandContext): void {
  program
    .command('demo')
    .description('try dbgate: dev stack on embedded PostgreSQL, log in as alice, psql through dbgate connect')
    .option('--state <dir>', 'dev state directory (default $XDG_STATE_HOME/dbgate/dev)')
    .addHelpText('after', '\nExample:\n  npm run demo      # = dbgate-gateway demo\n')
    .action((options: { state?: string }) => demoRun(options, context));
}
